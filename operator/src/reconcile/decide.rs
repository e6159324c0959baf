//! Decide: from a valid target, the other routes' claims and the znode as read, what to do to
//! ZooKeeper. Pure; every branch is a fixture in `fixtures/decide.yaml`.
//!
//! ```text
//!  claims ──► intent: Write(record) | Remove | Yield(owner)
//!  intent + znode as read ──► plan: InSync | Create | Replace | Delete | AlreadyGone | Yield
//! ```

use metaproxy::route::RouteRecord;
use serde::{Deserialize, Serialize};

use crate::zk::Znode;

/// A route's claim on a table in a zone. The oldest claim owns the znode; the others yield.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    /// `namespace/name`, or the file for routes read from a directory.
    pub id: String,
    /// When the route was created (Kubernetes) or first seen (files), in milliseconds since the
    /// epoch. Ties are broken by `id`, so every operator replica picks the same owner.
    pub created_ms: i64,
    pub zone: String,
    pub table: String,
}

impl Claim {
    fn seniority(&self) -> (i64, &str) {
        (self.created_ms, &self.id)
    }
}

/// What the route wants of its znode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intent {
    Write(RouteRecord),
    /// Remove the znode; the record is what this route writes (the znode holding exactly that
    /// is this route's, whatever its version).
    Remove(RouteRecord),
    /// Another, older route owns the table in this zone.
    Yield {
        owner: String,
    },
}

/// The claim that owns `me`'s table in `me`'s zone: the oldest one, `me` included.
pub fn owner<'a>(me: &'a Claim, claims: &'a [Claim]) -> &'a Claim {
    claims
        .iter()
        .filter(|c| c.zone == me.zone && c.table == me.table)
        .chain(std::iter::once(me))
        .min_by(|a, b| a.seniority().cmp(&b.seniority()))
        .unwrap_or(me)
}

/// The route's intent: keep its record, remove it (being deleted), or yield to an older route.
pub fn intent(me: &Claim, claims: &[Claim], deleting: bool, record: &RouteRecord) -> Intent {
    let owner = owner(me, claims);
    if owner.id != me.id {
        return Intent::Yield {
            owner: owner.id.clone(),
        };
    }
    if deleting {
        Intent::Remove(record.clone())
    } else {
        Intent::Write(record.clone())
    }
}

/// What to do to the znode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum Plan {
    /// It already holds exactly the record.
    InSync {
        version: i32,
    },
    /// It does not exist.
    Create {
        data: String,
    },
    /// It holds something else: `found` (as text). `drift` when it changed since this operator
    /// last wrote or read it at `last_version`, or when it never did: someone else wrote it.
    Replace {
        data: String,
        version: i32,
        found: String,
        drift: bool,
    },
    Delete {
        version: i32,
    },
    /// Removing, but the znode changed since this operator wrote it: left in place.
    LeaveForeign {
        version: i32,
        found: String,
    },
    AlreadyGone,
    Yield {
        owner: String,
    },
}

/// The longest excerpt of foreign znode data kept for logs and events.
pub const FOUND_EXCERPT: usize = 512;

/// Compares the znode with the intent. `last_version` is the version this operator last wrote
/// or confirmed (from the status), if any.
pub fn plan(intent: &Intent, znode: Option<&Znode>, last_version: Option<i32>) -> Plan {
    match (intent, znode) {
        (Intent::Yield { owner }, _) => Plan::Yield {
            owner: owner.clone(),
        },
        (Intent::Remove(_), None) => Plan::AlreadyGone,
        // Changed since this operator last wrote it: someone else's record now (a hand edit, or
        // another route that took the table over while this one was invalid). Not ours to delete.
        (Intent::Remove(mine), Some(z))
            if last_version.is_some_and(|v| v != z.version) && z.data != mine.to_json() =>
        {
            Plan::LeaveForeign {
                version: z.version,
                found: excerpt(&z.data),
            }
        }
        (Intent::Remove(_), Some(z)) => Plan::Delete { version: z.version },
        (Intent::Write(record), None) => Plan::Create {
            data: json_text(record),
        },
        (Intent::Write(record), Some(z)) => {
            let want = record.to_json();
            if z.data == want {
                Plan::InSync { version: z.version }
            } else {
                Plan::Replace {
                    data: json_text(record),
                    version: z.version,
                    found: excerpt(&z.data),
                    drift: last_version != Some(z.version),
                }
            }
        }
    }
}

fn json_text(record: &RouteRecord) -> String {
    // to_json builds the text from JSON-escaped strings: always UTF-8.
    String::from_utf8_lossy(&record.to_json()).into_owned()
}

/// Foreign data as printable text, cut at [`FOUND_EXCERPT`] bytes.
pub fn excerpt(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    if text.len() <= FOUND_EXCERPT {
        return text.into_owned();
    }
    let mut end = FOUND_EXCERPT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], data.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row of `fixtures/decide.yaml`.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Case {
        name: String,
        me: Claim,
        #[serde(default)]
        others: Vec<Claim>,
        #[serde(default)]
        deleting: bool,
        record: RecordFixture,
        #[serde(default)]
        znode: Option<ZnodeFixture>,
        #[serde(default)]
        last_version: Option<i32>,
        expect: Plan,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct RecordFixture {
        cluster: String,
        meta_addrs: Vec<String>,
    }

    #[derive(Deserialize)]
    struct ZnodeFixture {
        data: String,
        version: i32,
    }

    #[test]
    fn decide_fixtures() {
        let cases: Vec<Case> =
            serde_saphyr::from_str(include_str!("fixtures/decide.yaml")).expect("fixtures parse");
        assert!(cases.len() >= 10, "the fixture file lost its cases");
        for case in cases {
            let record = RouteRecord::new(case.record.cluster, case.record.meta_addrs)
                .expect("valid record");
            let znode = case.znode.map(|z| Znode {
                data: z.data.into_bytes(),
                version: z.version,
            });
            let intent = intent(&case.me, &case.others, case.deleting, &record);
            let got = plan(&intent, znode.as_ref(), case.last_version);
            assert_eq!(got, case.expect, "case {:?}", case.name);
        }
    }

    #[test]
    fn the_owner_is_the_same_whatever_the_order() {
        let c = |id: &str, ms| Claim {
            id: id.into(),
            created_ms: ms,
            zone: "z".into(),
            table: "t".into(),
        };
        let claims = vec![c("ns/b", 5), c("ns/a", 5), c("ns/c", 1)];
        for me in &claims {
            assert_eq!(owner(me, &claims).id, "ns/c");
        }
        let tie = vec![c("ns/b", 5), c("ns/a", 5)];
        assert_eq!(owner(&tie[0], &tie).id, "ns/a");
        assert_eq!(owner(&tie[1], &tie).id, "ns/a");
    }

    #[test]
    fn long_foreign_data_is_cut_on_a_char_boundary() {
        let data = "é".repeat(FOUND_EXCERPT);
        let e = excerpt(data.as_bytes());
        assert!(e.ends_with(&format!("... ({} bytes)", data.len())), "{e}");
        assert!(e.len() < FOUND_EXCERPT + 32);
    }
}
