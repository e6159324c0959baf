//! The route parsers' fuzz properties (`metaproxy::fuzz_logic`, the same functions the targets in
//! `proxy/fuzz` call) on stable, in every test run: over random bytes, over records and routes
//! files generated in every spelling with hostile values, and over the committed seeds with one
//! byte changed.

use metaproxy::fuzz_logic;
use metaproxy_tests::fuzz_seeds;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// A string that is sometimes a valid field and often not: spaces around, commas, colons,
/// slashes, non-ASCII, empty.
fn rough_string() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9-]{1,12}", " ?[a-zA-Z0-9._:/, -]{0,16} ?", ".{0,12}",]
}

fn meta_addr() -> impl Strategy<Value = String> {
    prop_oneof![
        ("[a-z0-9_-]{1,8}(\\.[a-z0-9_-]{1,8}){0,2}", 0u32..70_000)
            .prop_map(|(h, p)| format!("{h}:{p}")),
        ("[a-z0-9.-]{0,8}", "[0-9+ -]{0,6}").prop_map(|(h, p)| format!("{h}:{p}")),
        rough_string(),
    ]
}

/// The value of `meta-addrs` or `meta_addrs`: a list, a comma-separated string, or junk.
fn addrs_value() -> impl Strategy<Value = Value> {
    let addrs = || prop::collection::vec(meta_addr(), 0..4);
    prop_oneof![
        addrs().prop_map(|a| json!(a)),
        addrs().prop_map(|a| json!(a.join(","))),
        any::<i64>().prop_map(|n| json!(n)),
        Just(Value::Null),
    ]
}

/// A record object: mostly a sound record in some spelling, else any subset of the four keys
/// with rough values.
fn record_value() -> impl Strategy<Value = Value> {
    prop_oneof![3 => sound_record_value(), 1 => rough_record_value()]
}

/// A valid record, maybe with spaces to trim, in the design spelling, the Go one, both, or the
/// two mixed, with the addresses listed or comma-separated.
fn sound_record_value() -> impl Strategy<Value = Value> {
    let addr =
        ("[a-z0-9_-]{1,8}(\\.[a-z0-9-]{1,8}){0,2}", 1u16..).prop_map(|(h, p)| format!("{h}:{p}"));
    (
        " ?[a-z0-9-]{1,12} ?",
        prop::collection::vec(addr, 1..4),
        0..4u8,
        any::<bool>(),
    )
        .prop_map(|(cluster, addrs, spelling, listed)| {
            let addrs = if listed {
                json!(addrs)
            } else {
                json!(addrs.join(", "))
            };
            let mut obj = Map::new();
            let keys: &[(&str, &str)] = match spelling {
                0 => &[("cluster", "meta-addrs")],
                1 => &[("cluster_name", "meta_addrs")],
                2 => &[("cluster", "meta-addrs"), ("cluster_name", "meta_addrs")],
                _ => &[("cluster", "meta_addrs")],
            };
            for (c, a) in keys {
                obj.insert((*c).into(), json!(cluster));
                obj.insert((*a).into(), addrs.clone());
            }
            Value::Object(obj)
        })
}

fn rough_record_value() -> impl Strategy<Value = Value> {
    (
        prop::option::of(rough_string()),
        prop::option::of(rough_string()),
        prop::option::of(addrs_value()),
        prop::option::of(addrs_value()),
        any::<bool>(),
    )
        .prop_map(|(cluster, cluster_name, design, go, same)| {
            let mut obj = Map::new();
            if let Some(c) = cluster.clone() {
                obj.insert("cluster".into(), json!(c));
            }
            if let Some(c) = if same { cluster } else { cluster_name } {
                obj.insert("cluster_name".into(), json!(c));
            }
            if let Some(a) = design {
                obj.insert("meta-addrs".into(), a);
            }
            if let Some(a) = go {
                obj.insert("meta_addrs".into(), a);
            }
            Value::Object(obj)
        })
}

fn table_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9._:]{1,12}",
        1 => "[a-z./ -]{0,6}",
        1 => Just("..".to_owned()),
    ]
}

/// Seeds of `target` with one byte changed, inserted or removed.
fn corrupted_seed(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let seeds: Vec<Vec<u8>> = fuzz_seeds::committed(&fuzz_seeds::dir("proxy").join(target))
        .into_values()
        .collect();
    assert!(!seeds.is_empty(), "{target} has committed seeds");
    (0..seeds.len(), any::<usize>(), any::<u8>(), 0..3u8).prop_map(move |(i, at, byte, how)| {
        let mut input = seeds[i].clone();
        let at = at % (input.len() + 1);
        match how {
            0 if at < input.len() => input[at] = byte,
            1 if at < input.len() => {
                input.remove(at);
            }
            _ => input.insert(at, byte),
        }
        input
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_hold_the_route_properties(input in prop::collection::vec(any::<u8>(), 0..256)) {
        fuzz_logic::route_record(&input);
        fuzz_logic::routes_file(&input);
    }

    #[test]
    fn generated_records_hold_the_record_properties(record in record_value()) {
        fuzz_logic::route_record(&serde_json::to_vec(&record).expect("json"));
    }

    #[test]
    fn generated_routes_files_hold_the_file_properties(
        routes in prop::collection::btree_map(table_name(), record_value(), 0..4),
    ) {
        // JSON is YAML: a flow mapping of flow mappings.
        fuzz_logic::routes_file(serde_json::to_string(&routes).expect("json").as_bytes());
    }

    #[test]
    fn corrupted_record_seeds_hold_the_record_properties(input in corrupted_seed("route_record")) {
        fuzz_logic::route_record(&input);
    }

    #[test]
    fn corrupted_file_seeds_hold_the_file_properties(input in corrupted_seed("routes_file")) {
        fuzz_logic::routes_file(&input);
    }
}
