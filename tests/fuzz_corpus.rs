//! The stable fallback of the cargo-fuzz targets (fuzz/): every entry point of strata::fuzz runs
//! over its seed corpus (fuzz/corpus/TARGET/) and over deterministic mutations of it, and no
//! input may panic. Needs no nightly toolchain and no daemon; it is a property test, not a
//! fuzzer: a fixed-seed xorshift drives a small mutator (bit flips, byte inserts and deletes,
//! splices of two corpus files, truncation, repeated chunks), so a failure reproduces exactly.
//!
//! A failing input is written to target/fuzz-corpus-failures/ and named in the failure, so it
//! can be replayed with `cargo +nightly fuzz run TARGET FILE` or turned into a unit test.
//!
//! STRATA_FUZZ_CORPUS_RUNS sets the mutations per target (default below).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Mutated inputs per target: the whole file takes about 13 s in a debug build on two cores.
const DEFAULT_RUNS: usize = 5000;

/// One execution slower than this is a blow-up (a debug build parses these inputs in
/// microseconds to milliseconds).
const SLOW: Duration = Duration::from_secs(5);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One test per target, and the list of the targets this file tests.
macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        const TESTED: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            fn $name() {
                run(stringify!($name));
            }
        )*
    };
}

targets!(
    stack_file,
    plan_file,
    container_params,
    container_render,
    service_template,
    healthcheck,
    vm_template_manifest,
    size,
    iptables_save,
    nft_tables,
    firewalld_zones,
    libvirt_conf_value,
    proc_net,
    ip_routes,
    guest_facts,
    check_script,
    docker_info,
    domain_xml,
    network_xml,
    vm_metadata,
    qemu_conf_user,
    cpuinfo,
    dev_kvm_stat,
    apt_sources,
    known_hosts,
    connect_uri,
    docker_network_inspect,
    apt_simulation,
    apt_madison,
    dpkg_status,
    os_release,
    engine_version,
    kernel_version,
    swarm_probe_output,
);

fn sorted(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut names: Vec<String> = names.into_iter().collect();
    names.sort();
    names
}

/// The names of the entries of `dir` with `suffix` stripped (directories when suffix is "").
fn entries(dir: &Path, suffix: &str) -> Vec<String> {
    let listing = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    sorted(listing.map(|e| {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        match suffix {
            "" => {
                assert!(e.path().is_dir(), "{} is not a folder", e.path().display());
                name
            }
            _ => name
                .strip_suffix(suffix)
                .unwrap_or_else(|| panic!("{name} in {} is not a {suffix} file", dir.display()))
                .to_string(),
        }
    }))
}

#[test]
fn tests_entry_points_fuzz_targets_and_corpora_are_the_same_list() {
    let tested = sorted(TESTED.iter().map(|n| n.to_string()));
    let entry_points = sorted(strata::fuzz::TARGETS.iter().map(|(n, _)| n.to_string()));
    let fuzz_targets = entries(&root().join("fuzz/fuzz_targets"), ".rs");
    let corpora = entries(&root().join("fuzz/corpus"), "");
    assert_eq!(tested, entry_points, "this test vs strata::fuzz::TARGETS");
    assert_eq!(tested, fuzz_targets, "this test vs fuzz/fuzz_targets/*.rs");
    assert_eq!(tested, corpora, "this test vs fuzz/corpus/*/");
    // Each target file calls its own entry point, and fuzz/Cargo.toml builds it.
    let manifest = std::fs::read_to_string(root().join("fuzz/Cargo.toml")).unwrap();
    for name in &tested {
        let path = root().join(format!("fuzz/fuzz_targets/{name}.rs"));
        let source = std::fs::read_to_string(&path).unwrap();
        assert!(
            source.contains(&format!("strata::fuzz::{name}(data)")),
            "{} does not call strata::fuzz::{name}",
            path.display()
        );
        assert!(
            manifest.contains(&format!(
                "name = \"{name}\"\npath = \"fuzz_targets/{name}.rs\""
            )),
            "fuzz/Cargo.toml has no [[bin]] for {name}"
        );
    }
}

/// Run one entry point over its corpus and mutations of it.
fn run(name: &str) {
    let entry = strata::fuzz::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("strata::fuzz has no entry point {name}"))
        .1;
    let seeds = corpus(name);
    for (path, seed) in &seeds {
        execute(name, entry, seed, &format!("seed {}", path.display()));
    }
    let runs = std::env::var("STRATA_FUZZ_CORPUS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_RUNS);
    let mut rng = XorShift::seeded(name);
    let inputs: Vec<&[u8]> = seeds.iter().map(|(_, s)| s.as_slice()).collect();
    for round in 0..runs {
        let input = mutate(&mut rng, &inputs);
        execute(name, entry, &input, &format!("mutation {round}"));
    }
}

/// The seed files of `name`; a missing or empty corpus fails, so the test never passes by
/// testing nothing.
fn corpus(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = root().join("fuzz/corpus").join(name);
    let listing = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus folder {} is missing: {e}", dir.display()));
    let mut seeds: Vec<(PathBuf, Vec<u8>)> = listing
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    seeds.sort();
    assert!(
        !seeds.is_empty(),
        "corpus folder {} is empty: add real captures for {name}",
        dir.display()
    );
    seeds
}

/// Call the entry point; a panic or a blow-up saves the input and fails naming it.
fn execute(name: &str, entry: strata::fuzz::EntryPoint, input: &[u8], what: &str) {
    let started = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| entry(input)));
    let took = started.elapsed();
    let problem = match outcome {
        Err(_) => "panicked (message above)".to_string(),
        Ok(()) if took > SLOW => format!("took {took:?}"),
        Ok(()) => return,
    };
    let saved = save_failure(name, input);
    panic!(
        "{name}: {what} {problem}; input saved as {} ({} bytes): {:?}",
        saved.display(),
        input.len(),
        String::from_utf8_lossy(&input[..input.len().min(400)])
    );
}

fn save_failure(name: &str, input: &[u8]) -> PathBuf {
    let dir = root().join("target/fuzz-corpus-failures");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{name}-{:016x}", fnv1a(input)));
    let _ = std::fs::write(&path, input);
    path
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Marsaglia's xorshift64: tiny, deterministic, good enough to pick mutations.
struct XorShift(u64);

impl XorShift {
    /// A fixed seed per target, so each target's sequence is the same on every run.
    fn seeded(name: &str) -> XorShift {
        XorShift(fnv1a(name.as_bytes()) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Bytes that mean something to the parsers (quotes, brackets, separators, escapes, digits,
/// multi-byte UTF-8 starts), tried more often than random ones.
const INTERESTING: &[u8] = b"\n\r\t \"'[]{}<>=:,./\\-+!#*%&;|0179aAfFxX\x00\x7f\xc3\xe2\xf0\xff";

/// One mutant: a corpus file changed by one to four random operations.
fn mutate(rng: &mut XorShift, inputs: &[&[u8]]) -> Vec<u8> {
    let mut data = inputs[rng.below(inputs.len())].to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(7) {
            0 if !data.is_empty() => {
                let at = rng.below(data.len());
                data[at] ^= 1 << rng.below(8);
            }
            1 => {
                let at = rng.below(data.len() + 1);
                let byte = if rng.below(2) == 0 {
                    INTERESTING[rng.below(INTERESTING.len())]
                } else {
                    rng.next() as u8
                };
                data.insert(at, byte);
            }
            2 if !data.is_empty() => {
                let at = rng.below(data.len());
                let len = 1 + rng.below((data.len() - at).min(16));
                data.drain(at..at + len);
            }
            3 => {
                // Splice: a prefix of this input and a suffix of another corpus file.
                let other = inputs[rng.below(inputs.len())];
                let cut = rng.below(data.len() + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            4 => {
                let keep = rng.below(data.len() + 1);
                data.truncate(keep);
            }
            5 if !data.is_empty() => {
                // Repeat a chunk: long lines, deep nesting, many rules.
                let at = rng.below(data.len());
                let len = 1 + rng.below((data.len() - at).min(64));
                let chunk = data[at..at + len].to_vec();
                for _ in 0..1 + rng.below(8) {
                    data.splice(at..at, chunk.iter().copied());
                }
            }
            _ => {
                // Overwrite a byte with an interesting one.
                if !data.is_empty() {
                    let at = rng.below(data.len());
                    data[at] = INTERESTING[rng.below(INTERESTING.len())];
                }
            }
        }
    }
    data
}
