//! One HTTP/1.1 request over one connection, through hyper's client connection, where all Bosun wants
//! is the status code: health probes of pods (`engine::probe`). Requests are built with
//! `http::Request`, so a URI or header that cannot go on the wire is an error before anything is sent.
//! Only the head of the answer is read; the connection closes when the exchange ends.

use http::{Request, StatusCode};
use hyper::body::Body;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn an_answer_that_is_not_http_is_an_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let port = listener.local_addr().expect("bound").port();
        tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
            }
        });
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
