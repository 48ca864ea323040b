//! SSH host keys checked against an OpenSSH `known_hosts` file.
//!
//! libgit2 checks no host key by itself (its `valid` flag only reflects `$HOME/.ssh/known_hosts`), so
//! the `certificate_check` callback asks [`check`] whether the key the server presented is listed for
//! that host and port. Supported: plain host patterns (`host`, `[host]:port`, comma-separated,
//! `*`/`?` wildcards, `!` negation), hashed entries (`|1|salt|hash`, as `ssh-keyscan -H` and
//! `HashKnownHosts yes` write them) and `@revoked`. Not supported, and so never matching:
//! `@cert-authority` lines.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// What a `known_hosts` file says about a presented host key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Listed for this host.
    Trusted,
    /// The host is listed, but with other keys: the key changed, or someone is in between.
    Mismatch,
    /// The host is not listed at all.
    Unknown,
    /// Listed as `@revoked`.
    Revoked,
}

/// `SHA256:<base64 without padding>`, as `ssh-keygen -l` prints it.
pub(crate) fn fingerprint(sha256: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(sha256))
}

/// The SHA-256 of a host key blob (the binary form of the base64 field of `known_hosts`).
pub(crate) fn sha256(blob: &[u8]) -> [u8; 32] {
    Sha256::digest(blob).into()
}

/// Checks the key with SHA-256 `presented` of `host` on `port` against `known_hosts` text.
pub(crate) fn check(known_hosts: &str, host: &str, port: u16, presented: &[u8; 32]) -> Verdict {
    let name = if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    };
    let mut host_listed = false;
    let mut trusted = false;
    for line in known_hosts.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (marker, hosts) = match fields.next() {
            Some(m) if m.starts_with('@') => (Some(m), fields.next()),
            hosts => (None, hosts),
        };
        let (Some(hosts), Some(_key_type), Some(key)) = (hosts, fields.next(), fields.next())
        else {
            continue;
        };
        if marker == Some("@cert-authority") || !hosts_match(hosts, &name) {
            continue;
        }
        let Ok(blob) = STANDARD.decode(key) else {
            continue;
        };
        let same_key = sha256(&blob) == *presented;
        match marker {
            Some("@revoked") if same_key => return Verdict::Revoked,
            Some(_) => {}
            None => {
                host_listed = true;
                trusted |= same_key;
            }
        }
    }
    match (trusted, host_listed) {
        (true, _) => Verdict::Trusted,
        (false, true) => Verdict::Mismatch,
        (false, false) => Verdict::Unknown,
    }
}

/// OpenSSH's pattern list: any positive match and no negated match.
fn hosts_match(patterns: &str, name: &str) -> bool {
    let mut matched = false;
    for pattern in patterns.split(',') {
        if let Some(hashed) = pattern.strip_prefix("|1|") {
            matched |= hashed_match(hashed, name);
            continue;
        }
        match pattern.strip_prefix('!') {
            Some(negated) if glob(negated, name) => return false,
            Some(_) => {}
            None => matched |= glob(pattern, name),
        }
    }
    matched
}

/// A hashed entry, `salt|hash` in base64: whether `hash` is HMAC-SHA1 of `name` keyed with `salt`.
fn hashed_match(hashed: &str, name: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    // verify_slice compares in constant time.
    mac.verify_slice(&hash).is_ok()
}

/// `*` and `?` wildcards, ASCII case-insensitive, as OpenSSH matches host names.
fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let n: Vec<char> = name.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut resume) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            pi += 1;
            resume = ni;
        } else if let Some(s) = star {
            pi = s + 1;
            resume += 1;
            ni = resume;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIBz4o1tP8cHl1eT3z9tZ2pJb9NwqXzKx2qmB0Y1Jm6iU";

    fn sha_of(key: &str) -> [u8; 32] {
        sha256(&STANDARD.decode(key).expect("test key is base64"))
    }

    #[test]
    fn a_listed_key_on_a_non_standard_port_is_trusted_only_for_that_port() {
        let file = format!("[127.0.0.1]:2222 ssh-ed25519 {KEY_A}\n");
        assert_eq!(
            check(&file, "127.0.0.1", 2222, &sha_of(KEY_A)),
            Verdict::Trusted
        );
        assert_eq!(
            check(&file, "127.0.0.1", 22, &sha_of(KEY_A)),
            Verdict::Unknown
        );
        assert_eq!(
            check(&file, "127.0.0.1", 2222, &sha_of(KEY_B)),
            Verdict::Mismatch
        );
    }

    #[test]
    fn patterns_wildcards_negation_and_revocation() {
        let file = format!(
            "# comment\n*.example.com,!evil.example.com ssh-ed25519 {KEY_A} c\n\
             @revoked * ssh-ed25519 {KEY_B}\n@cert-authority * ssh-ed25519 {KEY_B}\n\
             |1|abc=|def= ssh-ed25519 {KEY_B}\n"
        );
        assert_eq!(
            check(&file, "git.example.com", 22, &sha_of(KEY_A)),
            Verdict::Trusted
        );
        assert_eq!(
            check(&file, "evil.example.com", 22, &sha_of(KEY_A)),
            Verdict::Unknown
        );
        assert_eq!(
            check(&file, "git.example.com", 22, &sha_of(KEY_B)),
            Verdict::Revoked
        );
    }

    #[test]
    fn hashed_entries_written_by_ssh_keygen_match_their_host_and_port_only() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let file = dir.path().join("known_hosts");
        std::fs::write(
            &file,
            format!("git.example.com ssh-ed25519 {KEY_A}\n[127.0.0.1]:2222 ssh-ed25519 {KEY_B}\n"),
        )
        .expect("write");
        // OpenSSH's own hashing, as `HashKnownHosts yes` and `ssh-keyscan -H` do it.
        let out = std::process::Command::new("ssh-keygen")
            .arg("-H")
            .arg("-f")
            .arg(&file)
            .output()
            .expect("ssh-keygen runs");
        assert!(out.status.success(), "{out:?}");
        let hashed = std::fs::read_to_string(&file).expect("read");
        assert!(
            hashed.lines().all(|l| l.starts_with("|1|")),
            "every line hashed:\n{hashed}"
        );
        assert_eq!(
            check(&hashed, "git.example.com", 22, &sha_of(KEY_A)),
            Verdict::Trusted
        );
        assert_eq!(
            check(&hashed, "git.example.com", 22, &sha_of(KEY_B)),
            Verdict::Mismatch
        );
        assert_eq!(
            check(&hashed, "127.0.0.1", 2222, &sha_of(KEY_B)),
            Verdict::Trusted
        );
        assert_eq!(
            check(&hashed, "127.0.0.1", 22, &sha_of(KEY_B)),
            Verdict::Unknown
        );
        assert_eq!(
            check(&hashed, "other.example.com", 22, &sha_of(KEY_A)),
            Verdict::Unknown
        );
    }

    #[test]
    fn fingerprints_read_like_ssh_keygen() {
        let fp = fingerprint(&sha_of(KEY_A));
        assert!(fp.starts_with("SHA256:"));
        assert!(!fp.ends_with('='));
        assert_eq!(fp.len(), "SHA256:".len() + 43);
    }
}
