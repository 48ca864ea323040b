//! The little HTTP/1.1 client Bosun needs where all it wants is a status code: health probes of pods,
//! and a standby forwarding a webhook to the leader. One request per connection (`Connection: close`);
//! only the status line of the answer is read.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// `POST`s `body` to a plain `http://` URL with `headers`, within `timeout`; the answer's status code.
///
/// # Errors
/// A URL that is not `http://host[:port]/path`, or the connection, write or read failing or timing
/// out, said in words.
pub async fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<u16, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url:?}: only http:// is supported"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url:?} has no host"))?;
    let host = match authority.port_u16() {
        Some(_) => authority.to_string(),
        None => format!("{}:80", authority.host()),
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = format!("POST {path} HTTP/1.1\r\nHost: {authority}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    let exchange = async {
        let stream = TcpStream::connect(&host)
            .await
            .map_err(|e| format!("connecting to {host}: {e}"))?;
        status_over(stream, &bytes, &host).await
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer from {host} within {timeout:?}"))?
}

/// Sends `request` and reads the response's status code.
pub async fn status_over<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
    host: &str,
) -> Result<u16, String> {
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("sending to {host}: {e}"))?;
    // The status line is all we need; read at most 1 KiB for it.
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 1024 {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading from {host}: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    status_of(&buf).ok_or_else(|| format!("{host} did not answer with HTTP"))
}

/// The status code of an HTTP/1.x status line.
fn status_of(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_post_sends_its_headers_and_body_and_reads_the_status() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let port = listener.local_addr().expect("bound").port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("a connection");
            let mut got = Vec::new();
            let mut chunk = [0u8; 1024];
            while !got.ends_with(b"{\"ref\":1}") {
                let n = s.read(&mut chunk).await.expect("reads");
                assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&chunk[..n]);
            }
            s.write_all(b"HTTP/1.1 202 Accepted\r\n\r\n")
                .await
                .expect("writes");
            String::from_utf8(got).expect("text")
        });
        let code = post(
            &format!("http://127.0.0.1:{port}/webhook"),
            &[("X-Hub-Signature-256", "sha256=ab")],
            b"{\"ref\":1}",
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(code, Ok(202));
        let request = server.await.expect("server");
        assert!(
            request.starts_with("POST /webhook HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains("\r\nX-Hub-Signature-256: sha256=ab\r\n"),
            "{request}"
        );
        assert!(request.contains("\r\nContent-Length: 9\r\n"), "{request}");
    }

    #[tokio::test]
    async fn a_post_says_why_it_failed() {
        let e = post("https://127.0.0.1:1/x", &[], b"", Duration::from_secs(1)).await;
        assert!(e.is_err_and(|e| e.contains("only http://")));
        // Port 1 on loopback: nothing listens.
        let e = post("http://127.0.0.1:1/x", &[], b"", Duration::from_secs(1)).await;
        assert!(e.is_err_and(|e| e.contains("connecting to 127.0.0.1:1")));
    }

    #[test]
    fn status_lines_are_read() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_of(b"HTTP/1.0 500 Internal\r\nx: y"), Some(500));
        assert_eq!(status_of(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_of(b""), None);
    }
}
