//! Remote URLs, Bosun's one parser of them: which transport a URL names, the host and port a host key
//! is checked for, the form of the URL that may appear in a message (no userinfo, no query), and the
//! repository it names whatever the spelling ([`RemoteUrl::repository`]), by which a webhook finds its
//! source and a source its GitHub repository.

/// How a remote is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    Http,
    Https,
    Ssh,
    Git,
    /// `file://` URLs and plain paths.
    Local,
}

/// A remote URL, parsed once when a source is opened.
#[derive(Clone, Debug)]
pub(crate) struct RemoteUrl {
    raw: String,
    transport: Transport,
    user: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    /// The path on the host (or the local path), without query or fragment.
    path: String,
    redacted: String,
}

impl RemoteUrl {
    /// Parses `http(s)://`, `ssh://`, `git://`, `file://`, scp-like `user@host:path` and plain paths.
    pub(crate) fn parse(raw: &str) -> Result<RemoteUrl, String> {
        if raw.trim().is_empty() {
            return Err("the URL is empty".to_owned());
        }
        if raw.chars().any(char::is_control) || raw.contains(' ') {
            return Err("the URL contains spaces or control characters".to_owned());
        }
        if let Some((scheme, rest)) = raw.split_once("://") {
            return parse_with_scheme(raw, scheme, rest);
        }
        if let Some((authority, path)) = scp_like(raw) {
            let (user, host) = match authority.rsplit_once('@') {
                Some((user, host)) => (Some(user.to_owned()), host),
                None => (None, authority),
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err("the scp-like URL has no host".to_owned());
            }
            return Ok(RemoteUrl {
                raw: raw.to_owned(),
                transport: Transport::Ssh,
                user,
                host: Some(host.to_owned()),
                port: None,
                path: strip_query(path).to_owned(),
                redacted: raw.to_owned(),
            });
        }
        Ok(RemoteUrl {
            raw: raw.to_owned(),
            transport: Transport::Local,
            user: None,
            host: None,
            port: None,
            path: raw.to_owned(),
            redacted: raw.to_owned(),
        })
    }

    /// The repository the URL names, the same however it is spelled: `host/path` with the host in
    /// lowercase, no user, port, scheme or `.git`, no slash at either end. `https://x@GitHub.com/o/r.git`,
    /// `git@github.com:o/r` and `ssh://git@github.com:22/o/r/` are all `github.com/o/r`.
    pub(crate) fn repository(&self) -> String {
        let path = self.path.trim_matches('/');
        let path = path
            .strip_suffix(".git")
            .unwrap_or(path)
            .trim_end_matches('/');
        match &self.host {
            Some(host) => format!("{}/{path}", host.to_ascii_lowercase()),
            None => path.to_owned(),
        }
    }

    /// The path on the host, as written (without query or fragment).
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The URL as configured, for libgit2. Never put it in a message: use [`RemoteUrl::redacted`].
    pub(crate) fn raw(&self) -> &str {
        &self.raw
    }

    /// The URL without userinfo (for http(s)), password, query or fragment: safe for messages.
    pub(crate) fn redacted(&self) -> &str {
        &self.redacted
    }

    pub(crate) fn transport(&self) -> Transport {
        self.transport
    }

    /// The user named in the URL (`ssh://git@host/...`), if any.
    pub(crate) fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub(crate) fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The port the URL names, if any.
    pub(crate) fn port(&self) -> Option<u16> {
        self.port
    }

    /// The SSH port: the URL's, else 22.
    pub(crate) fn ssh_port(&self) -> u16 {
        self.port.unwrap_or(22)
    }
}

/// `user@host:path` (no scheme, a colon before any slash, something before the colon).
fn scp_like(raw: &str) -> Option<(&str, &str)> {
    let colon = raw.find(':')?;
    let slash = raw.find('/').unwrap_or(usize::MAX);
    // `C:\repo` or `C:/repo` would be a Windows drive, not a host named C.
    (colon > 1 && colon < slash).then(|| (&raw[..colon], &raw[colon + 1..]))
}

fn parse_with_scheme(raw: &str, scheme: &str, rest: &str) -> Result<RemoteUrl, String> {
    let transport = match scheme.to_ascii_lowercase().as_str() {
        "http" => Transport::Http,
        "https" => Transport::Https,
        "ssh" | "git+ssh" | "ssh+git" => Transport::Ssh,
        "git" => Transport::Git,
        "file" => Transport::Local,
        other => {
            return Err(format!(
                "the scheme {other:?} is not supported; use https://, http://, ssh://, git://, \
                 file://, user@host:path or a local path"
            ));
        }
    };
    if transport == Transport::Local {
        return Ok(RemoteUrl {
            raw: raw.to_owned(),
            transport,
            user: None,
            host: None,
            port: None,
            path: strip_query(rest).to_owned(),
            redacted: strip_query(raw).to_owned(),
        });
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    let (host, port) = split_host_port(hostport)?;
    if host.is_empty() {
        return Err("the URL has no host".to_owned());
    }
    let user = userinfo.map(|u| u.split(':').next().unwrap_or_default().to_owned());
    let has_password = userinfo.is_some_and(|u| u.contains(':'));
    // Over http(s) a token is often the whole userinfo (`https://TOKEN@host/...`): drop all of it.
    // Over ssh the user is a name (`git@`) worth showing, unless a password came with it.
    let shown_user = match transport {
        Transport::Ssh | Transport::Git if !has_password => user.as_deref(),
        _ => None,
    };
    let mut redacted = format!("{}://", scheme.to_ascii_lowercase());
    if let Some(user) = shown_user {
        redacted.push_str(user);
        redacted.push('@');
    }
    redacted.push_str(hostport);
    redacted.push_str(strip_query(path));
    Ok(RemoteUrl {
        raw: raw.to_owned(),
        transport,
        user,
        host: Some(host.to_owned()),
        port,
        path: strip_query(path).to_owned(),
        redacted,
    })
}

fn split_host_port(hostport: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or("the URL has a '[' without ']' around its host")?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| format!("the URL's port {p:?} is not a number from 1 to 65535"))?,
        ),
    };
    Ok((host, port))
}

fn strip_query(s: &str) -> &str {
    s.split(['?', '#']).next().unwrap_or_default()
}

/// For a URL that did not parse: everything between `://` and the last `@` of the authority goes.
pub(crate) fn redact_unparsed(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return match raw.split_once('@') {
            Some((_, after)) => format!("***@{after}"),
            None => raw.to_owned(),
        };
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}{}", strip_query(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str) -> RemoteUrl {
        RemoteUrl::parse(raw).expect("a valid URL")
    }

    #[test]
    fn https_userinfo_never_reaches_the_shown_url() {
        let url = parsed("https://bosun:s3cret@forge.example:8443/org/repo.git?token=abc");
        assert_eq!(url.transport(), Transport::Https);
        assert_eq!(url.redacted(), "https://forge.example:8443/org/repo.git");
        let token_only = parsed("https://ghp_TOKEN@github.com/org/repo.git");
        assert_eq!(token_only.redacted(), "https://github.com/org/repo.git");
    }

    #[test]
    fn ssh_urls_keep_the_user_and_give_the_port_for_host_keys() {
        let url = parsed("ssh://git@127.0.0.1:2222/repo.git");
        assert_eq!(url.transport(), Transport::Ssh);
        assert_eq!(url.user(), Some("git"));
        assert_eq!(url.host(), Some("127.0.0.1"));
        assert_eq!(url.ssh_port(), 2222);
        assert_eq!(url.redacted(), "ssh://git@127.0.0.1:2222/repo.git");
        let with_password = parsed("ssh://git:hunter2@host/repo.git");
        assert_eq!(with_password.redacted(), "ssh://host/repo.git");
    }

    #[test]
    fn scp_like_urls_are_ssh_on_port_22() {
        let url = parsed("git@github.com:org/repo.git");
        assert_eq!(url.transport(), Transport::Ssh);
        assert_eq!(url.user(), Some("git"));
        assert_eq!(url.host(), Some("github.com"));
        assert_eq!(url.ssh_port(), 22);
    }

    #[test]
    fn ipv6_hosts_and_local_paths() {
        let url = parsed("ssh://git@[::1]:22/repo.git");
        assert_eq!(url.host(), Some("::1"));
        assert_eq!(url.ssh_port(), 22);
        assert_eq!(parsed("/srv/git/repo.git").transport(), Transport::Local);
        assert_eq!(parsed("./repo:with-colon").transport(), Transport::Local);
        assert_eq!(parsed("file:///srv/repo.git").transport(), Transport::Local);
        assert_eq!(
            parsed("git://127.0.0.1:9418/r.git").transport(),
            Transport::Git
        );
    }

    #[test]
    fn one_repository_written_many_ways_is_one_repository() {
        for url in [
            "https://github.com/Org/app.git",
            "https://x-access-token:secret@github.com/Org/app",
            "git@github.com:Org/app.git",
            "ssh://git@GitHub.com:22/Org/app.git",
            "https://github.com/Org/app/",
            "https://github.com/Org/app.git?ref=main",
        ] {
            assert_eq!(parsed(url).repository(), "github.com/Org/app", "{url}");
        }
        assert_eq!(
            parsed("http://127.0.0.1:8080/git/apps.git").repository(),
            "127.0.0.1/git/apps"
        );
        assert_eq!(parsed("/srv/git/apps.git").repository(), "srv/git/apps");
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        assert!(RemoteUrl::parse("").is_err());
        assert!(RemoteUrl::parse("ftp://host/repo").is_err());
        assert!(RemoteUrl::parse("https://host:99999/repo").is_err());
        assert!(RemoteUrl::parse("https:///repo").is_err());
        assert_eq!(
            redact_unparsed("https://user:pw@host:99999/x?y"),
            "https://host:99999/x"
        );
    }
}
