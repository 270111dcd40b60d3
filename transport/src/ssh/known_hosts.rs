//! Host-key checking against an OpenSSH known_hosts file, with OpenSSH's semantics: plain,
//! hashed (`|1|salt|hash`) and `[host]:port` entries; a key of a type the file does not know for
//! the host is *unknown*, not *changed*; `@revoked` keys are refused.
//!
//! libssh2 does the host matching (it knows the hashing); we feed it the file line by line so one
//! line it cannot parse (a new key type, a marker) does not hide the rest of the file.

use super::super::TransportError;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use ssh2::{CheckResult, HostKeyType, KnownHostFileKind, MethodType, Session};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// One usable line of a known_hosts file.
struct Entry {
    /// `None` for an ordinary line; `Some("@revoked")`, `Some("@cert-authority")`.
    marker: Option<String>,
    key_type: String,
    key_b64: String,
    /// The line without its marker, as libssh2 parses it.
    line: String,
}

/// A known_hosts file read into memory.
pub(super) struct KnownHostsFile {
    path: PathBuf,
    entries: Vec<Entry>,
}

/// How OpenSSH names a host in known_hosts: bare for port 22, `[host]:port` otherwise.
pub(super) fn host_pattern(address: &str, port: u16) -> String {
    if port == 22 {
        address.to_string()
    } else {
        format!("[{address}]:{port}")
    }
}

impl KnownHostsFile {
    /// Reads `path`; a missing file is an empty one (every key is then unknown).
    pub(super) fn load(path: &Path) -> Result<Self, TransportError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(TransportError::Io(format!(
                    "cannot read known_hosts {}: {e}",
                    path.display()
                )))
            }
        };
        let entries = text.lines().filter_map(parse_line).collect();
        Ok(Self {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// libssh2 collection of the ordinary entries whose key type is `key_type`.
    fn collection(
        &self,
        session: &Session,
        key_type: &str,
    ) -> Result<ssh2::KnownHosts, TransportError> {
        let mut kh = session
            .known_hosts()
            .map_err(|e| TransportError::Io(format!("libssh2 known_hosts: {e}")))?;
        for e in self
            .entries
            .iter()
            .filter(|e| e.marker.is_none() && e.key_type == key_type)
        {
            // A line libssh2 cannot parse is one OpenSSH may know but we cannot use: skip it.
            let _ = kh.read_str(&e.line, KnownHostFileKind::OpenSSH);
        }
        Ok(kh)
    }

    /// Whether some entry of `key_type` names `pattern` (whatever its key).
    fn knows_type(&self, session: &Session, pattern: &str, key_type: &str) -> bool {
        // A key no real host has: libssh2 answers Mismatch exactly when an entry of this type
        // names the host, which is how we learn that without being able to unhash names.
        let probe = [0u8; 19];
        match self.collection(session, key_type) {
            Ok(kh) => matches!(kh.check(pattern, &probe), CheckResult::Mismatch),
            Err(_) => false,
        }
    }

    /// Host-key algorithms to offer, the types this file knows for the host first, so a host
    /// with an RSA entry only is not asked for its ed25519 key (which would look unknown).
    pub(super) fn preferred_hostkey_methods(
        &self,
        session: &Session,
        pattern: &str,
    ) -> Option<String> {
        let supported = session.supported_algs(MethodType::HostKey).ok()?;
        let known: Vec<&str> = KEY_TYPES
            .iter()
            .filter(|(file_type, _)| self.knows_type(session, pattern, file_type))
            .flat_map(|(_, algs)| algs.iter().copied())
            .filter(|a| supported.contains(a))
            .collect();
        if known.is_empty() {
            return None;
        }
        let rest = supported.iter().copied().filter(|a| !known.contains(a));
        Some(
            known
                .iter()
                .copied()
                .chain(rest)
                .collect::<Vec<_>>()
                .join(","),
        )
    }

    /// Checks the key the server presented. `host` is the inventory name, for messages.
    pub(super) fn verify(
        &self,
        session: &Session,
        host: &str,
        address: &str,
        port: u16,
        accept_new: bool,
    ) -> Result<(), TransportError> {
        let (blob, kind) = session.host_key().ok_or_else(|| {
            TransportError::Io(format!("{host}: the server presented no host key"))
        })?;
        let key_type = file_key_type(kind).ok_or_else(|| {
            TransportError::UnknownHostKey(format!(
                "{host} ({address}:{port}) presented a host key of a type c1m cannot check"
            ))
        })?;
        let key_b64 = base64(blob, true);
        let fingerprint = fingerprint(blob);
        let pattern = host_pattern(address, port);
        let file = self.path.display();

        if self
            .entries
            .iter()
            .any(|e| e.marker.as_deref() == Some("@revoked") && e.key_b64 == key_b64)
        {
            return Err(TransportError::ChangedHostKey(format!(
                "the {key_type} host key of {host} ({pattern}, {fingerprint}) is marked @revoked in {file}"
            )));
        }

        let kh = self.collection(session, key_type)?;
        match kh.check(&pattern, blob) {
            CheckResult::Match => Ok(()),
            CheckResult::Mismatch => Err(TransportError::ChangedHostKey(format!(
                "REMOTE HOST IDENTIFICATION HAS CHANGED for {host} ({pattern}): it presented the \
                 {key_type} key {fingerprint}, which differs from the one for {pattern} in {file}. \
                 Someone could be eavesdropping (man-in-the-middle), or the host was reinstalled. \
                 If the change is expected, remove the old entry (ssh-keygen -R '{pattern}' -f {file}) and connect again"
            ))),
            CheckResult::NotFound => {
                if accept_new {
                    self.append(&pattern, key_type, &key_b64).map_err(|e| {
                        TransportError::Io(format!(
                            "{host}: cannot add the host key of {pattern} to {file}: {e}"
                        ))
                    })
                } else {
                    let other = KEY_TYPES
                        .iter()
                        .map(|(t, _)| *t)
                        .filter(|t| *t != key_type && self.knows_type(session, &pattern, t))
                        .collect::<Vec<_>>();
                    let other = if other.is_empty() {
                        String::new()
                    } else {
                        format!(" (it knows keys of other types for it: {})", other.join(", "))
                    };
                    Err(TransportError::UnknownHostKey(format!(
                        "{host} ({pattern}) presented the {key_type} key {fingerprint}, which is not in {file}{other}; \
                         verify it and add it (ssh-keyscan -p {port} {address} >> {file}), or pass --accept-new-host-keys"
                    )))
                }
            }
            CheckResult::Failure => Err(TransportError::Io(format!(
                "{host}: checking the host key of {pattern} against {file} failed"
            ))),
        }
    }

    /// Adds one plain entry, creating the file (0600) and its directory (0700) when missing.
    fn append(&self, pattern: &str, key_type: &str, key_b64: &str) -> io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let mut f = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)?;
        // Keep the previous last line intact when it lacks its newline.
        let needs_newline = fs::read(&self.path)
            .map(|b| !b.is_empty() && !b.ends_with(b"\n"))
            .unwrap_or(false);
        let lead = if needs_newline { "\n" } else { "" };
        f.write_all(format!("{lead}{pattern} {key_type} {key_b64}\n").as_bytes())?;
        f.sync_all()
    }
}

/// known_hosts key-type names and the host-key algorithms (libssh2 names) that use them.
const KEY_TYPES: &[(&str, &[&str])] = &[
    ("ssh-ed25519", &["ssh-ed25519"]),
    ("ecdsa-sha2-nistp256", &["ecdsa-sha2-nistp256"]),
    ("ecdsa-sha2-nistp384", &["ecdsa-sha2-nistp384"]),
    ("ecdsa-sha2-nistp521", &["ecdsa-sha2-nistp521"]),
    ("ssh-rsa", &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]),
];

fn file_key_type(kind: HostKeyType) -> Option<&'static str> {
    Some(match kind {
        HostKeyType::Ed25519 => "ssh-ed25519",
        HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        HostKeyType::Rsa => "ssh-rsa",
        HostKeyType::Dss => "ssh-dss",
        HostKeyType::Unknown => return None,
    })
}

fn parse_line(raw: &str) -> Option<Entry> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (marker, rest) = if line.starts_with('@') {
        let (m, r) = line.split_once(char::is_whitespace)?;
        (Some(m.to_string()), r.trim_start())
    } else {
        (None, line)
    };
    let mut fields = rest.split_whitespace();
    let _hosts = fields.next()?;
    let key_type = fields.next()?.to_string();
    let key_b64 = fields.next()?.to_string();
    Some(Entry {
        marker,
        key_type,
        key_b64,
        line: rest.to_string(),
    })
}

/// A key's fingerprint as `ssh-keygen -l` prints it: SHA-256, unpadded base64.
fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", base64(&Sha256::digest(blob), false))
}

/// Standard base64 (RFC 4648), as known_hosts writes keys (padded) and OpenSSH fingerprints
/// (unpadded).
pub(super) fn base64(data: &[u8], pad: bool) -> String {
    if pad {
        STANDARD.encode(data)
    } else {
        STANDARD_NO_PAD.encode(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, padded, bare) in [
            ("", "", ""),
            ("f", "Zg==", "Zg"),
            ("fo", "Zm8=", "Zm8"),
            ("foo", "Zm9v", "Zm9v"),
            ("foobar", "Zm9vYmFy", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes(), true), padded);
            assert_eq!(base64(input.as_bytes(), false), bare);
        }
    }

    #[test]
    fn keys_and_fingerprints_read_as_ssh_keygen_writes_them() {
        let dir = std::env::temp_dir().join(format!("c1m-fingerprint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("k");
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "t", "-f"])
            .arg(&key)
            .status()
            .is_ok_and(|s| s.success());
        let listed = made
            .then(|| {
                std::process::Command::new("ssh-keygen")
                    .args(["-l", "-E", "sha256", "-f"])
                    .arg(dir.join("k.pub"))
                    .output()
                    .ok()
            })
            .flatten();
        let Some(listed) = listed else {
            assert!(
                std::env::var_os("C1M_REQUIRE_LAB").is_none(),
                "ssh-keygen is required"
            );
            println!("SKIPPED: no ssh-keygen");
            return;
        };
        let public = std::fs::read_to_string(dir.join("k.pub")).unwrap();
        let text = public.split_whitespace().nth(1).unwrap();
        let blob = STANDARD.decode(text).unwrap();
        assert_eq!(base64(&blob, true), text);
        let listed = String::from_utf8_lossy(&listed.stdout);
        assert_eq!(
            Some(fingerprint(&blob).as_str()),
            listed.split_whitespace().nth(1)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn lines_with_markers_comments_and_garbage() {
        assert!(parse_line("# comment").is_none());
        assert!(parse_line("   ").is_none());
        assert!(parse_line("onlyhost").is_none());
        let e = parse_line("@revoked * ssh-ed25519 AAAA").expect("parses");
        assert_eq!(e.marker.as_deref(), Some("@revoked"));
        assert_eq!(e.line, "* ssh-ed25519 AAAA");
        let e = parse_line("[10.0.0.1]:2222 ssh-rsa AAAB comment here").expect("parses");
        assert!(e.marker.is_none());
        assert_eq!(
            (e.key_type.as_str(), e.key_b64.as_str()),
            ("ssh-rsa", "AAAB")
        );
    }

    #[test]
    fn patterns_follow_openssh() {
        assert_eq!(host_pattern("10.1.2.3", 22), "10.1.2.3");
        assert_eq!(host_pattern("h", 2222), "[h]:2222");
    }
}
