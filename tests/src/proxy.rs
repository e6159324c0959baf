//! The proxy in this process, reading its routes from a ZooKeeper root: for the tests that
//! watch clients follow a znode.

use std::time::Duration;

use metaproxy::Proxy;
use metaproxy::config::{Config, Settings};

use crate::harness::eventually;

/// Starts the proxy on free 127.0.0.1 ports over `root` in the ZooKeeper at `connect` and
/// waits (at most `timeout`) for its ZooKeeper session. Panics when it cannot: test support.
pub async fn over_zk(connect: &str, root: &str, timeout: Duration) -> Proxy {
    let config = Config::load(Settings {
        listen: Some("127.0.0.1:0".into()),
        admin_listen: Some("127.0.0.1:0".into()),
        zk: Some(connect.to_owned()),
        zk_root: Some(root.to_owned()),
        ..Settings::default()
    })
    .expect("valid configuration");
    let proxy = Proxy::start(&config).await.expect("proxy starts");
    eventually(timeout, "the proxy's ZooKeeper session", async || {
        proxy.routes().is_ready().then_some(())
    })
    .await
    .expect("ready");
    proxy
}
