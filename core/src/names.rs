//! The naming rules of Kubernetes and of image references, as predicates; and every `bosun.dev/*`
//! key Bosun reads or writes, each defined once here.

/// Label carrying the version a Deployment and its pods run (for people: selectors use the hash).
pub const LABEL_VERSION: &str = "bosun.dev/version";
/// Label carrying which side (stable, canary, preview) a Deployment and its pods are.
pub const LABEL_ROLE: &str = "bosun.dev/role";
/// Annotation on a Bestie: the app Deployment's `progressDeadlineSeconds` (default 600). Tests set it low.
pub const ANNOTATION_PROGRESS_DEADLINE: &str = "bosun.dev/progress-deadline-seconds";
/// Annotation on a Bestie's app Deployment: the hash of the `BestieTemplate` its pods are built from.
/// On the Deployment's metadata, not the pods', so that adding it to a Deployment of an older Bosun
/// restarts no pod.
pub const ANNOTATION_TEMPLATE_HASH: &str = "bosun.dev/template-hash";
/// Label on the app's Deployments and pods: the revision hash they run (`rollout::revision`).
pub const LABEL_REVISION_HASH: &str = "bosun.dev/revision-hash";
/// Label on a migration Job: the migration it was made for (`Revision::migration_hash`). A Job of
/// the right name but another migration is never taken as this one's result.
pub const LABEL_MIGRATION_HASH: &str = "bosun.dev/migration-hash";
/// Label on the app's ControllerRevisions: the app they belong to.
pub const LABEL_APP: &str = "bosun.dev/app";
/// Annotation: the hash of what the engine (or the Bestie controller) last applied to an object; an
/// apply whose hash is unchanged is skipped.
pub const ANNOTATION_APPLIED_HASH: &str = "bosun.dev/applied-hash";
/// Label on everything Bosun applies from git: the source (repository) it came from.
pub const LABEL_SOURCE: &str = "bosun.dev/source";
/// Annotation: the newest commit that changed the object's definition (see [`attribution`]).
pub const ANNOTATION_REVISION: &str = "bosun.dev/revision";
/// Annotation: the file (repository-relative) that defines the object.
pub const ANNOTATION_SOURCE_PATH: &str = "bosun.dev/source-path";
/// Annotation: the hash of what was applied; equal hashes mean nothing to do.
pub const ANNOTATION_SPEC_HASH: &str = "bosun.dev/spec-hash";
/// Annotation a human sets (through `bosun promote`) to the index of the step to promote: a canary step
/// with `pause: untilPromoted`, or step 0 of a BlueGreen upgrade with `autoPromote: false`.
pub const ANNOTATION_PROMOTE_STEP: &str = "bosun.dev/promote-step";
/// Annotation a human sets (through `bosun abort`) to the target version whose running upgrade must
/// fail and roll back. Another version's name is ignored. Bosun removes it once acted on.
pub const ANNOTATION_ABORT: &str = "bosun.dev/abort";
/// Annotation a human sets (through `bosun retry`) to the failed version to try again from the start.
/// Another version's name is ignored. Bosun removes it once acted on.
pub const ANNOTATION_RETRY: &str = "bosun.dev/retry";
/// Set by `bosun promote --now` to the version to start outside its upgrade windows (an emergency).
pub const ANNOTATION_PROMOTE_NOW: &str = "bosun.dev/promote-now";
/// The Lease annotation holding the leader's URL (its HTTP server, as other replicas reach it).
pub const ANNOTATION_LEADER_URL: &str = "bosun.dev/leader-url";
/// The source commit whose upgrade Bosun rolled back in git.
pub const ANNOTATION_ROLLBACK_OF: &str = "bosun.dev/rollback-of";
/// The rollback commit Bosun wrote (or `branch:<name>` when it went to a pull request branch).
pub const ANNOTATION_ROLLBACK_COMMIT: &str = "bosun.dev/rollback-commit";
/// Why the rollback on a pull request branch needs a human: the lines where a human's edit and the
/// restore meet (present only then).
pub const ANNOTATION_ROLLBACK_CONFLICT: &str = "bosun.dev/rollback-conflict";
/// The rollback pull request Bosun opened (`<number> <url>`).
pub const ANNOTATION_ROLLBACK_PR: &str = "bosun.dev/rollback-pr";

/// A DNS-1123 label: lowercase letters, digits and `-`, starting and ending alphanumeric, at most 63.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// The CRDs' pattern of a version (an image tag): the API server refuses what [`is_image_tag`]
/// refuses, so a version edited by hand is as bounded as one read from git.
pub const IMAGE_TAG_PATTERN: &str = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$";

/// An image tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn is_image_tag(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// An image repository without tag or digest: `[registry[:port]/]path/components`, lowercase.
pub fn is_image_repository(s: &str) -> bool {
    if s.is_empty() || s.len() > 255 {
        return false;
    }
    let mut parts: Vec<&str> = s.split('/').collect();
    // A first component with a dot, a colon or "localhost" is a registry host.
    if parts.len() > 1 {
        let first = parts[0];
        if first.contains('.') || first.contains(':') || first == "localhost" {
            let (host, port) = first
                .split_once(':')
                .map_or((first, None), |(h, p)| (h, Some(p)));
            let host_ok = !host.is_empty()
                && host.split('.').all(|l| {
                    !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            let port_ok =
                port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
            if !host_ok || !port_ok {
                return false;
            }
            parts.remove(0);
        }
    }
    parts.iter().all(|p| is_path_component(p))
}

fn is_path_component(p: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let b = p.as_bytes();
    if b.is_empty() || !b[0].is_ascii_lowercase() && !b[0].is_ascii_digit() {
        return false;
    }
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &p[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-');
        if !ok {
            return false;
        }
    }
    true
}

/// An image reference with an optional tag and digest: `repo[:tag][@sha256:...]`.
pub fn is_image_reference(s: &str) -> bool {
    let (rest, digest) = s.split_once('@').map_or((s, None), |(r, d)| (r, Some(d)));
    if let Some(d) = digest {
        let Some(hex) = d.strip_prefix("sha256:") else {
            return false;
        };
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return false;
        }
    }
    // A tag is after the last colon that follows the last slash.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[last_slash..].rfind(':') {
        Some(i) => {
            let (repo, tag) = (&rest[..last_slash + i], &rest[last_slash + i + 1..]);
            is_image_repository(repo) && is_image_tag(tag)
        }
        None => is_image_repository(rest),
    }
}

/// Whether a repository string carries a tag (`repo:tag`) or digest.
pub fn has_tag_or_digest(s: &str) -> bool {
    let last_slash = s.rfind('/').map_or(0, |i| i + 1);
    s.contains('@') || s[last_slash..].contains(':')
}

/// An IANA service name, as a container port name must be: at most 15 characters, lowercase letters,
/// digits and single dashes, at least one letter.
pub fn is_port_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.chars().any(|c| c.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// The CRD's `pattern` for a health check's `httpGet.path`, as [`is_http_path`] reads it: `/`, then
/// visible ASCII other than `"`, `<`, `>` and `` ` `` (a request target carries those percent-encoded).
/// No space or control character: the path goes into the probe's request line as it is written.
pub const HTTP_PATH_PATTERN: &str = "^/[!#-;=?-_a-~]*$";

/// A path a health check can send as it is: what [`HTTP_PATH_PATTERN`] matches.
pub fn is_http_path(s: &str) -> bool {
    s.strip_prefix('/').is_some_and(|rest| {
        rest.bytes()
            .all(|b| matches!(b, b'!' | b'#'..=b';' | b'=' | b'?'..=b'_' | b'a'..=b'~'))
    })
}

/// Why `path` cannot be a health check's path, quoting it (cut to 80 characters), or `None` when it
/// can: the one message `bosun validate` and the probe give.
pub fn http_path_problem(path: &str) -> Option<String> {
    if is_http_path(path) {
        return None;
    }
    Some(format!(
        "{} must start with / and contain only visible ASCII: no spaces or control \
         characters (nor \" < > `; percent-encode them)",
        crate::shown::Quoted(path)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kubernetes_rules() {
        assert!(is_dns1123_label("my-app"));
        assert!(!is_dns1123_label("My-App"));
        assert!(!is_dns1123_label("-app"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("my.app-1"));
    }

    #[test]
    fn image_parts_are_recognised() {
        assert!(is_image_tag("v2.0.0"));
        assert!(is_image_tag("1.3"));
        assert!(!is_image_tag("-rc1"));
        assert!(!is_image_tag("v2/0"));
        assert!(is_image_repository("quay.io/opdev/bestie"));
        assert!(is_image_repository("localhost:5000/my-app"));
        assert!(is_image_repository("my-app"));
        assert!(!is_image_repository("My-App"));
        assert!(!is_image_repository("quay.io/opdev/bestie:1.3"));
        assert!(is_image_reference("my-app-migrations:v2.0.0"));
        assert!(is_image_reference("localhost:5000/app:1"));
        assert!(!is_image_reference("app:"));
        assert!(has_tag_or_digest("quay.io/opdev/bestie:1.3"));
        assert!(!has_tag_or_digest("localhost:5000/app"));
    }

    #[test]
    fn port_names_are_iana_service_names() {
        assert!(is_port_name("http"));
        assert!(!is_port_name("8080"));
        assert!(!is_port_name("metrics-endpoint-x"));
    }

    #[test]
    fn health_check_paths_are_visible_ascii_after_a_slash() {
        for ok in [
            "/",
            "/healthz",
            "/api/v1/ready?full=1&x={a}|b",
            "/a%20b#top",
            "/~user/[x]^",
        ] {
            assert!(is_http_path(ok), "{ok:?}");
        }
        for bad in [
            "",
            "healthz",
            "/he alth",
            "/h\r\nHost: evil",
            "/h\n",
            "/h\t",
            "/h\u{7f}",
            "/café",
            "/\"q\"",
            "/<script>",
            "/`id`",
        ] {
            assert!(!is_http_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_bad_path_is_quoted_escaped_and_cut_to_80_characters() {
        assert_eq!(http_path_problem("/healthz"), None);
        let why = http_path_problem("/h\r\nX: y").expect("refused");
        assert!(
            why.starts_with(r#""/h\r\nX: y" must start with / and contain only visible ASCII"#),
            "{why}"
        );
        let long = format!("/{}", "a b".repeat(100));
        let why = http_path_problem(&long).expect("refused");
        let quoted = format!("{:?}", format!("{}…", &long[..79]));
        assert!(why.starts_with(&format!("{quoted} must")), "{why}");
        let exactly_80 = format!("/ {}", "é".repeat(78));
        let why = http_path_problem(&exactly_80).expect("refused");
        assert!(why.starts_with(&format!("{exactly_80:?} must")), "{why}");
    }

    #[test]
    fn the_crd_version_pattern_and_the_image_tag_check_agree() {
        let pattern = regex::Regex::new(IMAGE_TAG_PATTERN).expect("the pattern compiles");
        for c in (0..=0x7f_u8).map(char::from).chain(['é']) {
            for tag in [format!("{c}"), format!("v1{c}2"), format!("{c}v1")] {
                assert_eq!(pattern.is_match(&tag), is_image_tag(&tag), "{tag:?}");
            }
        }
        for len in [127, 128, 129, 200_000] {
            let tag = "x".repeat(len);
            assert_eq!(
                pattern.is_match(&tag),
                is_image_tag(&tag),
                "{len} characters"
            );
        }
    }

    #[test]
    fn the_crd_pattern_and_the_check_agree_on_every_character() {
        let pattern = regex::Regex::new(HTTP_PATH_PATTERN).expect("the pattern compiles");
        for c in (0..=0x7f_u8).map(char::from).chain(['é', '…']) {
            for path in [format!("/{c}"), format!("/a{c}b"), format!("{c}/")] {
                assert_eq!(pattern.is_match(&path), is_http_path(&path), "{path:?}");
            }
        }
    }
}
