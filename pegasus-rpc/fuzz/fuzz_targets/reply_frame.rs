//! Reply frames as a MetaServer sends them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pegasus_rpc::fuzz_logic::reply_stream(data));
