//! Every fuzz target in one binary, the one STRATA_FUZZ_TARGET names: what scripts/fuzz
//! builds (one link instead of one per target, and no cargo-fuzz to install first). `cargo fuzz run
//! TARGET` builds the single targets of fuzz_targets/ as usual.
#![no_main]

use std::sync::OnceLock;

fn entry_point() -> strata::fuzz::EntryPoint {
    static CHOSEN: OnceLock<strata::fuzz::EntryPoint> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let name = std::env::var("STRATA_FUZZ_TARGET")
            .expect("STRATA_FUZZ_TARGET names the target to run (see strata::fuzz::TARGETS)");
        strata::fuzz::TARGETS
            .iter()
            .find(|(target, _)| *target == name)
            .map(|(_, entry)| *entry)
            .unwrap_or_else(|| panic!("no fuzz target '{name}' in strata::fuzz::TARGETS"))
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| entry_point()(data));
