//! `RPC_CM_LIST_APPS` across the clusters this proxy routes to: every table under the root is
//! looked up, each distinct cluster is asked once (with the client's own request), and the
//! answers are merged.
//!
//! ```text
//!  tables under the root --lookup--> table -> cluster
//!  each cluster --list_apps--> its app_infos --keep those routed to it--> one list, by table name
//! ```
//! Each table is listed once, from the cluster its route names (a table of the same name on
//! another cluster, or one without a route, is left out). When a cluster does not answer, or
//! answers an error, the reply's `err` says so (`ERR_SERVICE_NOT_ACTIVE`, or the cluster's
//! error) and `hint_message` names the clusters: never a partial list under `ERR_OK`.
//!
//! Known cost: the lookups go through the route cache, so one list_apps caches (and keeps
//! watching through the root watch) every table under the root, up to the cache's `max_tables`.
//! A lookup that does not fill the cache is not there yet.

use std::collections::BTreeMap;

use pegasus_rpc::codec::ErrorCode;
use pegasus_rpc::codec::list_apps::ListAppsResponse;

/// What one cluster said: its response, or why there is none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterAnswer {
    pub cluster: String,
    pub answer: Result<ListAppsResponse, String>,
}

/// Merges the clusters' answers. `routed` maps each table to the cluster its route names (the
/// `cluster` of the answers); `unrouted` says why tables could not be looked up (empty when all
/// could).
pub fn merge(
    routed: &BTreeMap<String, String>,
    answers: &[ClusterAnswer],
    unrouted: &[String],
) -> ListAppsResponse {
    let mut infos = BTreeMap::new();
    let mut failed: Vec<String> = unrouted.to_vec();
    let mut err = if unrouted.is_empty() {
        ErrorCode::OK
    } else {
        ErrorCode::SERVICE_NOT_ACTIVE
    };
    for a in answers {
        match &a.answer {
            Ok(resp) if resp.err.is_ok() => {
                for info in &resp.infos {
                    if routed.get(&info.name) == Some(&a.cluster) {
                        infos
                            .entry(info.name.clone())
                            .or_insert_with(|| info.clone());
                    }
                }
            }
            Ok(resp) => {
                failed.push(format!("cluster {} answered {}", a.cluster, resp.err));
                if err.is_ok() {
                    err = resp.err.clone();
                }
            }
            Err(why) => {
                failed.push(format!("cluster {} did not answer: {why}", a.cluster));
                if err.is_ok() {
                    err = ErrorCode::SERVICE_NOT_ACTIVE;
                }
            }
        }
    }
    ListAppsResponse {
        hint_message: (!failed.is_empty())
            .then(|| format!("metaproxy: the list is incomplete: {}", failed.join("; "))),
        err,
        infos: infos.into_values().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pegasus_rpc::codec::list_apps::{AppInfo, RawAppInfo};

    fn info(name: &str, app_id: i32) -> RawAppInfo {
        AppInfo {
            app_name: name.into(),
            app_id,
            ..Default::default()
        }
        .to_raw()
    }

    fn ok(infos: Vec<RawAppInfo>) -> Result<ListAppsResponse, String> {
        Ok(ListAppsResponse {
            err: ErrorCode::OK,
            infos,
            hint_message: None,
        })
    }

    fn answer(cluster: &str, answer: Result<ListAppsResponse, String>) -> ClusterAnswer {
        ClusterAnswer {
            cluster: cluster.into(),
            answer,
        }
    }

    #[test]
    fn each_table_comes_from_the_cluster_its_route_names() {
        let routed: BTreeMap<String, String> = [("a", "c1"), ("b", "c2"), ("dup", "c2")]
            .map(|(t, c)| (t.to_owned(), c.to_owned()))
            .into();
        struct Case {
            what: &'static str,
            answers: Vec<ClusterAnswer>,
            unrouted: Vec<String>,
            err: &'static str,
            names: Vec<&'static str>,
            hint: bool,
        }
        let cases = [
            Case {
                what: "both answer; dup is on both clusters, c2 is its route; x has no route",
                answers: vec![
                    answer("c1", ok(vec![info("a", 1), info("dup", 2), info("x", 3)])),
                    answer("c2", ok(vec![info("dup", 7), info("b", 1)])),
                ],
                unrouted: vec![],
                err: "ERR_OK",
                names: vec!["a", "b", "dup"],
                hint: false,
            },
            Case {
                what: "c2 unreachable: its tables missing, and the reply says so",
                answers: vec![
                    answer("c1", ok(vec![info("a", 1)])),
                    answer("c2", Err("timed out".into())),
                ],
                unrouted: vec![],
                err: "ERR_SERVICE_NOT_ACTIVE",
                names: vec!["a"],
                hint: true,
            },
            Case {
                what: "c1 answers an error: it is the reply's",
                answers: vec![
                    answer(
                        "c1",
                        Ok(ListAppsResponse {
                            err: ErrorCode::new("ERR_UNDER_RECOVERY"),
                            ..Default::default()
                        }),
                    ),
                    answer("c2", ok(vec![info("b", 1)])),
                ],
                unrouted: vec![],
                err: "ERR_UNDER_RECOVERY",
                names: vec!["b"],
                hint: true,
            },
            Case {
                what: "a route could not be read",
                answers: vec![answer("c1", ok(vec![info("a", 1)]))],
                unrouted: vec!["table b: ZooKeeper unreachable".into()],
                err: "ERR_SERVICE_NOT_ACTIVE",
                names: vec!["a"],
                hint: true,
            },
            Case {
                what: "nothing routed",
                answers: vec![],
                unrouted: vec![],
                err: "ERR_OK",
                names: vec![],
                hint: false,
            },
        ];
        for c in cases {
            let got = merge(&routed, &c.answers, &c.unrouted);
            assert_eq!(got.err.as_str(), c.err, "{}", c.what);
            let names: Vec<_> = got.infos.iter().map(|i| i.name.as_str()).collect();
            assert_eq!(names, c.names, "{}", c.what);
            assert_eq!(got.hint_message.is_some(), c.hint, "{}", c.what);
        }
        // The info of a table is the bytes its cluster sent.
        let got = merge(&routed, &[answer("c2", ok(vec![info("dup", 7)]))], &[]);
        assert_eq!(got.infos, vec![info("dup", 7)]);
    }
}
