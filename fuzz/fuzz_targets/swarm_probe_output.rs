#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| strata::fuzz::swarm_probe_output(data));
