#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| strata::fuzz::docker_network_inspect(data));
