//! Property tests of the data-plane payloads: every generated value survives encode then decode,
//! as args and as a result; random bytes never make a decoder panic; the key encoding splits back
//! into what it was made of.

use bytes::Bytes;
use pegasus_rpc::codec::key::{generate_key, key_hash, partition_index, split_key};
use pegasus_rpc::codec::{
    AddDuplicationRequest, AddDuplicationResponse, Blob, CasCheckType, CheckAndSetRequest,
    CheckAndSetResponse, CountResponse, DuplicateEntry, DuplicateRequest, DuplicateResponse,
    ErrorCode, FilterType, IncrRequest, IncrResponse, KeyValue, MultiGetRequest, MultiGetResponse,
    MultiPutRequest, MultiRemoveRequest, MultiRemoveResponse, Payload, ReadResponse, TtlResponse,
    UpdateRequest, UpdateResponse,
};
use proptest::prelude::*;

fn blob() -> impl Strategy<Value = Blob> {
    prop::collection::vec(any::<u8>(), 0..24).prop_map(|v| Blob(Bytes::from(v)))
}

fn blobs() -> impl Strategy<Value = Vec<Blob>> {
    prop::collection::vec(blob(), 0..4)
}

fn server() -> impl Strategy<Value = String> {
    "[a-z0-9.:]{0,20}"
}

fn key_value() -> impl Strategy<Value = KeyValue> {
    (blob(), blob(), prop::option::of(any::<i32>())).prop_map(|(key, value, ttl)| KeyValue {
        key,
        value,
        expire_ts_seconds: ttl,
    })
}

fn round_trip<T: Payload + PartialEq + std::fmt::Debug>(value: &T) {
    assert_eq!(&T::from_args(&value.args_bytes()).expect("args"), value);
    assert_eq!(
        &T::from_result(&value.result_bytes()).expect("result"),
        value
    );
}

proptest! {
    #[test]
    fn update_request(
        key in blob(), value in blob(), ttl in any::<i32>(),
        ty in prop::option::of(any::<i32>()), ret in prop::option::of(any::<bool>()),
        exist in prop::option::of(any::<bool>()), check in prop::option::of(blob()),
    ) {
        round_trip(&UpdateRequest {
            key, value, expire_ts_seconds: ttl, update_type: ty,
            check_value_returned: ret, check_value_exist: exist, check_value: check,
        });
    }

    #[test]
    fn write_responses(
        error in any::<i32>(), app in any::<i32>(), pidx in any::<i32>(), decree in any::<i64>(),
        count in any::<i64>(), server in server(),
    ) {
        round_trip(&UpdateResponse {
            error, app_id: app, partition_index: pidx, decree, server: server.clone(),
        });
        round_trip(&MultiRemoveResponse {
            error, count, app_id: app, partition_index: pidx, decree, server: server.clone(),
        });
        round_trip(&IncrResponse {
            error, new_value: count, app_id: app, partition_index: pidx, decree,
            server: server.clone(),
        });
    }

    #[test]
    fn read_responses(
        error in any::<i32>(), value in blob(), app in any::<i32>(), pidx in any::<i32>(),
        ttl in any::<i32>(), count in any::<i64>(), kvs in prop::collection::vec(key_value(), 0..4),
        server in server(),
    ) {
        round_trip(&ReadResponse {
            error, value, app_id: app, partition_index: pidx, server: server.clone(),
        });
        round_trip(&TtlResponse {
            error, ttl_seconds: ttl, app_id: app, partition_index: pidx, server: server.clone(),
        });
        round_trip(&CountResponse {
            error, count, app_id: app, partition_index: pidx, server: server.clone(),
        });
        round_trip(&MultiGetResponse {
            error, kvs, app_id: app, partition_index: pidx, server: server.clone(),
        });
    }

    #[test]
    fn multi_requests(
        hash_key in blob(), kvs in prop::collection::vec(key_value(), 0..4), ttl in any::<i32>(),
        sort_keys in blobs(), max in any::<i64>(),
        ints in any::<(i32, i32, i32)>(), bools in any::<(bool, bool, bool, bool)>(),
        range in (blob(), blob(), blob()),
    ) {
        round_trip(&MultiPutRequest { hash_key: hash_key.clone(), kvs, expire_ts_seconds: ttl });
        round_trip(&MultiRemoveRequest {
            hash_key: hash_key.clone(), sort_keys: sort_keys.clone(), max_count: max,
        });
        round_trip(&MultiGetRequest {
            hash_key, sort_keys, max_kv_count: ints.0, max_kv_size: ints.1, no_value: bools.0,
            start_sortkey: range.0, stop_sortkey: range.1, start_inclusive: bools.1,
            stop_inclusive: bools.2, sort_key_filter_type: FilterType(ints.2),
            sort_key_filter_pattern: range.2, reverse: bools.3,
        });
        round_trip(&Blob(Bytes::from(vec![1, 2, 3])));
    }

    #[test]
    fn atomic_writes(
        key in blob(), inc in any::<i64>(), ttl in any::<i32>(), blobs in (blob(), blob(), blob()),
        check in any::<i32>(), bools in any::<(bool, bool, bool)>(), decree in any::<i64>(),
        server in server(),
    ) {
        round_trip(&IncrRequest { key: key.clone(), increment: inc, expire_ts_seconds: ttl });
        round_trip(&CheckAndSetRequest {
            hash_key: key, check_sort_key: blobs.0.clone(), check_type: CasCheckType(check),
            check_operand: blobs.1.clone(), set_diff_sort_key: bools.0,
            set_sort_key: blobs.2.clone(), set_value: blobs.1.clone(),
            set_expire_ts_seconds: ttl, return_check_value: bools.1,
        });
        round_trip(&CheckAndSetResponse {
            error: check, check_value_returned: bools.1, check_value_exist: bools.2,
            check_value: blobs.0, app_id: ttl, partition_index: check, decree, server,
        });
    }

    #[test]
    fn duplication(
        entries in prop::collection::vec(
            (
                prop::option::of(any::<i64>()), prop::option::of("RPC_[A-Z_]{0,20}"),
                prop::option::of(blob()), prop::option::of(any::<i8>()),
                prop::option::of(any::<bool>()),
            ),
            0..4,
        ),
        error in prop::option::of(any::<i32>()), hint in prop::option::of("[ -~]{0,20}"),
    ) {
        let entries = entries
            .into_iter()
            .map(|(timestamp, task_code, raw_message, cluster_id, verify_timetag)| DuplicateEntry {
                timestamp, task_code, raw_message, cluster_id, verify_timetag,
            })
            .collect();
        round_trip(&DuplicateRequest { entries });
        round_trip(&DuplicateResponse { error, error_hint: hint });
    }

    #[test]
    fn add_duplication(
        names in ("[a-z_.:]{0,12}", "[a-z_]{0,12}"), checkpoint in prop::option::of(any::<bool>()),
        remote_app in prop::option::of("[a-z]{0,8}"), count in prop::option::of(any::<i32>()),
        ids in any::<(i32, i32)>(), hint in prop::option::of("[ -~]{0,20}"),
    ) {
        let req = AddDuplicationRequest {
            app_name: names.0, remote_cluster_name: names.1,
            is_duplicating_checkpoint: checkpoint, remote_app_name: remote_app.clone(),
            remote_replica_count: count,
        };
        let mut out = bytes::BytesMut::new();
        req.to_args(&mut out);
        prop_assert_eq!(AddDuplicationRequest::from_args(&out).expect("args"), req);
        let resp = AddDuplicationResponse {
            err: ErrorCode::new("ERR_DUP_EXIST"), appid: ids.0, dupid: ids.1, hint,
            remote_app_name: remote_app, remote_replica_count: count,
        };
        let mut out = bytes::BytesMut::new();
        resp.to_result(&mut out);
        prop_assert_eq!(AddDuplicationResponse::from_result(&out).expect("result"), resp);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = UpdateRequest::from_args(&bytes);
        let _ = MultiGetRequest::from_args(&bytes);
        let _ = MultiPutRequest::from_args(&bytes);
        let _ = CheckAndSetRequest::from_args(&bytes);
        let _ = DuplicateRequest::from_args(&bytes);
        let _ = Blob::from_args(&bytes);
        let _ = AddDuplicationRequest::from_args(&bytes);
        let _ = AddDuplicationResponse::from_result(&bytes);
        let _ = ReadResponse::from_result(&bytes);
        let _ = MultiGetResponse::from_result(&bytes);
        let _ = split_key(&bytes);
        let _ = key_hash(&bytes);
    }

    #[test]
    fn storage_keys_split_back(hash_key in prop::collection::vec(any::<u8>(), 0..40),
                               sort_key in prop::collection::vec(any::<u8>(), 0..40),
                               count in 1i32..=1024) {
        let key = generate_key(&hash_key, &sort_key).expect("fits");
        let (h, s) = split_key(&key).expect("splits");
        prop_assert_eq!(h, &hash_key[..]);
        prop_assert_eq!(s, &sort_key[..]);
        let hash = key_hash(&key).expect("hashes");
        let pidx = partition_index(hash, count).expect("positive count");
        prop_assert!((0..count).contains(&pidx));
    }
}
