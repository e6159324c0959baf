//! The seed corpora of the route parsers' fuzz targets (`proxy/fuzz/seeds/<target>/`): the
//! records and files the documentation shows, in every spelling and form the parsers read, and a
//! few they refuse. Regenerate with
//! `METAPROXY_WRITE_FUZZ_SEEDS=1 cargo test -p metaproxy --test fuzz_seeds`.

use metaproxy::fuzz_logic;
use metaproxy::route::RouteRecord;
use metaproxy_tests::fuzz_seeds::{self, Seeds};

fn seeds() -> Seeds {
    let mut seeds = Seeds::default();
    let written = RouteRecord::new("c3srv-ad", ["10.0.0.1:34601", "meta-1.pegasus:34601"])
        .expect("a valid record")
        .to_json();
    let records: [(&str, &[u8]); 9] = [
        // docs/architecture.md §4 and route/record.rs: the two spellings, and both in one object
        // as the operator writes them.
        (
            "design",
            br#"{"cluster": "c3srv-ad", "meta-addrs": ["10.0.0.1:34601", "meta-1:34601"]}"#,
        ),
        (
            "go",
            br#"{"cluster_name":"c3srv-ad","meta_addrs":"10.0.0.1:34601,meta-1:34601"}"#,
        ),
        ("both", &written),
        (
            "mixed",
            br#"{"cluster": "c", "meta_addrs": ["h:1", "h:2"]}"#,
        ),
        (
            "go-spaces-and-trailing-comma",
            br#"{"cluster_name":" c1 ","meta_addrs":"127.0.0.1:34601, 127.0.0.1:34602,"}"#,
        ),
        (
            "spellings-disagree",
            br#"{"cluster":"a","meta-addrs":["h:1"],"cluster_name":"b","meta_addrs":"h:1"}"#,
        ),
        (
            "bad-port",
            br#"{"cluster": "c", "meta-addrs": ["h:70000"]}"#,
        ),
        (
            "go-meta-proxy-extra-fields",
            br#"{"app_id":3,"cluster_name":"c","meta_addrs":"h:1","partition_count":8}"#,
        ),
        ("not-an-object", b"[\"c\", [\"h:1\"]]"),
    ];
    for (name, bytes) in records {
        seeds.add("route_record", format!("{name}.json"), bytes);
    }

    let files: [(&str, &str); 9] = [
        // route/file.rs: flow mappings, both spellings, listed or comma-separated addresses.
        (
            "flow",
            "temp:  {cluster: c3srv-ad, meta_addrs: [\"127.0.0.1:34601\", \"127.0.0.1:34602\"]}\n\
             stat:  {cluster_name: c3srv-bk, meta_addrs: \"10.1.0.1:34601\"}\n",
        ),
        (
            "block",
            "# two tables on one cluster\n\
             temp:\n  cluster: c1\n  meta-addrs:\n    - meta-0.pegasus:34601\n    - meta-1.pegasus:34601\n\
             a.b:c_1:\n  cluster_name: c1\n  meta_addrs: meta-0.pegasus:34601,meta-1.pegasus:34601\n",
        ),
        (
            "anchor-and-alias",
            "temp: &c1 {cluster: c1, meta_addrs: [\"h1:1\"]}\nstat: *c1\n",
        ),
        ("empty", ""),
        ("null", "~\n"),
        ("not-a-mapping", "- a\n- b\n"),
        ("bad-table", "a/b: {cluster: c, meta_addrs: [\"h:1\"]}\n"),
        ("bad-route", "temp: {cluster: c1}\n"),
        ("bad-yaml", "temp: {cluster: [unclosed\n"),
    ];
    for (name, text) in files {
        seeds.add("routes_file", format!("{name}.yaml"), text);
    }
    seeds
}

#[test]
fn committed_seeds_are_the_documented_examples() {
    seeds().check_or_write(&fuzz_seeds::dir("proxy"));
}

/// The seeds as built, which the test above holds equal to the committed ones.
#[test]
fn every_seed_holds_its_targets_properties() {
    seeds().hold(&[
        ("route_record", fuzz_logic::route_record),
        ("routes_file", fuzz_logic::routes_file),
    ]);
}
