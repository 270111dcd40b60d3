//! Recognising private keys c1m cannot use, so the error says why instead of libssh2's
//! "Unsupported private key format".

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::path::Path;

/// Whether the private key at `path` is protected by a passphrase (OpenSSH or PEM format).
pub(super) fn is_encrypted(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    if text.contains("Proc-Type: 4,ENCRYPTED") || text.contains("BEGIN ENCRYPTED PRIVATE KEY") {
        return true;
    }
    let Some(body) = text
        .split("-----BEGIN OPENSSH PRIVATE KEY-----")
        .nth(1)
        .and_then(|rest| rest.split("-----END").next())
    else {
        return false;
    };
    let Some(blob) = base64_decode(body) else {
        return false;
    };
    // "openssh-key-v1\0", then the cipher name as an SSH string: "none" when unencrypted.
    let Some(rest) = blob.strip_prefix(b"openssh-key-v1\0") else {
        return false;
    };
    let Some(len) = rest
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    else {
        return false;
    };
    rest.get(4..4 + len).is_some_and(|cipher| cipher != b"none")
}

/// The base64 body of a PEM-style block, line breaks and all.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.split_ascii_whitespace().collect();
    STANDARD.decode(compact).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_rfc4648_vectors() {
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode("Zm9vYg==").unwrap(), b"foob");
        assert_eq!(base64_decode("Zm9v\nYmE=").unwrap(), b"fooba");
        assert!(base64_decode("Zm9v*").is_none());
    }

    #[test]
    fn keys_from_ssh_keygen_are_classified() {
        let dir = std::env::temp_dir().join(format!("c1m-keyfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let gen = |name: &str, extra: &[&str], pass: &str| {
            let path = dir.join(name);
            let ok = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", pass, "-f"])
                .arg(&path)
                .args(extra)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            ok.then_some(path)
        };
        // Without ssh-keygen there is nothing real to classify.
        if let (Some(plain), Some(locked)) = (gen("plain", &[], ""), gen("locked", &[], "pw")) {
            assert!(!is_encrypted(&plain));
            assert!(is_encrypted(&locked));
        }
        assert!(!is_encrypted(&dir.join("missing")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
