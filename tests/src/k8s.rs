//! A real Kubernetes API server for custom resources: `crdserver` (the upstream
//! apiextensions-apiserver) with etcd, started by the shared `crdserver-up.sh` on free loopback
//! ports in a temporary run directory (again on other ports when one was taken meanwhile), and
//! killed when dropped.
//!
//! The binary is unpacked once from `shared/k8s/crdserver.xz` into `<repo>/.tools/crdserver`.
//! The shared directory is `$METAPROXY_SHARED`, else `<repo>/../shared`, else `<repo>/.tools/shared` (as `scripts/lib.sh`
//! finds it); without one the API server is unavailable and [`crate::require!`] says why.
//!
//! Async tests use [`ApiServer::launch`] and the async methods; the blocking twins at the end
//! are for sync tests only (they refuse to run inside a runtime).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use tokio::io::AsyncWriteExt;

use crate::harness::{
    Component, Started, free_port, says_port_taken, start_on_free_ports, try_eventually,
};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The project's shared directory (docs, the API server, its scripts): the first of
/// `$METAPROXY_SHARED` and `<repo>/../shared` that has `k8s/crdserver-up.sh`. The error says
/// where it looked.
pub fn shared_dir() -> Result<PathBuf, String> {
    let env = std::env::var_os("METAPROXY_SHARED").filter(|d| !d.is_empty());
    let candidates = [
        env.map(PathBuf::from),
        Some(repo_root().join("../shared")),
        // Where scripts/setup recorded the one it found (scripts/lib.sh `shared_dir`).
        Some(repo_root().join(".tools/shared")),
    ];
    let mut looked = Vec::new();
    for dir in candidates.into_iter().flatten() {
        if dir.join("k8s/crdserver-up.sh").is_file() {
            return Ok(dir);
        }
        looked.push(dir.display().to_string());
    }
    Err(format!(
        "no shared directory with k8s/crdserver-up.sh (looked in {}; set METAPROXY_SHARED to \
         the project's shared directory)",
        looked.join(", ")
    ))
}

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why the API server cannot run here, if it cannot. Found out once per test process (it runs
/// `sh` for each tool, and [`crate::require!`] asks at the start of async tests).
pub fn unavailable() -> Option<String> {
    static WHY: OnceLock<Option<String>> = OnceLock::new();
    WHY.get_or_init(|| {
        let shared = match shared_dir() {
            Ok(dir) => dir,
            Err(why) => return Some(why),
        };
        if !repo_root().join(".tools/crdserver").is_file()
            && !shared.join("k8s/crdserver.xz").is_file()
        {
            return Some(format!(
                "{} is missing",
                shared.join("k8s/crdserver.xz").display()
            ));
        }
        for tool in ["etcd", "openssl", "bc", "curl", "xz", "kubectl"] {
            if !on_path(tool) {
                return Some(format!(
                    "`{tool}` is not installed (scripts/setup installs it)"
                ));
            }
        }
        None
    })
    .clone()
}

/// The component, for [`crate::require!`].
pub const API_SERVER: Component = Component {
    name: "the Kubernetes API server (crdserver + etcd)",
    unavailable,
};

/// One unpacking at a time in this process (others unpack beside and rename).
static UNPACK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `<repo>/.tools/crdserver`, unpacked from the shared `.xz` when missing.
pub async fn crdserver_binary() -> Result<PathBuf> {
    let _guard = UNPACK.lock().await;
    let bin = repo_root().join(".tools/crdserver");
    if bin.is_file() {
        return Ok(bin);
    }
    let shared = shared_dir().map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(repo_root().join(".tools"))?;
    // Unpack beside the target and rename: another test process may be doing the same.
    let partial = repo_root().join(format!(".tools/crdserver.{}.partial", std::process::id()));
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "xz -dc '{}' > '{}' && chmod +x '{}'",
            shared.join("k8s/crdserver.xz").display(),
            partial.display(),
            partial.display()
        ))
        .status()
        .await
        .context("running xz")?;
    if !status.success() {
        bail!("unpacking crdserver.xz failed: {status}");
    }
    std::fs::rename(&partial, &bin)?;
    Ok(bin)
}

/// A running API server. Killed when dropped.
pub struct ApiServer {
    run_dir: tempfile::TempDir,
    shared: PathBuf,
    pub port: u16,
}

impl ApiServer {
    /// Starts etcd and crdserver on free ports and checks that the server answers. When a port
    /// turns out to be taken (etcd or crdserver says so in its log), both are killed and started
    /// again on other ports.
    pub async fn launch() -> Result<Self> {
        if let Some(why) = unavailable() {
            bail!("API server unavailable: {why}");
        }
        let bin = crdserver_binary().await?;
        let shared = shared_dir().map_err(anyhow::Error::msg)?;
        start_on_free_ports("the API server", async || {
            let run_dir = tempfile::Builder::new()
                .prefix("metaproxy-crdserver-")
                .tempdir()?;
            let port = free_port()?;
            let etcd_port = free_port_pair()?;
            let out = tokio::process::Command::new("bash")
                .arg(shared.join("k8s/crdserver-up.sh"))
                .arg(&bin)
                .arg(run_dir.path())
                .env("PORT", port.to_string())
                .env("ETCD_PORT", etcd_port.to_string())
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output()
                .await
                .context("running crdserver-up.sh")?;
            let server = ApiServer {
                run_dir,
                shared: shared.clone(),
                port,
            };
            if !out.status.success() {
                bail!(
                    "crdserver-up.sh failed ({}): {}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr),
                    server.log_tail()
                );
            }
            // Looked at first, even when the server answers: a crdserver whose etcd could not
            // bind may have found another test's etcd on that port. Dropping `server` kills both.
            if server.port_taken() {
                return Ok(Started::PortTaken(server.log_tail()));
            }
            // The script gives up waiting silently; check that the server answers.
            let probe = server
                .kubectl_output(&["get", "customresourcedefinitions", "-o", "name"], None)
                .await?;
            if !probe.status.success() {
                bail!(
                    "crdserver does not answer: {}\n{}",
                    String::from_utf8_lossy(&probe.stderr),
                    server.log_tail()
                );
            }
            Ok(Started::Up(server))
        })
        .await
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.run_dir.path().join("admin.kubeconfig")
    }

    /// The stand-ins for Lease and events.k8s.io Event.
    pub fn builtin_standins(&self) -> PathBuf {
        self.shared.join("k8s/builtin-standins.yaml")
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.run_dir.path().join(name)).unwrap_or_default()
    }

    /// Whether etcd or crdserver could not bind a port (Go's wording, or Rust's and Java's).
    fn port_taken(&self) -> bool {
        ["etcd.log", "crdserver.log"].iter().any(|name| {
            let log = self.log(name);
            log.contains("address already in use") || says_port_taken(&log)
        })
    }

    fn log_tail(&self) -> String {
        let tail = |name: &str| {
            let text = self.log(name);
            let lines: Vec<&str> = text.lines().collect();
            format!(
                "{name} ends:\n{}",
                lines[lines.len().saturating_sub(20)..].join("\n")
            )
        };
        format!("{}\n{}", tail("crdserver.log"), tail("etcd.log"))
    }

    /// Runs kubectl against this server, with `stdin` as its input when given.
    pub async fn kubectl_output(&self, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        let mut child = tokio::process::Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("running kubectl {}", args.join(" ")))?;
        let pipe = child.stdin.take();
        // Written while the output is read, so that neither side can fill a pipe and stall; the
        // pipe is closed once written (kubectl reads to the end).
        let input = async move {
            match (pipe, stdin) {
                (Some(mut pipe), Some(input)) => pipe.write_all(input.as_bytes()).await,
                _ => Ok(()),
            }
        };
        let (written, output) = tokio::join!(input, child.wait_with_output());
        let output = output.context("waiting for kubectl")?;
        written.with_context(|| {
            format!(
                "writing kubectl's input; it said: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
        Ok(output)
    }

    /// Runs kubectl (with `stdin` as its input when given); its output when it succeeds, an error
    /// with its message when it does not.
    pub async fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let out = self.kubectl_output(args, stdin).await?;
        if !out.status.success() {
            bail!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `kubectl get ARGS -o json`, parsed; `None` when kubectl fails or prints no JSON.
    pub async fn get_json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let out = self.kubectl_ok(&all, None).await.ok()?;
        serde_json::from_str(&out).ok()
    }

    /// `kubectl apply -f -` with `yaml`, failing with kubectl's message.
    pub async fn apply_yaml(&self, yaml: &str) -> Result<()> {
        self.kubectl_ok(&["apply", "-f", "-"], Some(yaml))
            .await
            .map(drop)
    }

    /// `kubectl apply -f path`, failing with kubectl's message.
    pub async fn apply_path(&self, path: &Path) -> Result<()> {
        self.kubectl_ok(&["apply", "-f", &path.display().to_string()], None)
            .await
            .map(drop)
    }

    /// Waits until the CRD `name` is Established (at most 30 s). `kubectl wait` itself fails at
    /// once, instead of waiting, when it looks before the API server has written any condition
    /// ("accessor error: <nil>"): that answer is "not yet", and it is asked again.
    pub async fn crd_established(&self, name: &str) -> Result<()> {
        try_eventually(
            std::time::Duration::from_secs(30),
            &format!("CRD {name} to be Established"),
            async || {
                let out = self
                    .kubectl_output(
                        &[
                            "wait",
                            "--for=condition=Established",
                            "--timeout=30s",
                            &format!("crd/{name}"),
                        ],
                        None,
                    )
                    .await?;
                if out.status.success() {
                    return Ok(Some(()));
                }
                let stderr = String::from_utf8_lossy(&out.stderr);
                if stderr.contains(".status.conditions accessor error") {
                    return Ok(None);
                }
                bail!("CRD {name} not established: {stderr}")
            },
        )
        .await
    }

    /// A client for this server.
    pub async fn client(&self) -> Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig())?;
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?;
        Ok(kube::Client::try_from(config)?)
    }
}

/// Blocking twins of the async API, for sync tests (`tests/tests/chart.rs`). Each runs on a
/// runtime of its own, so each panics when called inside a runtime: an async test uses
/// [`ApiServer::launch`] and the async methods.
impl ApiServer {
    /// Blocking [`ApiServer::launch`].
    pub fn start() -> Result<Self> {
        block_on(Self::launch())
    }

    /// Blocking [`ApiServer::kubectl_output`] without input.
    pub fn kubectl(&self, args: &[&str]) -> Result<Output> {
        block_on(self.kubectl_output(args, None))
    }

    /// Blocking [`ApiServer::apply_path`].
    pub fn apply_file(&self, path: &Path) -> Result<()> {
        block_on(self.apply_path(path))
    }

    /// Blocking [`ApiServer::crd_established`].
    pub fn wait_crd(&self, name: &str) -> Result<()> {
        block_on(self.crd_established(name))
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for a blocking API-server call")
        .block_on(f)
}

impl Drop for ApiServer {
    /// SIGKILL to both (what `crdserver-up.sh` wrote in its `*.pid` files): a test's API server
    /// keeps nothing worth a graceful stop, and its run directory goes right after.
    fn drop(&mut self) {
        let pids: Vec<String> = ["crdserver.pid", "etcd.pid"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.run_dir.path().join(f)).ok())
            .map(|pid| pid.trim().to_owned())
            .filter(|pid| !pid.is_empty())
            .collect();
        if !pids.is_empty() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(&pids)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A free port whose successor is free too (etcd takes both).
fn free_port_pair() -> Result<u16> {
    for _ in 0..50 {
        let p = free_port()?;
        if p < u16::MAX
            && let (Ok(_a), Ok(_b)) = (
                std::net::TcpListener::bind(("127.0.0.1", p)),
                std::net::TcpListener::bind(("127.0.0.1", p + 1)),
            )
        {
            return Ok(p);
        }
    }
    bail!("no two consecutive free ports")
}
