//! The committed seed corpora of the fuzz targets (`pegasus-rpc/fuzz/seeds/<target>/`,
//! `proxy/fuzz/seeds/<target>/`). Tests build them (from the wire vectors, from the documented
//! examples) and compare them with what is committed, so that they cannot drift; with
//! `METAPROXY_WRITE_FUZZ_SEEDS=1` the same tests write them instead (docs/robustness.md,
//! "Fuzzing").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The environment variable that turns the drift check into a rewrite.
pub const WRITE_ENV: &str = "METAPROXY_WRITE_FUZZ_SEEDS";

/// A fuzz target's property: a `fuzz_logic` function, which panics when it fails.
pub type Property = fn(&[u8]);

/// The seeds of some fuzz targets: target -> file name -> bytes.
#[derive(Debug, Default)]
pub struct Seeds(BTreeMap<String, BTreeMap<String, Vec<u8>>>);

impl Seeds {
    /// Adds a seed unless the target has one with the same bytes already (several vectors are
    /// byte-identical; the first name added stays).
    pub fn add(&mut self, target: &str, name: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        let files = self.0.entry(target.to_owned()).or_default();
        let bytes = bytes.into();
        if !files.values().any(|b| *b == bytes) {
            let name = name.into();
            assert!(
                files.insert(name.clone(), bytes).is_none(),
                "{target}: two seeds named {name}"
            );
        }
    }

    pub fn targets(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The seeds of one target, by name.
    pub fn of(&self, target: &str) -> impl Iterator<Item = (&str, &[u8])> {
        self.0
            .get(target)
            .into_iter()
            .flatten()
            .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
    }

    /// Runs each target's property over its seeds; the targets must be exactly those with seeds.
    pub fn hold(&self, properties: &[(&str, Property)]) {
        assert!(
            self.targets().eq(properties.iter().map(|(t, _)| *t)),
            "every target has seeds, and every seed a target (in name order)"
        );
        for (target, property) in properties {
            for (name, bytes) in self.of(target) {
                eprintln!("{target}/{name}");
                property(bytes);
            }
        }
    }

    /// Compares with the files under `dir/<target>/`, and panics with the differences; or, with
    /// [`WRITE_ENV`] set to 1, makes those directories hold exactly these seeds.
    pub fn check_or_write(&self, dir: &Path) {
        let write = std::env::var_os(WRITE_ENV).is_some_and(|v| v == "1");
        let mut problems = Vec::new();
        for (target, files) in &self.0 {
            let target_dir = dir.join(target);
            let committed = committed(&target_dir);
            if write {
                std::fs::create_dir_all(&target_dir).expect("create the seed directory");
                for name in committed.keys().filter(|n| !files.contains_key(*n)) {
                    std::fs::remove_file(target_dir.join(name)).expect("remove a stale seed");
                }
                for (name, bytes) in files {
                    if committed.get(name) != Some(bytes) {
                        std::fs::write(target_dir.join(name), bytes).expect("write a seed");
                    }
                }
                continue;
            }
            for (name, bytes) in files {
                match committed.get(name) {
                    None => problems.push(format!("{target}/{name} is missing")),
                    Some(b) if b != bytes => problems.push(format!("{target}/{name} differs")),
                    Some(_) => {}
                }
            }
            for name in committed.keys().filter(|n| !files.contains_key(*n)) {
                problems.push(format!("{target}/{name} is not generated any more"));
            }
        }
        assert!(
            problems.is_empty(),
            "the seeds under {} are not the generated ones:\n  {}\nregenerate them with \
             {WRITE_ENV}=1 and the same test, and commit the result",
            dir.display(),
            problems.join("\n  ")
        );
    }
}

/// The seed corpora of a fuzz crate: `<crate>/fuzz/seeds`, for a crate directory named from the
/// repository root (`"pegasus-rpc"`, `"proxy"`).
pub fn dir(krate: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("fuzz/seeds")
}

/// The files of one seed directory, by name; empty when it does not exist.
pub fn committed(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .map(|e| e.expect("a seed directory entry"))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| {
            let name = e.file_name().into_string().expect("a UTF-8 seed name");
            let bytes = std::fs::read(e.path()).expect("read a seed");
            (name, bytes)
        })
        .collect()
}
