#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| strata::fuzz::dev_kvm_stat(data));
