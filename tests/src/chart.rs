//! The Helm chart as the tests see it: `helm template` run on `charts/metaproxy` and its output
//! parsed into JSON values, the objects looked up by kind and name, and the workspace binaries
//! (built on first use) to check the rendered flags against.
//!
//! helm is `<repo>/.tools/bin/helm` (what `scripts/setup` installs), else the one on `PATH`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::harness::Component;
use crate::k8s::repo_root;

/// `charts/metaproxy`.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/metaproxy")
}

/// The namespace every render uses.
pub const NAMESPACE: &str = "pegasus";

/// The helm binary: `.tools/bin/helm`, else `helm` on `PATH`.
pub fn helm_binary() -> Option<PathBuf> {
    let local = repo_root().join(".tools/bin/helm");
    if local.is_file() {
        return Some(local);
    }
    let found = Command::new("sh")
        .args(["-c", "command -v helm"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&found.stdout).trim().to_owned();
    (found.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

fn helm_unavailable() -> Option<String> {
    match helm_binary() {
        Some(_) => None,
        None => Some("helm is not installed (scripts/setup puts it in .tools/bin)".into()),
    }
}

/// The component, for [`crate::require!`].
pub const HELM: Component = Component {
    name: "helm",
    unavailable: helm_unavailable,
};

/// What to render: values files (relative to the chart or absolute), inline values files, and
/// the release name.
#[derive(Clone, Debug)]
pub struct Render {
    release: String,
    files: Vec<PathBuf>,
    inline: Vec<String>,
}

impl Render {
    pub fn release(name: &str) -> Self {
        Render {
            release: name.into(),
            files: Vec::new(),
            inline: Vec::new(),
        }
    }

    /// A values file of the chart, e.g. `ci/three-zones-values.yaml`.
    pub fn values_file(mut self, path: &str) -> Self {
        self.files.push(chart_dir().join(path));
        self
    }

    /// Values given as YAML text, applied after the files.
    pub fn values(mut self, yaml: &str) -> Self {
        self.inline.push(yaml.into());
        self
    }

    /// `helm template`: its stdout on success, its stderr on failure.
    pub fn run(&self) -> Result<std::result::Result<String, String>> {
        self.run_on(&chart_dir(), &[])
    }

    fn run_on(&self, chart: &Path, extra: &[&str]) -> Result<std::result::Result<String, String>> {
        let helm = helm_binary().context("helm is not installed")?;
        let dir = tempfile::tempdir()?;
        let mut cmd = Command::new(helm);
        cmd.args(["template", &self.release])
            .arg(chart)
            .args(["--namespace", NAMESPACE])
            .args(extra);
        for f in &self.files {
            cmd.arg("--values").arg(f);
        }
        for (i, yaml) in self.inline.iter().enumerate() {
            let path = dir.path().join(format!("values-{i}.yaml"));
            std::fs::write(&path, yaml)?;
            cmd.arg("--values").arg(path);
        }
        let out = cmd.stdin(Stdio::null()).output().context("running helm")?;
        Ok(if out.status.success() {
            Ok(String::from_utf8(out.stdout)?)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        })
    }

    /// What `helm install` would print after installing: `helm template` does not render
    /// NOTES.txt, so a copy of the chart renders it as a ConfigMap.
    pub fn notes(&self) -> Result<String> {
        let copy = tempfile::tempdir()?;
        copy_dir(&chart_dir(), copy.path())?;
        std::fs::rename(
            copy.path().join("templates/NOTES.txt"),
            copy.path().join("NOTES.txt"),
        )?;
        std::fs::write(
            copy.path().join("templates/notes.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n\
             data:\n  notes: {{ tpl (.Files.Get \"NOTES.txt\") . | toJson }}\n",
        )?;
        match self.run_on(copy.path(), &["--show-only", "templates/notes.yaml"])? {
            Ok(text) => {
                let map: Value = serde_saphyr::from_str(&text)?;
                Ok(map["data"]["notes"]
                    .as_str()
                    .context("no notes")?
                    .to_owned())
            }
            Err(stderr) => bail!("helm template refused the values:\n{stderr}"),
        }
    }

    /// The rendered objects; fails with helm's message when helm refuses the values.
    pub fn objects(&self) -> Result<Manifests> {
        match self.run()? {
            Ok(text) => Manifests::parse(&text),
            Err(stderr) => bail!("helm template refused the values:\n{stderr}"),
        }
    }

    /// helm's message when it refuses the values; fails when it renders them.
    pub fn refusal(&self) -> Result<String> {
        match self.run()? {
            Ok(_) => bail!("helm template rendered values that should be refused"),
            Err(stderr) => Ok(stderr),
        }
    }
}

/// The objects of one render.
#[derive(Clone, Debug)]
pub struct Manifests(pub Vec<Value>);

impl Manifests {
    pub fn parse(text: &str) -> Result<Self> {
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(text).context("helm's output is not YAML")?;
        Ok(Manifests(
            docs.into_iter().filter(|d| !d.is_null()).collect(),
        ))
    }

    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.0.iter().filter(|o| o["kind"] == kind).collect()
    }

    pub fn get(&self, kind: &str, name: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    /// The object, or a failure listing what there is.
    pub fn expect(&self, kind: &str, name: &str) -> &Value {
        self.get(kind, name).unwrap_or_else(|| {
            let have: Vec<String> = self
                .0
                .iter()
                .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
                .collect();
            panic!("no {kind} {name} in the render; it has {have:?}")
        })
    }

    /// Objects whose `app.kubernetes.io/component` label is `component`.
    pub fn component(&self, kind: &str, component: &str) -> Vec<&Value> {
        self.of_kind(kind)
            .into_iter()
            .filter(|o| o["metadata"]["labels"]["app.kubernetes.io/component"] == component)
            .collect()
    }
}

/// A Deployment's first container.
pub fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

/// A container's args as strings.
pub fn args(container: &Value) -> Vec<String> {
    container["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The values of `--name=value` flags in `args`, in order.
pub fn flag_values(args: &[String], name: &str) -> Vec<String> {
    let prefix = format!("--{name}=");
    args.iter()
        .filter_map(|a| a.strip_prefix(&prefix).map(String::from))
        .collect()
}

/// Whether `selector` (matchLabels or a Service's selector) selects pods labelled `labels`.
pub fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels[k] == *v))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// A YAML file of the repository as JSON.
pub fn yaml_file(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    serde_saphyr::from_str(&text).with_context(|| format!("{}", path.display()))
}

/// `target/<profile>/<bin>`, a binary of the workspace. The first call builds every binary the
/// way `e2e/demo.sh --debug` and `e2e/k8s.sh` do (`cargo build --workspace --bins`), so that the
/// test and the scripts after it share one build (and `cargo test -p metaproxy-tests` alone works).
pub fn workspace_binary(bin: &str) -> Result<PathBuf> {
    static BUILT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    let profile_dir = BUILT
        .get_or_init(|| {
            // The test executable is target/<profile>/deps/<name>.
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .ok_or("no target dir")?
                .to_path_buf();
            let target_dir = profile_dir.parent().ok_or("no target dir")?;
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "-q", "--workspace", "--bins", "--target-dir"])
                .arg(target_dir)
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            // What `cargo test` set for this test process is not the build's environment: ring's
            // build script reruns when CARGO_MANIFEST_DIR changes, and with it everything above
            // it (about a minute), here and again in the next plain build.
            for (key, _) in std::env::vars_os() {
                let key = key.to_string_lossy();
                if key.starts_with("CARGO_PKG_")
                    || key.starts_with("CARGO_BIN_EXE_")
                    || [
                        "CARGO_MANIFEST_DIR",
                        "CARGO_MANIFEST_PATH",
                        "CARGO_CRATE_NAME",
                        "CARGO_PRIMARY_PACKAGE",
                        "CARGO_TARGET_TMPDIR",
                    ]
                    .contains(&key.as_ref())
                {
                    cmd.env_remove(key.as_ref());
                }
            }
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().map_err(|e| format!("running cargo: {e}"))?;
            if !status.success() {
                return Err(format!(
                    "building the workspace's binaries failed: {status}"
                ));
            }
            Ok(profile_dir)
        })
        .clone()
        .map_err(anyhow::Error::msg)?;
    Ok(profile_dir.join(bin))
}

/// The long flags a binary's `--help` lists, without the leading `--`.
pub fn known_flags(binary: &Path) -> Result<Vec<String>> {
    let out = Command::new(binary).arg("--help").output()?;
    if !out.status.success() {
        bail!("{} --help failed", binary.display());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut flags: Vec<String> = text
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| {
            w.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect();
    flags.sort();
    flags.dedup();
    Ok(flags)
}
