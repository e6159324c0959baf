//! ZooKeeper digest authentication, shared by the proxy and the operator.
//!
//! Each side's credentials are a file (`--zk-auth-file PATH`, in Kubernetes a mounted Secret)
//! holding `user:password` on one line: ZooKeeper's `digest` scheme, what `addauth digest
//! user:password` sends. They are never a flag's value (which `ps` shows) and never logged: the
//! configuration summary names the file and the user, not the password.
//!
//! The operator grants the proxies read access by their digest identity, `user:BASE64(SHA1(
//! user:password))`, the form ZooKeeper's ACLs name (`setAcl /path digest:user:HASH:r`), printed
//! by ZooKeeper's own tool:
//! `java -cp /usr/share/java/zookeeper.jar org.apache.zookeeper.server.auth.DigestAuthenticationProvider user:password`.
//! The operator never needs the proxies' password.

use std::fmt;
use std::path::{Path, PathBuf};

/// The scheme of every credential here.
pub const SCHEME: &str = "digest";

/// The largest credentials file read.
const MAX_FILE_BYTES: u64 = 4096;

/// Credentials read from a file; the password never leaves this type but to ZooKeeper.
#[derive(Clone, PartialEq, Eq)]
pub struct ZkAuth {
    path: PathBuf,
    user: String,
    password: String,
}

impl fmt::Debug for ZkAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZkAuth")
            .field("path", &self.path)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl ZkAuth {
    /// Reads `user:password` from `path`. The error names the file and what is wrong with it,
    /// never its content.
    pub fn read(path: &Path) -> Result<ZkAuth, String> {
        let meta =
            std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(format!(
                "{}: more than {MAX_FILE_BYTES} bytes",
                path.display()
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let (user, password) =
            parse_credentials(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(ZkAuth {
            path: path.to_owned(),
            user: user.to_owned(),
            password: password.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// What the `digest` scheme sends: `user:password`.
    pub fn auth_bytes(&self) -> Vec<u8> {
        format!("{}:{}", self.user, self.password).into_bytes()
    }
}

/// `user:password` from a credentials file's text: one line (a final newline, as editors and
/// `kubectl create secret --from-file` leave it, is dropped), a user without `:`, a password
/// (which may hold `:`). The error never quotes the text.
pub fn parse_credentials(text: &str) -> Result<(&str, &str), &'static str> {
    let line = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    if line.contains(['\n', '\r']) {
        return Err("more than one line; the file holds user:password");
    }
    let (user, password) = line
        .split_once(':')
        .ok_or("no ':'; the file holds user:password")?;
    if user.is_empty() || password.is_empty() {
        return Err("the user and the password must not be empty");
    }
    if user.chars().chain(password.chars()).any(char::is_control) {
        return Err("control characters in the credentials");
    }
    Ok((user, password))
}

/// Checks a digest identity, `user:BASE64(SHA1(user:password))`: a user without `:` and a
/// 28-character base64 SHA-1.
pub fn validate_digest_id(id: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "{id:?} is not a digest identity user:BASE64(SHA1(user:password)) (ZooKeeper's \
             DigestAuthenticationProvider prints it)"
        )
    };
    let (user, hash) = id.split_once(':').ok_or_else(bad)?;
    let base64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/');
    let valid = !user.is_empty()
        && !user.chars().any(char::is_control)
        && hash.len() == 28
        && hash.ends_with('=')
        && hash[..27].chars().all(base64);
    if valid { Ok(()) } else { Err(bad()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of a file, and the user and password read from it or a part of the error.
    type Case<'a> = (&'a str, Result<(&'a str, &'a str), &'a str>);

    #[test]
    fn credentials_files() {
        let cases: &[Case] = &[
            ("proxy:secret", Ok(("proxy", "secret"))),
            ("proxy:secret\n", Ok(("proxy", "secret"))),
            ("proxy:secret\r\n", Ok(("proxy", "secret"))),
            ("proxy:se:cret", Ok(("proxy", "se:cret"))),
            ("proxy:secret\n\n", Err("more than one line")),
            ("proxy:secret\nother:x", Err("more than one line")),
            ("proxysecret", Err("no ':'")),
            (":secret", Err("must not be empty")),
            ("proxy:", Err("must not be empty")),
            ("", Err("no ':'")),
            ("pro\u{1}xy:secret", Err("control characters")),
        ];
        for (text, want) in cases {
            match (parse_credentials(text), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{text:?}"),
                (Err(got), Err(want)) => {
                    assert!(got.contains(want), "{text:?}: {got}");
                    assert!(
                        !text.contains(':') || !got.contains(text.trim()),
                        "the error quotes the secret"
                    );
                }
                (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn digest_identities() {
        // ZooKeeper's DigestAuthenticationProvider for proxy:secret.
        for ok in [
            "proxy:Zu9sYQ+4rhSqYVnEqbbxbAWhQqg=",
            "a:AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            assert_eq!(validate_digest_id(ok), Ok(()), "{ok}");
        }
        for bad in [
            "proxy",
            "proxy:secret",
            ":Zu9sYQ+4rhSqYVnEqbbxbAWhQqg=",
            "proxy:Zu9sYQ+4rhSqYVnEqbbxbAWhQqg",
            "proxy:Zu9sYQ+4rhSqYVnEqbbxbAWhQq!=",
        ] {
            assert!(validate_digest_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("auth");
        std::fs::write(&path, "proxy:hunter2\n").expect("write");
        let auth = ZkAuth::read(&path).expect("reads");
        assert_eq!(auth.user(), "proxy");
        assert_eq!(auth.auth_bytes(), b"proxy:hunter2");
        assert!(!format!("{auth:?}").contains("hunter2"));
        let err = ZkAuth::read(&dir.path().join("missing")).expect_err("missing");
        assert!(err.contains("cannot read"), "{err}");
    }
}
