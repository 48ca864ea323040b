//! One HTTP/1.1 request over one connection, through hyper's client connection, where all Bosun wants
//! is the status code: health probes of pods (`engine::probe`), and a standby forwarding a webhook to
//! the leader ([`post`]). Requests are built with `http::Request`, so a URI or header that cannot go on
//! the wire is an error before anything is sent. Only the head of the answer is read; the connection
//! closes when the exchange ends.

use std::time::Duration;

use http::header::{CONNECTION, CONTENT_LENGTH, HOST};
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper::body::{Body, Bytes};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// `POST`s `body` to a plain `http://` URL with `headers`, within `timeout`; the answer's status code.
///
/// # Errors
/// A URL that is not `http://host[:port]/path`, a header that cannot be sent, or the connection, the
/// exchange or the timeout failing, said in words.
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
    let mut request = Request::post(path)
        .header(HOST, authority.as_str())
        .header(CONTENT_LENGTH, body.len())
        .header(CONNECTION, "close");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|e| format!("no request to {url:?}: {e}"))?;
    let exchange = async {
        let stream = TcpStream::connect(&host)
            .await
            .map_err(|e| format!("connecting to {host}: {e}"))?;
        status_over(stream, request, &host).await
    };
    let code = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer from {host} within {timeout:?}"))??;
    Ok(code.as_u16())
}

/// Sends `request` over `stream` and reads the status of the answer. `host` names the peer in errors.
///
/// # Errors
/// The handshake, the write or the read failing, or an answer that is not HTTP/1, in words.
pub async fn status_over<S, B>(
    stream: S,
    request: Request<B>,
    host: &str,
) -> Result<StatusCode, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
    B: Body + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let failed = |e: hyper::Error| format!("HTTP with {host}: {}", error_chain(&e));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(failed)?;
    // The connection is driven here, not spawned: when the answer's head is in (or the caller's
    // timeout drops this future), it is dropped and the socket closes.
    let mut connection = std::pin::pin!(connection);
    let mut exchange = std::pin::pin!(sender.send_request(request));
    let response = tokio::select! {
        biased;
        response = &mut exchange => response,
        ended = &mut connection => match ended {
            Err(e) => Err(e),
            // The connection ended before the answer: the exchange has its error.
            Ok(()) => exchange.await,
        },
    };
    Ok(response.map_err(failed)?.status())
}

/// An error and its causes, in one line (hyper's and rustls's own messages leave out the cause).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// For tests: a loopback port that takes one connection, reads from it until what it read ends with
/// `end`, answers `answer`, and hands back what it read, lowercased.
#[cfg(test)]
pub(crate) async fn serve_one(
    end: &'static [u8],
    answer: impl AsRef<[u8]> + Send + 'static,
) -> (u16, tokio::task::JoinHandle<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let port = listener.local_addr().expect("bound").port();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("a connection");
        let mut got = Vec::new();
        let mut chunk = [0u8; 1024];
        while !got.ends_with(end) {
            let n = s.read(&mut chunk).await.expect("reads");
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
        }
        s.write_all(answer.as_ref()).await.expect("writes");
        String::from_utf8(got).expect("text").to_ascii_lowercase()
    });
    (port, server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_post_sends_its_headers_and_body_and_reads_the_status() {
        let (port, server) = serve_one(
            b"{\"ref\":1}",
            b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
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
            request.starts_with("post /webhook http/1.1\r\n"),
            "{request}"
        );
        let host = format!("\r\nhost: 127.0.0.1:{port}\r\n");
        for header in [
            host.as_str(),
            "\r\nx-hub-signature-256: sha256=ab\r\n",
            "\r\ncontent-length: 9\r\n",
        ] {
            assert!(request.contains(header), "{header:?} in {request}");
        }
    }

    #[tokio::test]
    async fn a_post_says_why_it_failed() {
        let e = post("https://127.0.0.1:1/x", &[], b"", Duration::from_secs(1)).await;
        assert!(e.is_err_and(|e| e.contains("only http://")));
        // Port 1 on loopback: nothing listens.
        let e = post("http://127.0.0.1:1/x", &[], b"", Duration::from_secs(1)).await;
        assert!(e.is_err_and(|e| e.contains("connecting to 127.0.0.1:1")));
        for url in ["http://127.0.0.1:1/a b", "http://127.0.0.1:1/a\r\nX: y"] {
            let e = post(url, &[], b"", Duration::from_secs(1)).await;
            assert!(e.is_err_and(|e| e.contains("is not a URL")), "{url:?}");
        }
        let e = post(
            "http://127.0.0.1:1/x",
            &[("x-bosun-forwarded", "a\r\nb")],
            b"",
            Duration::from_secs(1),
        )
        .await;
        assert!(e.is_err_and(|e| e.starts_with("no request to")));
    }

    #[tokio::test]
    async fn an_answer_that_is_not_http_is_an_error() {
        let (port, _) = serve_one(b"\r\n\r\n", b"SSH-2.0-OpenSSH_9.6\r\n").await;
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connects");
        let request = Request::get("/")
            .header(http::header::HOST, "pod")
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .expect("a request");
        let e = status_over(stream, request, &format!("127.0.0.1:{port}")).await;
        assert!(
            e.as_ref()
                .is_err_and(|e| e.starts_with(&format!("HTTP with 127.0.0.1:{port}: "))),
            "{e:?}"
        );
    }
}
