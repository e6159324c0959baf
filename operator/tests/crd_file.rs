//! The committed CRD is what the code generates: CI fails when they drift apart.

#[test]
fn committed_crd_matches_crdgen() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crds/pegasustableroutes.yaml"
    );
    let committed =
        std::fs::read_to_string(path).expect("crds/pegasustableroutes.yaml is committed");
    let generated = metaproxy_operator::crd::crd_yaml().expect("CRD serialises");
    assert!(
        committed == generated,
        "crds/pegasustableroutes.yaml is stale: run `cargo run -p metaproxy-operator --bin crdgen > crds/pegasustableroutes.yaml`"
    );
}

#[test]
fn crd_names_what_scripts_rely_on() {
    let crd: serde_json::Value =
        serde_saphyr::from_str(&metaproxy_operator::crd::crd_yaml().expect("yaml"))
            .expect("parses back");
    assert_eq!(
        crd["metadata"]["name"],
        "pegasustableroutes.metaproxy.pegasus.io"
    );
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "ptr");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Table", "Zone", "Active", "Primary", "Backup", "Mode", "Phase", "Ready", "Age"
        ]
    );
}
