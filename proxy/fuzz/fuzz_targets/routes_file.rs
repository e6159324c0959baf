//! The static routes file (`--routes`), YAML.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| metaproxy::fuzz_logic::routes_file(data));
