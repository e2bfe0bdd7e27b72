#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| strata::fuzz::nft_tables(data));
