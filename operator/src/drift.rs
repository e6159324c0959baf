//! Noticing route records changed behind the operator's back: one persistent recursive watch per
//! zone root. A change to `<root>/<table>` asks for that table's routes to be reconciled; a
//! reconnect asks for the whole zone, since events can be lost across one. The periodic resync
//! remains the safety net when a watch cannot be set.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

use crate::reconcile::Reconciler;
use crate::reconcile::schedule::backoff;
use crate::zk::Change;

pub use crate::reconcile::schedule::Touched;

/// Spawns one watching task per zone; they end when `shutdown` turns true.
pub fn spawn(
    reconciler: Arc<Reconciler>,
    tx: mpsc::UnboundedSender<Touched>,
    shutdown: watch::Receiver<bool>,
) {
    for zone in reconciler.zones().iter() {
        let reconciler = reconciler.clone();
        let tx = tx.clone();
        let mut shutdown = shutdown.clone();
        let zone = zone.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => {}
                _ = watch_zone(&reconciler, &zone.name, &zone.root, &tx) => {}
            }
        });
    }
}

async fn watch_zone(
    reconciler: &Reconciler,
    zone: &str,
    root: &str,
    tx: &mpsc::UnboundedSender<Touched>,
) {
    let Some(store) = reconciler.store(zone) else {
        return;
    };
    let mut failures = 0;
    loop {
        let mut changes = match store.watch(root).await {
            Ok(w) => w,
            Err(e) => {
                debug!(zone, error = %e, "cannot watch the zone root yet");
                tokio::time::sleep(backoff(failures).min(Duration::from_secs(10))).await;
                failures += 1;
                continue;
            }
        };
        failures = 0;
        info!(zone, root, "watching route records for outside changes");
        // The watch may have missed changes made before it was set.
        let all = || Touched {
            zone: zone.to_owned(),
            table: None,
        };
        if tx.send(all()).is_err() {
            return;
        }
        // The stream ends when the session ends or reconnects: watch again.
        while let Some(change) = changes.next().await {
            let Change::Node(path) = change;
            let Some(table) = table_of(root, &path) else {
                continue;
            };
            let touched = Touched {
                zone: zone.to_owned(),
                table: Some(table.to_owned()),
            };
            if tx.send(touched).is_err() {
                return;
            }
        }
    }
}

/// `<root>/<table>` to `table`; nothing for the root itself or deeper nodes.
fn table_of<'a>(root: &str, path: &'a str) -> Option<&'a str> {
    let rest = path.strip_prefix(root)?.strip_prefix('/')?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_from_paths() {
        assert_eq!(table_of("/m/r", "/m/r/temp"), Some("temp"));
        assert_eq!(table_of("/m/r", "/m/r"), None);
        assert_eq!(table_of("/m/r", "/m/r/a/b"), None);
        assert_eq!(table_of("/m/r", "/m/rx/a"), None);
        assert_eq!(table_of("", "/temp"), Some("temp"));
    }
}
