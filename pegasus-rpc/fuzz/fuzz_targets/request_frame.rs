//! Request frames as a client sends them: THFT v0 and v1 headers, raw or built around the
//! fuzzer's bytes (`pegasus_rpc::fuzz_logic::HeaderKind`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pegasus_rpc::fuzz_logic::request_input(data));
