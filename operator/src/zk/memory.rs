//! An in-memory [`Records`] for tests: the same version and compare-and-set rules as ZooKeeper,
//! switches that make it unreachable or make it hang (a request that never gets an answer), and
//! a feed of the reads it serves, with tokio's time of each. It has no watch.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Change, Records, ZkError, Znode};

#[derive(Default)]
pub struct MemoryRecords {
    nodes: Mutex<BTreeMap<String, Znode>>,
    down: Mutex<bool>,
    hanging: Mutex<bool>,
    reads: Mutex<Option<mpsc::UnboundedSender<(String, Instant)>>>,
}

impl MemoryRecords {
    /// The znode at `path`, as a test sees it.
    pub fn get(&self, path: &str) -> Option<Znode> {
        self.nodes().get(path).cloned()
    }

    /// Writes `path` as someone else would (no version check); returns the new version.
    pub fn put(&self, path: &str, data: &[u8]) -> i32 {
        let mut nodes = self.nodes();
        let version = nodes.get(path).map_or(0, |z| z.version + 1);
        nodes.insert(
            path.to_owned(),
            Znode {
                data: data.to_vec(),
                version,
            },
        );
        version
    }

    /// Makes every request fail as if ZooKeeper were unreachable, or lets them through again.
    pub fn set_down(&self, down: bool) {
        *self.down.lock().unwrap_or_else(PoisonError::into_inner) = down;
    }

    /// Makes every request wait forever, as one sent to a partitioned ensemble does.
    pub fn set_hanging(&self, hanging: bool) {
        *self.hanging.lock().unwrap_or_else(PoisonError::into_inner) = hanging;
    }

    /// From now on, every read (path, and tokio's time of it), failed ones included.
    pub fn reads(&self) -> mpsc::UnboundedReceiver<(String, Instant)> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.reads.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
        rx
    }

    fn hangs(&self) -> bool {
        *self.hanging.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Znode>> {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn check(&self) -> Result<(), ZkError> {
        if *self.down.lock().unwrap_or_else(PoisonError::into_inner) {
            return Err(ZkError::Unavailable {
                hosts: "memory".into(),
                reason: "switched off by the test".into(),
            });
        }
        Ok(())
    }
}

fn lost(path: &str) -> ZkError {
    ZkError::LostRace {
        path: path.to_owned(),
    }
}

impl Records for MemoryRecords {
    fn read<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Option<Znode>, ZkError>> {
        if let Some(tx) = self
            .reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let _ = tx.send((path.to_owned(), Instant::now()));
        }
        if self.hangs() {
            return futures::future::pending().boxed();
        }
        let result = self.check().map(|()| self.get(path));
        async move { result }.boxed()
    }

    fn create<'a>(&'a self, path: &'a str, data: &'a [u8]) -> BoxFuture<'a, Result<i32, ZkError>> {
        let result = self.check().and_then(|()| {
            let mut nodes = self.nodes();
            if nodes.contains_key(path) {
                return Err(lost(path));
            }
            nodes.insert(
                path.to_owned(),
                Znode {
                    data: data.to_vec(),
                    version: 0,
                },
            );
            Ok(0)
        });
        async move { result }.boxed()
    }

    fn set<'a>(
        &'a self,
        path: &'a str,
        data: &'a [u8],
        version: i32,
    ) -> BoxFuture<'a, Result<i32, ZkError>> {
        let result = self.check().and_then(|()| {
            let mut nodes = self.nodes();
            match nodes.get_mut(path) {
                Some(z) if z.version == version => {
                    z.data = data.to_vec();
                    z.version += 1;
                    Ok(z.version)
                }
                _ => Err(lost(path)),
            }
        });
        async move { result }.boxed()
    }

    fn delete<'a>(&'a self, path: &'a str, version: i32) -> BoxFuture<'a, Result<(), ZkError>> {
        let result = self.check().and_then(|()| {
            let mut nodes = self.nodes();
            match nodes.get(path) {
                None => Ok(()),
                Some(z) if z.version == version => {
                    nodes.remove(path);
                    Ok(())
                }
                Some(_) => Err(lost(path)),
            }
        });
        async move { result }.boxed()
    }

    fn children<'a>(&'a self, root: &'a str) -> BoxFuture<'a, Result<Vec<String>, ZkError>> {
        let result = self.check().map(|()| {
            let prefix = format!("{}/", root.trim_end_matches('/'));
            self.nodes()
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .filter(|rest| !rest.contains('/'))
                .map(str::to_owned)
                .collect()
        });
        async move { result }.boxed()
    }

    fn watch<'a>(
        &'a self,
        _root: &'a str,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Change>, ZkError>> {
        // No outside writer to report: the watch is refused, and the drift task that asks for
        // it keeps to its own retry timers, waking no route.
        async {
            Err(ZkError::Unavailable {
                hosts: "memory".into(),
                reason: "the in-memory store has no watch".into(),
            })
        }
        .boxed()
    }
}
