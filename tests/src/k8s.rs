//! A real Kubernetes API server for custom resources: `crdserver` (the upstream
//! apiextensions-apiserver) with etcd, started by the shared `crdserver-up.sh` on free loopback
//! ports in a temporary run directory and stopped by `crdserver-down.sh` when dropped.
//!
//! The binary is unpacked once from `shared/k8s/crdserver.xz` into `<repo>/.tools/crdserver`.
//! The shared directory is `$METAPROXY_SHARED`, else `<repo>/../shared` (as `scripts/lib.sh`
//! finds it); without one the API server is unavailable and [`crate::require!`] says why.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};

use crate::harness::{Component, free_port};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The project's shared directory (docs, the API server, its scripts): the first of
/// `$METAPROXY_SHARED` and `<repo>/../shared` that has `k8s/crdserver-up.sh`. The error says
/// where it looked.
pub fn shared_dir() -> Result<PathBuf, String> {
    let env = std::env::var_os("METAPROXY_SHARED").filter(|d| !d.is_empty());
    let candidates = [env.map(PathBuf::from), Some(repo_root().join("../shared"))];
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

/// Why the API server cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    let shared = match shared_dir() {
        Ok(dir) => dir,
        Err(why) => return Some(why),
    };
    if !repo_root().join(".tools/crdserver").is_file() && !shared.join("k8s/crdserver.xz").is_file()
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
}

/// The component, for [`crate::require!`].
pub const API_SERVER: Component = Component {
    name: "the Kubernetes API server (crdserver + etcd)",
    unavailable,
};

static UNPACK: Mutex<()> = Mutex::new(());

/// `<repo>/.tools/crdserver`, unpacked from the shared `.xz` when missing.
pub fn crdserver_binary() -> Result<PathBuf> {
    let _guard = UNPACK.lock().unwrap_or_else(|e| e.into_inner());
    let bin = repo_root().join(".tools/crdserver");
    if bin.is_file() {
        return Ok(bin);
    }
    let shared = shared_dir().map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(repo_root().join(".tools"))?;
    // Unpack beside the target and rename: another test process may be doing the same.
    let partial = repo_root().join(format!(".tools/crdserver.{}.partial", std::process::id()));
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "xz -dc '{}' > '{}' && chmod +x '{}'",
            shared.join("k8s/crdserver.xz").display(),
            partial.display(),
            partial.display()
        ))
        .status()
        .context("running xz")?;
    if !status.success() {
        bail!("unpacking crdserver.xz failed: {status}");
    }
    std::fs::rename(&partial, &bin)?;
    Ok(bin)
}

/// A running API server. Stopped when dropped.
pub struct ApiServer {
    run_dir: tempfile::TempDir,
    shared: PathBuf,
    pub port: u16,
}

impl ApiServer {
    pub fn start() -> Result<Self> {
        if let Some(why) = unavailable() {
            bail!("API server unavailable: {why}");
        }
        let bin = crdserver_binary()?;
        let shared = shared_dir().map_err(anyhow::Error::msg)?;
        let run_dir = tempfile::Builder::new()
            .prefix("metaproxy-crdserver-")
            .tempdir()?;
        let port = free_port()?;
        let etcd_port = free_port_pair()?;
        let out = Command::new("bash")
            .arg(shared.join("k8s/crdserver-up.sh"))
            .arg(&bin)
            .arg(run_dir.path())
            .env("PORT", port.to_string())
            .env("ETCD_PORT", etcd_port.to_string())
            .stdin(Stdio::null())
            .output()
            .context("running crdserver-up.sh")?;
        let server = ApiServer {
            run_dir,
            shared,
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
        // The script gives up waiting silently; check that the server answers.
        let probe = server.kubectl(&["get", "customresourcedefinitions", "-o", "name"])?;
        if !probe.status.success() {
            bail!(
                "crdserver does not answer: {}\n{}",
                String::from_utf8_lossy(&probe.stderr),
                server.log_tail()
            );
        }
        Ok(server)
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.run_dir.path().join("admin.kubeconfig")
    }

    /// The stand-ins for Lease and events.k8s.io Event.
    pub fn builtin_standins(&self) -> PathBuf {
        self.shared.join("k8s/builtin-standins.yaml")
    }

    fn log_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self.run_dir.path().join("crdserver.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Runs kubectl against this server.
    pub fn kubectl(&self, args: &[&str]) -> Result<Output> {
        Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .stdin(Stdio::null())
            .output()
            .context("running kubectl")
    }

    /// Runs kubectl with `stdin` as its input.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Result<Output> {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running kubectl")?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(stdin.as_bytes())?;
        Ok(child.wait_with_output()?)
    }

    /// `kubectl apply -f path`, failing with kubectl's message.
    pub fn apply_file(&self, path: &Path) -> Result<()> {
        let out = self.kubectl(&["apply", "-f", &path.display().to_string()])?;
        if !out.status.success() {
            bail!(
                "kubectl apply -f {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Waits until the CRD `name` is Established.
    pub fn wait_crd(&self, name: &str) -> Result<()> {
        let out = self.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            &format!("crd/{name}"),
        ])?;
        if !out.status.success() {
            bail!(
                "CRD {name} not established: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
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

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(self.shared.join("k8s/crdserver-down.sh"))
            .arg(self.run_dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
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
