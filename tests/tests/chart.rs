//! The Helm chart (`charts/metaproxy`), rendered by the real helm and read back: one pinned proxy
//! set per zone, the operator configured with every zone, probes, security and grace periods, the
//! schema's refusals, the flags the binaries accept, the alerts' metric names, the CRD copy, the
//! Dockerfiles, and the example routes against the real API server.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use metaproxy_tests::chart::{
    self, HELM, Manifests, NAMESPACE, Render, args, container, flag_values, selects,
};
use metaproxy_tests::k8s::{API_SERVER, ApiServer, repo_root};
use metaproxy_tests::require;
use serde_json::Value;

fn three_zones() -> Manifests {
    Render::release("mp")
        .values_file("ci/three-zones-values.yaml")
        .objects()
        .expect("three zones render")
}

fn one_zone() -> Manifests {
    Render::release("mp")
        .values_file("ci/one-zone-values.yaml")
        .objects()
        .expect("one zone renders")
}

fn ci_values(file: &str) -> Value {
    chart::yaml_file(&chart::chart_dir().join("ci").join(file)).expect("ci values parse")
}

fn chart_values() -> Value {
    chart::yaml_file(&chart::chart_dir().join("values.yaml")).expect("values.yaml parses")
}

fn pod_labels(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["metadata"]["labels"]
}

fn seconds(text: &str) -> u64 {
    let d = metaproxy::startup::parse_duration(text).expect("a duration");
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[test]
fn three_zones_give_each_zone_its_own_pinned_proxy_set() {
    require!(HELM);
    let objects = three_zones();
    let zones = ci_values("three-zones-values.yaml")["zones"].clone();
    let zones = zones.as_array().expect("zones");
    assert_eq!(zones.len(), 3);

    let deployments = objects.component("Deployment", "proxy");
    let services = objects.component("Service", "proxy");
    let admin_services = objects.component("Service", "proxy-admin");
    let budgets = objects.component("PodDisruptionBudget", "proxy");
    assert_eq!(
        (
            deployments.len(),
            services.len(),
            admin_services.len(),
            budgets.len()
        ),
        (3, 3, 3, 3)
    );

    for zone in zones {
        let name = zone["name"].as_str().expect("zone name");
        let topology_zone = zone["topologyZone"].as_str().unwrap_or(name);
        let d = objects.expect("Deployment", &format!("mp-metaproxy-{name}"));
        let labels = pod_labels(d);
        assert_eq!(labels["metaproxy.pegasus.io/zone"], name);

        // Reads its own ZooKeeper and root.
        let a = args(container(d));
        assert_eq!(
            flag_values(&a, "zk"),
            [zone["zookeeper"]["hosts"].as_str().expect("hosts")],
            "{name}: {a:?}"
        );
        assert_eq!(
            flag_values(&a, "zk-root"),
            [zone["zookeeper"]["root"].as_str().expect("root")],
            "{name}"
        );

        // Pinned to its zone, spread over the zone's nodes.
        let spec = &d["spec"]["template"]["spec"];
        let terms = &spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"];
        assert_eq!(
            terms,
            &serde_json::json!([{"matchExpressions": [{
                "key": "topology.kubernetes.io/zone", "operator": "In", "values": [topology_zone]
            }]}]),
            "{name}"
        );
        let spread = &spec["topologySpreadConstraints"][0];
        assert_eq!(spread["topologyKey"], "kubernetes.io/hostname", "{name}");
        assert!(
            selects(&spread["labelSelector"]["matchLabels"], labels),
            "{name}: the spread counts this zone's proxies"
        );
        if let Some(spread_values) = zone["scheduling"]["spreadAcrossNodes"].as_object() {
            assert_eq!(
                spread["whenUnsatisfiable"], spread_values["whenUnsatisfiable"],
                "{name}: the zone's own spread setting"
            );
            assert_eq!(
                spread["maxSkew"], 1,
                "{name}: the rest from proxy.scheduling"
            );
        }

        // The Service, the admin Service and the budget select this zone's proxies and no
        // other zone's.
        let service = objects.expect("Service", &format!("mp-metaproxy-{name}"));
        let admin = objects.expect("Service", &format!("mp-metaproxy-{name}-admin"));
        let budget = objects.expect("PodDisruptionBudget", &format!("mp-metaproxy-{name}"));
        for (what, selector) in [
            ("service", &service["spec"]["selector"]),
            ("admin service", &admin["spec"]["selector"]),
            ("budget", &budget["spec"]["selector"]["matchLabels"]),
        ] {
            let selected: Vec<&str> = deployments
                .iter()
                .filter(|other| selects(selector, pod_labels(other)))
                .filter_map(|other| other["metadata"]["name"].as_str())
                .collect();
            assert_eq!(
                selected,
                [format!("mp-metaproxy-{name}")],
                "{name}: the {what} selects"
            );
        }
        assert_eq!(service["spec"]["ports"][0]["port"], 34601, "{name}");
        assert_eq!(service["spec"]["ports"][0]["targetPort"], "pegasus");
        assert_eq!(
            service["spec"]["ports"].as_array().map(Vec::len),
            Some(1),
            "{name}: clients' Service carries no admin port"
        );
        assert_eq!(admin["spec"]["type"], "ClusterIP");
        assert_eq!(admin["spec"]["ports"][0]["targetPort"], "admin");
        assert_eq!(budget["spec"]["maxUnavailable"], 1);
    }

    // Per-zone values reach their zone only.
    let az2 = objects.expect("Deployment", "mp-metaproxy-az2");
    assert_eq!(az2["spec"]["replicas"], 2);
    assert_eq!(
        objects.expect("Deployment", "mp-metaproxy-az1")["spec"]["replicas"],
        3
    );
    assert_eq!(flag_values(&args(container(az2)), "log"), ["debug"]);
    let az3 = objects.expect("Service", "mp-metaproxy-az3");
    assert_eq!(az3["spec"]["type"], "LoadBalancer");
    assert_eq!(az3["spec"]["externalTrafficPolicy"], "Local");
    assert_eq!(
        objects.expect("Service", "mp-metaproxy-az1")["spec"]["type"],
        "ClusterIP"
    );
    assert_eq!(
        container(objects.expect("Deployment", "mp-metaproxy-az3"))["resources"]["limits"]["memory"],
        "512Mi"
    );
}

#[test]
fn the_notes_give_each_zone_its_address() {
    require!(HELM);
    let notes = Render::release("mp")
        .values_file("ci/three-zones-values.yaml")
        .notes()
        .expect("notes render");
    for zone in ["az1", "az2", "az3"] {
        assert!(
            notes.contains(&format!(
                "  {zone}: mp-metaproxy-{zone}.{NAMESPACE}.svc.cluster.local:34601\n"
            )),
            "{zone}:\n{notes}"
        );
    }
    assert!(
        notes.contains("EXTERNAL-IP of `kubectl get service -n pegasus mp-metaproxy-az3`"),
        "the LoadBalancer zone:\n{notes}"
    );
    assert!(notes.contains("kubectl get ptr -n pegasus"), "{notes}");

    let without_operator = Render::release("mp")
        .values_file("ci/one-zone-values.yaml")
        .values("operator: {enabled: false}")
        .notes()
        .expect("notes render");
    assert!(
        without_operator
            .contains("another release's operator must list\naz1 in its operator.extraZones"),
        "{without_operator}"
    );
}

#[test]
fn the_operator_sees_every_zone_and_every_observer() {
    require!(HELM);
    let objects = three_zones();
    let zones = ci_values("three-zones-values.yaml")["zones"].clone();
    let op = objects.expect("Deployment", "mp-metaproxy-operator");
    let a = args(container(op));
    let expected: Vec<String> = zones
        .as_array()
        .expect("zones")
        .iter()
        .map(|z| {
            format!(
                "{}={}{}",
                z["name"].as_str().expect("name"),
                z["zookeeper"]["hosts"].as_str().expect("hosts"),
                z["zookeeper"]["root"].as_str().expect("root")
            )
        })
        .collect();
    assert_eq!(flag_values(&a, "zone"), expected);
    assert_eq!(flag_values(&a, "default-zone"), ["az2"]);
    assert_eq!(flag_values(&a, "namespace"), [NAMESPACE]);
    assert_eq!(
        op["spec"]["replicas"], 2,
        "two replicas: the Lease makes it safe"
    );
    let budget = objects.expect("PodDisruptionBudget", "mp-metaproxy-operator");
    assert!(selects(
        &budget["spec"]["selector"]["matchLabels"],
        pod_labels(op)
    ));
    assert_eq!(
        budget["spec"]["maxUnavailable"], 1,
        "a standby survives a drain"
    );

    // Each zone's observer is its admin Service, on the port that Service exposes.
    let observers = flag_values(&a, "observer");
    assert_eq!(observers.len(), 3, "{a:?}");
    for (zone, observer) in ["az1", "az2", "az3"].iter().zip(&observers) {
        let admin = objects.expect("Service", &format!("mp-metaproxy-{zone}-admin"));
        let port = &admin["spec"]["ports"][0]["port"];
        assert_eq!(
            observer,
            &format!("{zone}=http://mp-metaproxy-{zone}-admin.{NAMESPACE}.svc:{port}")
        );
    }

    // Observers are on by default (the operator has --observer); ZooKeeper credentials are off:
    // today's binaries lack the flag.
    let one = one_zone();
    let a = args(container(one.expect("Deployment", "mp-metaproxy-operator")));
    let admin = one.expect("Service", "mp-metaproxy-az1-admin");
    assert_eq!(
        flag_values(&a, "observer"),
        [format!(
            "az1=http://mp-metaproxy-az1-admin.{NAMESPACE}.svc:{}",
            admin["spec"]["ports"][0]["port"]
        )],
        "{a:?}"
    );
    let off = Render::release("mp")
        .values_file("ci/one-zone-values.yaml")
        .values("operator: {observers: {enabled: false}}")
        .objects()
        .expect("renders");
    let a_off = args(container(off.expect("Deployment", "mp-metaproxy-operator")));
    assert!(flag_values(&a_off, "observer").is_empty(), "{a_off:?}");
    assert!(flag_values(&a, "zk-auth-file").is_empty(), "{a:?}");
    assert_eq!(flag_values(&a, "default-zone"), ["az1"], "the first zone");
}

#[test]
fn rbac_is_namespaced_unless_every_namespace_is_watched() {
    require!(HELM);
    let objects = one_zone();
    assert!(objects.of_kind("ClusterRole").is_empty());
    assert!(objects.of_kind("ClusterRoleBinding").is_empty());
    let op = objects.expect("Deployment", "mp-metaproxy-operator");
    let a = args(container(op));
    let sa = op["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .expect("service account");
    objects.expect("ServiceAccount", sa);

    let routes = objects.expect("Role", "mp-metaproxy-operator");
    assert_eq!(routes["metadata"]["namespace"], NAMESPACE);
    let granted: BTreeSet<(String, String)> = routes["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .flat_map(|r| {
            let group = r["apiGroups"][0].as_str().unwrap_or_default().to_owned();
            r["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str())
                .flat_map(move |res| {
                    let group = group.clone();
                    r["verbs"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str())
                        .map(move |v| (format!("{group}/{res}"), v.to_owned()))
                })
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("metaproxy.pegasus.io/pegasustableroutes", "get"),
        ("metaproxy.pegasus.io/pegasustableroutes", "list"),
        ("metaproxy.pegasus.io/pegasustableroutes", "watch"),
        ("metaproxy.pegasus.io/pegasustableroutes", "patch"),
        ("metaproxy.pegasus.io/pegasustableroutes/status", "get"),
        ("metaproxy.pegasus.io/pegasustableroutes/status", "patch"),
        (
            "metaproxy.pegasus.io/pegasustableroutes/finalizers",
            "update",
        ),
        ("events.k8s.io/events", "create"),
        ("events.k8s.io/events", "patch"),
    ]
    .iter()
    .map(|(r, v)| (r.to_string(), v.to_string()))
    .collect();
    assert_eq!(granted, want, "exactly what the operator uses");
    let binding = objects.expect("RoleBinding", "mp-metaproxy-operator");
    assert_eq!(binding["subjects"][0]["name"], sa);
    assert_eq!(binding["roleRef"]["name"], "mp-metaproxy-operator");

    // The Lease: create, and get/update of its own name only.
    let lease = objects.expect("Role", "mp-metaproxy-operator-lease");
    let lease_name = flag_values(&a, "lease-name");
    assert_eq!(
        lease["rules"][1]["resourceNames"],
        serde_json::json!(lease_name)
    );
    assert_eq!(lease["rules"][0]["verbs"], serde_json::json!(["create"]));
    assert!(lease["rules"][0]["resourceNames"].is_null());
    let env = &container(op)["env"];
    assert!(
        env.as_array()
            .expect("env")
            .iter()
            .any(|e| e["name"] == "POD_NAMESPACE"
                && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"),
        "the Lease lives in the pod's namespace, where the Role is"
    );

    // Every namespace: a ClusterRole (named after the namespace too), and no --namespace.
    let all = Render::release("mp")
        .values_file("ci/one-zone-values.yaml")
        .values("operator: {watch: {allNamespaces: true}}")
        .objects()
        .expect("renders");
    let cluster_role = all.expect("ClusterRole", "pegasus-mp-metaproxy-operator");
    assert!(cluster_role["metadata"]["namespace"].is_null());
    all.expect("ClusterRoleBinding", "pegasus-mp-metaproxy-operator");
    assert!(all.get("Role", "mp-metaproxy-operator").is_none());
    all.expect("Role", "mp-metaproxy-operator-lease");
    let a = args(container(all.expect("Deployment", "mp-metaproxy-operator")));
    assert!(flag_values(&a, "namespace").is_empty(), "{a:?}");
}

#[test]
fn probes_security_and_grace_periods() {
    require!(HELM);
    let objects = three_zones();
    let values = chart_values();
    let deployments = objects.of_kind("Deployment");
    assert_eq!(deployments.len(), 4, "three proxy sets and the operator");
    for d in deployments {
        let name = d["metadata"]["name"].as_str().expect("name");
        let pod = &d["spec"]["template"]["spec"];
        let c = container(d);
        assert!(
            c["command"].is_null(),
            "{name}: the image's ENTRYPOINT runs"
        );
        let admin_port = c["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == "admin")
            .expect("an admin port");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/live", "{name}");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready", "{name}");
        for probe in ["livenessProbe", "readinessProbe"] {
            assert_eq!(c[probe]["httpGet"]["port"], admin_port["name"], "{name}");
        }
        let admin_listen = flag_values(&args(c), "admin-listen");
        assert_eq!(
            admin_listen,
            [format!("0.0.0.0:{}", admin_port["containerPort"])],
            "{name}: the probes reach the port the binary listens on"
        );

        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(
            pod["securityContext"]["runAsUser"], values["podSecurityContext"]["runAsUser"],
            "{name}"
        );
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(sc["privileged"], false, "{name}");
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{name}"
        );
        assert!(sc["capabilities"]["add"].is_null(), "{name}");

        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "proxy" {
            assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
            let grace = seconds(
                flag_values(&args(c), "shutdown-grace")
                    .first()
                    .expect("--shutdown-grace"),
            );
            let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
                .as_u64()
                .expect("a sleep preStop (no shell in the image)");
            assert!(pre_stop > 0);
            let termination = pod["terminationGracePeriodSeconds"]
                .as_u64()
                .expect("terminationGracePeriodSeconds");
            assert!(
                termination > pre_stop + grace,
                "{name}: {termination}s must outlast the preStop sleep ({pre_stop}s) and --shutdown-grace ({grace}s)"
            );
        }
    }
    // A zone's longer --shutdown-grace lengthens its pods' grace period.
    let grace_of = |zone: &str| {
        objects.expect("Deployment", &format!("mp-metaproxy-{zone}"))["spec"]["template"]["spec"]
            ["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("grace")
    };
    assert_eq!(grace_of("az2"), grace_of("az1") + 10);
}

#[test]
fn bad_values_are_refused_with_a_reason() {
    require!(HELM);
    let zone = "zones: [{name: az1, zookeeper: {hosts: 'zk-0:2181', root: /metaproxy/a}}]\n";
    let cases: &[(&str, &str, &[&str])] = &[
        ("no zone at all", "{}", &["/zones", "minItems"]),
        (
            "an upper-case zone name",
            "zones: [{name: AZ1, zookeeper: {hosts: 'zk-0:2181', root: /metaproxy/a}}]",
            &["/zones/0/name", "does not match pattern"],
        ),
        (
            "a zone without a root",
            "zones: [{name: az1, zookeeper: {hosts: 'zk-0:2181'}}]",
            &["/zones/0/zookeeper", "root"],
        ),
        (
            "a relative root",
            "zones: [{name: az1, zookeeper: {hosts: 'zk-0:2181', root: metaproxy}}]",
            &["/zones/0/zookeeper/root"],
        ),
        (
            "hosts without ports",
            "zones: [{name: az1, zookeeper: {hosts: 'zk-0,zk-1', root: /m}}]",
            &["/zones/0/zookeeper/hosts"],
        ),
        (
            "a duration without a unit",
            "proxy: {settings: {upstream-timeout: '3'}}",
            &["/proxy/settings/upstream-timeout", "does not match pattern"],
        ),
        (
            "a misspelt proxy flag",
            "proxy: {settings: {upstream-timout: 3s}}",
            &["/proxy/settings", "upstream-timout"],
        ),
        (
            "a flag the chart sets from the zone",
            "proxy: {settings: {zk-root: /elsewhere}}",
            &["/proxy/settings", "zk-root"],
        ),
        (
            "an unknown log format",
            "proxy: {settings: {log-format: xml}}",
            &["/proxy/settings/log-format"],
        ),
        (
            "a lease duration in milliseconds",
            "operator: {settings: {lease-duration: 15500ms}}",
            &["/operator/settings/lease-duration"],
        ),
        (
            "a Service type that does not exist",
            "proxy: {service: {type: Ingress}}",
            &["/proxy/service/type"],
        ),
        (
            "a misspelt top-level key",
            "zone: []",
            &["additional properties", "zone"],
        ),
        (
            "two zones of one name",
            "zones: [{name: az1, zookeeper: {hosts: 'a:1', root: /m}}, {name: az1, zookeeper: {hosts: 'b:1', root: /m}}]",
            &["zones[1]", "az1", "listed twice"],
        ),
        (
            "a default zone that is not a zone",
            "operator: {defaultZone: az9}",
            &["operator.defaultZone", "az9", "az1"],
        ),
        (
            "ZooKeeper credentials without a Secret",
            "zookeeper: {auth: {enabled: true}}",
            &["zookeeper.auth.existingSecret"],
        ),
        (
            "own required node affinity while pinned to the zone",
            "proxy: {scheduling: {affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: []}}}}}",
            &["pinToZone"],
        ),
        (
            "a zero shutdown grace",
            "proxy: {settings: {shutdown-grace: 0s}}",
            &["shutdown-grace", "more than zero"],
        ),
    ];
    for (what, yaml, wants) in cases {
        let mut render = Render::release("mp");
        if !yaml.starts_with("zones:") && *what != "no zone at all" {
            render = render.values(zone);
        }
        let message = render
            .values(yaml)
            .refusal()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        for want in *wants {
            assert!(
                message.contains(want),
                "{what}: the message should say {want:?}:\n{message}"
            );
        }
        assert!(
            message.lines().count() <= 6,
            "{what}: a short message:\n{message}"
        );
    }
}

/// ZooKeeper credentials: each side mounts its own Secret as a file named by `--zk-auth-file`,
/// and the operator is told the proxies' identity; nothing secret is in the arguments.
#[test]
fn zookeeper_credentials_are_one_secret_file_per_side() {
    require!(HELM);
    let objects = three_zones();
    for d in objects.of_kind("Deployment") {
        let a = args(container(d));
        let operator = d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator";
        assert_eq!(
            flag_values(&a, "zk-auth-file"),
            ["/etc/metaproxy/zk/auth"],
            "{a:?}"
        );
        let secret = &d["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"];
        let want = if operator {
            "metaproxy-zk-operator"
        } else {
            "metaproxy-zk-digest"
        };
        assert_eq!(secret, want, "{}", d["metadata"]["name"]);
        let reader = flag_values(&a, "zk-reader-digest");
        if operator {
            assert_eq!(reader, ["proxy:Zu9sYQ+4rhSqYVnEqbbxbAWhQqg="], "{a:?}");
        } else {
            assert!(reader.is_empty(), "{a:?}");
        }
    }
}

/// The flags the chart renders are the binaries' own: each Deployment's args pass the binary's
/// `--check-config`, failover observers included, and with every value on no flag is unknown.
#[test]
fn the_binaries_accept_the_rendered_flags() {
    require!(HELM);
    let proxy = chart::workspace_binary("metaproxy").expect("metaproxy builds");
    let operator =
        chart::workspace_binary("metaproxy-operator").expect("metaproxy-operator builds");
    let binary_of = |d: &Value| {
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator" {
            operator.clone()
        } else {
            proxy.clone()
        }
    };
    let renders = [
        one_zone(),
        Render::release("mp")
            .values_file("ci/three-zones-values.yaml")
            .values("zookeeper: {auth: {enabled: false}}")
            .objects()
            .expect("renders"),
    ];
    for objects in &renders {
        for d in objects.of_kind("Deployment") {
            let a = args(container(d));
            let out = Command::new(binary_of(d))
                .args(&a)
                .arg("--check-config")
                .output()
                .expect("runs");
            assert!(
                out.status.success(),
                "{} refuses {a:?}: {}",
                d["metadata"]["name"],
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    // With everything on (ZooKeeper credentials too), every rendered flag is a binary's own.
    // (--observer came with automatic failover, --zk-auth-file and --zk-reader-digest with
    // ZooKeeper ACLs.)
    let mut unknown = BTreeSet::new();
    let known = |bin: &Path| chart::known_flags(bin).expect("--help");
    let (proxy_flags, operator_flags) = (known(&proxy), known(&operator));
    for d in three_zones().of_kind("Deployment") {
        let flags = if binary_of(d) == operator {
            &operator_flags
        } else {
            &proxy_flags
        };
        for a in args(container(d)) {
            let name = a
                .trim_start_matches("--")
                .split('=')
                .next()
                .unwrap_or_default()
                .to_owned();
            if !flags.contains(&name) {
                unknown.insert(name);
            }
        }
    }
    assert_eq!(unknown, BTreeSet::new(), "flags the binaries do not know");
}

/// The settings values.yaml renders are the binaries' own defaults, except where the chart means
/// to differ (JSON logs, for log collectors): the chart changes nothing behind the reader's back.
#[test]
fn the_charts_settings_are_the_binaries_defaults() {
    require!(HELM);
    let values = chart_values();
    for (bin, settings, minimal) in [
        (
            "metaproxy",
            &values["proxy"]["settings"],
            &["--zk=h:1", "--zk-root=/a"][..],
        ),
        (
            "metaproxy-operator",
            &values["operator"]["settings"],
            &["--zone=a=h:1/r"][..],
        ),
    ] {
        let binary = chart::workspace_binary(bin).expect("builds");
        let out = Command::new(&binary)
            .args(minimal)
            .arg("--check-config")
            .output()
            .expect("runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let summary: Value = serde_json::from_str(
            text.trim()
                .strip_prefix("configuration OK: ")
                .unwrap_or_else(|| panic!("{bin} --check-config: {text}")),
        )
        .expect("JSON");
        for (flag, value) in settings.as_object().expect("settings") {
            if flag == "log-format" {
                assert_eq!(value, "json", "{bin}: JSON logs on Kubernetes");
                continue;
            }
            let default = find_setting(&summary, flag)
                .unwrap_or_else(|| panic!("{bin}: {flag} is not in its --check-config: {summary}"));
            let same = match (value.as_str(), default.as_str()) {
                (Some(a), Some(b)) => match (
                    metaproxy::startup::parse_duration(a),
                    metaproxy::startup::parse_duration(b),
                ) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => a == b,
                },
                _ => value == default,
            };
            assert!(
                same,
                "{bin}: values.yaml sets {flag}: {value}, the binary's default is {default}"
            );
        }
    }
}

/// A setting in a --check-config summary, by its flag name, at any depth; a ZooKeeper session
/// timeout may sit under the ZooKeeper source as session-timeout.
fn find_setting<'a>(summary: &'a Value, flag: &str) -> Option<&'a Value> {
    let names = [
        flag.to_owned(),
        flag.replace('-', "_"),
        flag.trim_start_matches("zk-").to_owned(),
        flag.trim_start_matches("zk-").replace('-', "_"),
    ];
    match summary {
        Value::Object(map) => names
            .iter()
            .find_map(|n| map.get(n.as_str()))
            .or_else(|| map.values().find_map(|v| find_setting(v, flag))),
        _ => None,
    }
}

/// Both layouts: one release for every zone (above), or one release per zone with the operator
/// in one of them, told about the other zones.
#[test]
fn one_release_per_zone() {
    require!(HELM);
    let az1 = Render::release("metaproxy-az1")
        .values(
            "zones: [{name: az1, zookeeper: {hosts: 'zk-a:2181', root: /metaproxy/az1}}]\n\
             operator:\n  observers: {enabled: true}\n  extraZones:\n\
             \x20   - {name: az2, zookeeper: {hosts: 'zk-b:2181', root: /metaproxy/az2}, observer: 'http://metaproxy-az2-az2-admin.pegasus.svc:34602'}\n",
        )
        .objects()
        .expect("az1 renders");
    let az2 = Render::release("metaproxy-az2")
        .values(
            "zones: [{name: az2, zookeeper: {hosts: 'zk-b:2181', root: /metaproxy/az2}}]\n\
             operator: {enabled: false}\n",
        )
        .objects()
        .expect("az2 renders");

    assert!(az2.component("Deployment", "operator").is_empty());
    for kind in ["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"] {
        assert!(az2.of_kind(kind).is_empty(), "az2 has no {kind}");
    }
    az2.expect("Deployment", "metaproxy-az2-az2");
    let az2_admin = az2.expect("Service", "metaproxy-az2-az2-admin");

    let a = args(container(
        az1.expect("Deployment", "metaproxy-az1-operator"),
    ));
    assert_eq!(
        flag_values(&a, "zone"),
        ["az1=zk-a:2181/metaproxy/az1", "az2=zk-b:2181/metaproxy/az2"]
    );
    assert_eq!(flag_values(&a, "default-zone"), ["az1"]);
    assert_eq!(
        flag_values(&a, "observer"),
        [
            format!("az1=http://metaproxy-az1-az1-admin.{NAMESPACE}.svc:34602"),
            format!(
                "az2=http://{}.{NAMESPACE}.svc:{}",
                az2_admin["metadata"]["name"].as_str().expect("name"),
                az2_admin["spec"]["ports"][0]["port"]
            ),
        ]
    );

    // The two releases' objects never share a name.
    let names = |m: &Manifests| -> BTreeSet<String> {
        m.0.iter()
            .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
            .collect()
    };
    let clash: Vec<String> = names(&az1).intersection(&names(&az2)).cloned().collect();
    assert!(clash.is_empty(), "{clash:?}");
}

/// Every metric an alert or the ServiceMonitor's rules query is one the binaries export.
#[test]
fn alerts_use_the_metrics_the_binaries_export() {
    require!(HELM);
    // A family is exported from its first sample on: give each labelled one a sample.
    use metaproxy::metrics::{ReasonLabel, ResultLabel};
    let proxy = metaproxy::metrics::Metrics::default();
    let result = ResultLabel { result: "ok" };
    let reason = ReasonLabel { reason: "any" };
    proxy.upstream_calls.get_or_create(&result).inc();
    proxy.upstream_latency.get_or_create(&result).observe(0.1);
    proxy.zk_reads.get_or_create(&result).inc();
    proxy.route_errors.get_or_create(&reason).inc();
    proxy.frame_errors.get_or_create(&reason).inc();
    let operator = metaproxy_operator::metrics::Metrics::new();
    operator.reconciled(true);
    operator.failed("any");
    operator.znode_written("set");
    operator.probed("c1", false, 0.1, 1);
    operator.observer_answered("az1", true);
    let mut exported = String::new();
    prometheus_client::encoding::text::encode(&mut exported, &proxy.registry()).expect("encode");
    exported.push_str(&operator.encode());
    // Families by name and type; samples add _total (counters) and _bucket/_sum/_count.
    let mut series = BTreeSet::new();
    for line in exported.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            for s in suffixes {
                series.insert(format!("{name}{s}"));
            }
        }
    }
    assert!(series.contains("metaproxy_requests_total"), "{series:?}");
    assert!(series.contains("metaproxy_operator_leader"), "{series:?}");

    let objects = three_zones();
    let rule = objects.expect("PrometheusRule", "mp-metaproxy");
    let mut alerts = 0;
    for group in rule["spec"]["groups"].as_array().expect("groups") {
        for r in group["rules"].as_array().expect("rules") {
            let name = r["alert"].as_str().expect("an alert");
            alerts += 1;
            let expr = r["expr"].as_str().expect("expr");
            let used: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("metaproxy_"))
                .collect();
            assert!(!used.is_empty(), "{name}: {expr}");
            for metric in used {
                assert!(
                    series.contains(metric),
                    "{name}: {metric} is not exported by metaproxy or metaproxy-operator"
                );
            }
            assert!(
                ["critical", "warning", "info"]
                    .contains(&r["labels"]["severity"].as_str().unwrap_or_default()),
                "{name}: a severity"
            );
            assert!(r["annotations"]["summary"].is_string(), "{name}");
            assert!(
                expr.contains(&format!("namespace=\"{NAMESPACE}\"")),
                "{name}: only this release's namespace"
            );
        }
    }
    assert!(alerts >= 10, "{alerts} alerts");
    let monitor = objects.expect("ServiceMonitor", "mp-metaproxy");
    let selector = &monitor["spec"]["selector"]["matchLabels"];
    let scraped: Vec<&str> = objects
        .of_kind("Service")
        .into_iter()
        .filter(|s| selects(selector, &s["metadata"]["labels"]))
        .filter_map(|s| s["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        scraped,
        [
            "mp-metaproxy-operator",
            "mp-metaproxy-az1-admin",
            "mp-metaproxy-az2-admin",
            "mp-metaproxy-az3-admin"
        ],
        "the admin Services, never the clients' ones"
    );
}

#[test]
fn the_charts_crd_is_the_generated_one() {
    let generated = metaproxy_operator::crd::crd_yaml().expect("crdgen");
    let root = repo_root();
    let fix = "cargo run -p metaproxy-operator --bin crdgen | tee crds/pegasustableroutes.yaml \
               > charts/metaproxy/crds/pegasustableroutes.yaml";
    for copy in [
        "crds/pegasustableroutes.yaml",
        "charts/metaproxy/crds/pegasustableroutes.yaml",
    ] {
        let text = std::fs::read_to_string(root.join(copy)).expect("committed");
        assert!(
            text == generated,
            "{copy} differs from the code: run `{fix}`"
        );
    }
    let crds: Vec<_> = std::fs::read_dir(chart::chart_dir().join("crds"))
        .expect("crds dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(crds, ["pegasustableroutes.yaml"], "one CRD, one source");
}

/// `charts/metaproxy/rendered/` is what the ci/ values files render, so that a template change
/// shows in review as the objects it changes.
#[test]
fn the_committed_renders_are_current() {
    require!(HELM);
    for name in ["one-zone", "three-zones"] {
        let rendered = Render::release("metaproxy")
            .values_file(&format!("ci/{name}-values.yaml"))
            .run()
            .expect("helm runs")
            .expect("renders");
        let path = chart::chart_dir().join(format!("rendered/{name}.yaml"));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            rendered == committed,
            "{} is not what the chart renders: run `e2e/chart.sh --update` and review the diff",
            path.display()
        );
    }
}

/// A Dockerfile's final stage: what the image runs and as whom.
struct Image {
    from: String,
    user: String,
    entrypoint: Vec<String>,
    copies: Vec<(String, String)>,
    exposed: Vec<u16>,
    labels: String,
    /// The RUN lines of the build stages.
    build_runs: String,
}

fn parse_dockerfile(path: &Path) -> Image {
    let text = std::fs::read_to_string(path).expect("Dockerfile");
    // Continuation lines joined, comments dropped.
    let mut instructions: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(part) = t.strip_suffix('\\') {
            current.push_str(part);
            current.push(' ');
        } else {
            current.push_str(t);
            instructions.push(std::mem::take(&mut current));
        }
    }
    let last_from = instructions
        .iter()
        .rposition(|i| i.starts_with("FROM "))
        .expect("a FROM");
    let mut image = Image {
        from: instructions[last_from]["FROM ".len()..].trim().to_owned(),
        user: String::new(),
        entrypoint: Vec::new(),
        copies: Vec::new(),
        exposed: Vec::new(),
        labels: String::new(),
        build_runs: instructions[..last_from]
            .iter()
            .filter(|i| i.starts_with("RUN "))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
    };
    for i in &instructions[last_from + 1..] {
        let (word, rest) = i.split_once(' ').unwrap_or((i, ""));
        match word {
            "USER" => image.user = rest.trim().to_owned(),
            "ENTRYPOINT" => {
                image.entrypoint =
                    serde_json::from_str(rest).expect("ENTRYPOINT in exec form (no shell)")
            }
            "COPY" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                assert!(
                    words[0].starts_with("--from="),
                    "{}: copies only from the build stage",
                    path.display()
                );
                image
                    .copies
                    .push((words[1].to_owned(), words[2].to_owned()));
            }
            "EXPOSE" => image.exposed.extend(
                rest.split_whitespace()
                    .map(|p| p.parse::<u16>().expect("a port")),
            ),
            "LABEL" => image.labels.push_str(rest),
            _ => {}
        }
    }
    image
}

#[test]
fn the_dockerfiles_match_the_chart() {
    require!(HELM);
    let objects = one_zone();
    let values = chart_values();
    let uid_gid = format!(
        "{}:{}",
        values["podSecurityContext"]["runAsUser"], values["podSecurityContext"]["runAsGroup"]
    );
    for (dockerfile, bin, deployment, ports) in [
        (
            "proxy/Dockerfile",
            "metaproxy",
            "mp-metaproxy-az1",
            vec![
                values["proxy"]["ports"]["pegasus"].as_u64(),
                values["proxy"]["ports"]["admin"].as_u64(),
            ],
        ),
        (
            "operator/Dockerfile",
            "metaproxy-operator",
            "mp-metaproxy-operator",
            vec![values["operator"]["adminPort"].as_u64()],
        ),
    ] {
        let image = parse_dockerfile(&repo_root().join(dockerfile));
        assert!(
            image.from.starts_with("gcr.io/distroless/static"),
            "{dockerfile}: {} (the chart's preStop is a sleep action because there is no shell)",
            image.from
        );
        assert_eq!(
            image.user, uid_gid,
            "{dockerfile}: the chart's runAsUser:runAsGroup"
        );
        let installed = format!("/usr/local/bin/{bin}");
        assert_eq!(
            image.entrypoint,
            std::slice::from_ref(&installed),
            "{dockerfile}"
        );
        assert_eq!(
            image.copies,
            [(format!("/out/{bin}"), installed)],
            "{dockerfile}: the one binary"
        );
        assert!(
            image
                .build_runs
                .contains(&format!("scripts/build-static {bin} "))
                && image.build_runs.contains(&format!(
                    "target/x86_64-unknown-linux-musl/release/{bin} /out/{bin}"
                )),
            "{dockerfile}: built by scripts/build-static, as CI builds it:\n{}",
            image.build_runs
        );
        let ports: Vec<u16> = ports
            .into_iter()
            .map(|p| p.expect("a port") as u16)
            .collect();
        assert_eq!(image.exposed, ports, "{dockerfile}: the chart's ports");
        for label in ["title", "source", "licenses", "version", "revision"] {
            assert!(
                image
                    .labels
                    .contains(&format!("org.opencontainers.image.{label}=")),
                "{dockerfile}: OCI label {label}"
            );
        }

        // The chart runs this image without overriding its ENTRYPOINT.
        let c = container(objects.expect("Deployment", deployment));
        let repo = c["image"].as_str().expect("image");
        assert!(
            repo.rsplit('/')
                .next()
                .unwrap_or_default()
                .split(':')
                .next()
                == Some(bin),
            "{deployment} runs {repo}"
        );
        assert!(c["command"].is_null());
    }
}

/// The chart's CRD and every example route are accepted by the real API server.
#[test]
fn the_api_server_accepts_the_crd_and_the_examples() {
    require!(API_SERVER);
    let api = ApiServer::start().expect("API server starts");
    api.apply_file(&chart::chart_dir().join("crds/pegasustableroutes.yaml"))
        .expect("the chart's CRD applies");
    api.wait_crd("pegasustableroutes.metaproxy.pegasus.io")
        .expect("established");
    let mut examples: Vec<_> = std::fs::read_dir(repo_root().join("examples"))
        .expect("examples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 3, "{examples:?}");
    for path in &examples {
        let out = api
            .kubectl(&[
                "apply",
                "--dry-run=server",
                "-n",
                "default",
                "-f",
                &path.display().to_string(),
            ])
            .expect("kubectl");
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("(server dry run)"), "{said}");
    }
    // Dry run: nothing was created.
    std::thread::sleep(Duration::from_millis(100));
    let out = api
        .kubectl(&["get", "ptr", "-A", "-o", "name"])
        .expect("kubectl");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "");
}
