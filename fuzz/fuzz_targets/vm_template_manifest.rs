#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| strata::fuzz::vm_template_manifest(data));
