//! The route record JSON of a znode, in either spelling.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| metaproxy::fuzz_logic::route_record(data));
