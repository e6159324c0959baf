//! The query_config payloads: `query_cfg_request` args and `query_cfg_response` results.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pegasus_rpc::fuzz_logic::query_config_payloads(data));
