//! An in-memory [`Records`] for tests: the same version and compare-and-set rules as ZooKeeper,
//! and a switch that makes it unreachable. It reports no outside changes.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};

use super::{Change, Records, ZkError, Znode};

#[derive(Default)]
pub struct MemoryRecords {
    nodes: Mutex<BTreeMap<String, Znode>>,
    down: Mutex<bool>,
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

    fn watch<'a>(
        &'a self,
        _root: &'a str,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Change>, ZkError>> {
        let result = self
            .check()
            .map(|()| StreamExt::boxed(futures::stream::pending::<Change>()));
        async move { result }.boxed()
    }
}
