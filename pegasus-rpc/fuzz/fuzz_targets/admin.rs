//! The admin payloads: update_app_env and query_duplication, requests and responses.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pegasus_rpc::fuzz_logic::admin_payloads(data));
