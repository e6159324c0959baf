//! Kubernetes events (`events.k8s.io/v1`) for what the reconciler did. Where the API server does
//! not serve events (the test API server without its stand-ins, for one), they are skipped with
//! a debug log: a missing event API never fails a reconcile.

use std::sync::atomic::{AtomicBool, Ordering};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tracing::{debug, warn};

use crate::reconcile::Notice;

pub struct Events {
    recorder: Recorder,
    served: AtomicBool,
}

impl Events {
    pub fn new(client: Client, instance: &str) -> Self {
        let reporter = Reporter {
            controller: "metaproxy-operator".into(),
            instance: Some(instance.to_owned()),
        };
        Events {
            recorder: Recorder::new(client, reporter),
            served: AtomicBool::new(true),
        }
    }

    pub async fn publish(&self, regarding: &ObjectReference, notice: &Notice) {
        if !self.served.load(Ordering::Relaxed) {
            debug!(
                reason = notice.reason,
                "event skipped: the API server does not serve events.k8s.io/v1"
            );
            return;
        }
        let event = Event {
            type_: if notice.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: notice.reason.to_owned(),
            note: Some(notice.note.chars().take(1000).collect()),
            action: notice.action.to_owned(),
            secondary: None,
        };
        match self.recorder.publish(&event, regarding).await {
            Ok(()) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {
                // Remembered for the life of the process: the API does not appear at run time
                // on a real cluster, and a test API server gets its stand-ins before we start.
                self.served.store(false, Ordering::Relaxed);
                debug!(
                    reason = notice.reason,
                    "event skipped: the API server does not serve events.k8s.io/v1"
                );
            }
            Err(e) => warn!(reason = notice.reason, error = %e, "could not publish an event"),
        }
    }
}
