//! Active HTTP health checks, the I/O part: one `GET http://<podIP>:<port><path>` per ready pod of the
//! side being checked, each with the check's timeout. What the outcomes mean is decided in
//! `bosun_core::engine::health`; this module only asks.
//!
//! A plain HTTP/1.1 request over a TCP connection is all a probe needs (as the kubelet's own probe is),
//! so no HTTP client library is pulled in. A status from 200 to 399 passes, as for the kubelet.

use std::time::Duration;

use bosun_core::engine::health::Probe;
use bosun_core::model::{HttpGet, Scheme};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The pods worth probing: ready, not terminating, with an address.
pub fn probe_targets(pods: &[Pod]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let status = p.status.as_ref()?;
            let ready = status
                .conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let ip = status.pod_ip.clone()?;
            ready.then(|| (p.name_any(), ip))
        })
        .collect();
    out.sort();
    out
}

/// Probes every pod at once; each probe is bounded by `timeout`.
pub async fn probe_all(
    pods: &[(String, String)],
    check: &HttpGet,
    timeout: Duration,
) -> Vec<Probe> {
    let probes = pods.iter().map(|(name, ip)| async move {
        Probe {
            pod: name.clone(),
            outcome: probe(ip, check, timeout).await,
        }
    });
    futures::future::join_all(probes).await
}

/// One probe: `Ok` for an HTTP status from 200 to 399, else why not.
pub async fn probe(ip: &str, check: &HttpGet, timeout: Duration) -> Result<(), String> {
    if check.scheme == Some(Scheme::Https) {
        return Err("HTTPS health checks are not supported yet: use scheme HTTP".into());
    }
    let host = if ip.contains(':') {
        format!("[{ip}]:{}", check.port)
    } else {
        format!("{ip}:{}", check.port)
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bosun-health-check\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n",
        check.path
    );
    let exchange = async {
        let mut stream = TcpStream::connect(&host)
            .await
            .map_err(|e| format!("connecting to {host}: {e}"))?;
        stream
            .write_all(request.as_bytes())
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
    };
    let code = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("timed out after {timeout:?}"))??;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP {code}"))
    }
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

    #[test]
    fn status_lines_are_read() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_of(b"HTTP/1.0 500 Internal\r\nx: y"), Some(500));
        assert_eq!(status_of(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_of(b""), None);
    }

    async fn serve_once(status: &'static str) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let port = listener.local_addr().expect("bound").port();
        tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        port
    }

    fn get(port: u16) -> HttpGet {
        HttpGet {
            path: "/health".into(),
            port: i32::from(port),
            scheme: None,
        }
    }

    #[tokio::test]
    async fn a_probe_passes_on_200_and_fails_on_500_or_silence() {
        let t = Duration::from_secs(1);
        let ok = serve_once("200 OK").await;
        assert_eq!(probe("127.0.0.1", &get(ok), t).await, Ok(()));
        let bad = serve_once("500 Internal Server Error").await;
        assert_eq!(
            probe("127.0.0.1", &get(bad), t).await,
            Err("HTTP 500".into())
        );
        // A listener that never answers: the timeout ends the probe.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let port = silent.local_addr().expect("bound").port();
        let r = probe("127.0.0.1", &get(port), Duration::from_millis(300)).await;
        assert!(r.is_err_and(|e| e.starts_with("timed out")));
        drop(silent);
    }
}
