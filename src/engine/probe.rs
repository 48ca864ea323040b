//! Active HTTP health checks, the I/O part: one `GET http://<podIP>:<port><path>` per ready pod of the
//! side being checked, each with the check's timeout (a pod that is not ready fails without a
//! request). What the outcomes mean is decided in `bosun_core::engine::health`; this module only asks.
//!
//! One HTTP/1.1 request over a TCP connection (or TLS, for `scheme: HTTPS`), through
//! [`crate::http_client`]. A path that cannot go into a request line as it is (a space, CR or LF; see
//! `bosun_core::names::is_http_path`) fails the probe before any connection is made. As for the
//! kubelet's probes: a status from 200 to 399 passes, redirects are not followed, and an HTTPS probe
//! does not verify the pod's certificate (pods rarely hold one for their own address).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bosun_core::engine::health::Probe;
use bosun_core::model::{HttpGet, Scheme};
use bosun_core::names;
use http::header::{ACCEPT, CONNECTION, HOST, USER_AGENT};
use http_body_util::Empty;
use hyper::body::Bytes;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use tokio::net::TcpStream;

use crate::http_client::status_over;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

/// Accepts any server certificate, as the kubelet's HTTPS probes do; signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls() -> Result<TlsConnector, String> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(ring::default_provider());
            let config = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("setting up TLS for HTTPS probes: {e}"))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
        .map(TlsConnector::from)
}

/// The pods of the side being checked: each with its address when it is ready, or `None` when it runs
/// but is not ready (it fails its round without a request: a pod that crashed during a pause is
/// counted, not skipped). Left out: pods being deleted, pods that ended (`Failed`, `Succeeded`: an
/// evicted pod stays listed while its replacement starts) and pods not running yet (`Pending`: being
/// scheduled or pulling their image).
pub fn probe_targets(pods: &[Pod]) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let status = p.status.as_ref()?;
            if crate::cache::is_ready(p) {
                return Some((p.name_any(), status.pod_ip.clone()));
            }
            (status.phase.as_deref() == Some("Running")).then(|| (p.name_any(), None))
        })
        .collect();
    out.sort();
    out
}

/// Probes every pod at once; each probe is bounded by `timeout`. A pod without an address (not
/// ready) fails with "not ready".
pub async fn probe_all(
    pods: &[(String, Option<String>)],
    check: &HttpGet,
    timeout: Duration,
) -> Vec<Probe> {
    let probes = pods.iter().map(|(name, ip)| async move {
        Probe {
            pod: name.clone(),
            outcome: match ip {
                Some(ip) => probe(ip, check, timeout).await,
                None => Err("not ready".into()),
            },
        }
    });
    futures::future::join_all(probes).await
}

/// One probe: `Ok` for an HTTP status from 200 to 399, else why not.
pub async fn probe(ip: &str, check: &HttpGet, timeout: Duration) -> Result<(), String> {
    if let Some(why) = names::http_path_problem(&check.path) {
        return Err(format!("httpGet.path {why}"));
    }
    let host = if ip.contains(':') {
        format!("[{ip}]:{}", check.port)
    } else {
        format!("{ip}:{}", check.port)
    };
    let request = http::Request::get(check.path.as_str())
        .header(HOST, &host)
        .header(USER_AGENT, "bosun-health-check")
        .header(ACCEPT, "*/*")
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("no request for httpGet.path {:?}: {e}", check.path))?;
    let https = check.scheme == Some(Scheme::Https);
    let exchange = async {
        let stream = TcpStream::connect(&host)
            .await
            .map_err(|e| format!("connecting to {host}: {e}"))?;
        if https {
            let name = ServerName::try_from(ip.to_string())
                .map_err(|e| format!("{ip} is not an address for TLS: {e}"))?;
            let stream = tls()?
                .connect(name, stream)
                .await
                .map_err(|e| format!("TLS with {host}: {e}"))?;
            status_over(stream, request, &host).await
        } else {
            status_over(stream, request, &host).await
        }
    };
    let code = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("timed out after {timeout:?}"))??;
    if (200..400).contains(&code.as_u16()) {
        Ok(())
    } else {
        Err(format!("HTTP {}", code.as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_client::serve_one;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pod(name: &str, phase: &str, ready: bool, ip: Option<&str>, terminating: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name,
                "deletionTimestamp": terminating.then_some("2026-11-22T00:00:00Z"),
            },
            "status": {
                "phase": phase,
                "podIP": ip,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            },
        }))
        .expect("a pod")
    }

    #[tokio::test]
    async fn a_running_pod_that_is_not_ready_fails_its_round_and_others_are_left_out() {
        let pods = [
            pod("a-serving", "Running", true, Some("127.1.0.1"), false),
            pod("b-crashed", "Running", false, Some("127.1.0.2"), false),
            pod("c-leaving", "Running", true, Some("127.1.0.3"), true),
            pod("d-pending", "Pending", false, None, false),
            pod("e-evicted", "Failed", false, Some("127.1.0.5"), false),
            pod("f-done", "Succeeded", false, None, false),
        ];
        let targets = probe_targets(&pods);
        assert_eq!(
            targets,
            vec![
                ("a-serving".into(), Some("127.1.0.1".into())),
                ("b-crashed".into(), None),
            ]
        );
        let probes = probe_all(&targets[1..], &get(1), Duration::from_millis(100)).await;
        assert_eq!(
            probes,
            vec![Probe {
                pod: "b-crashed".into(),
                outcome: Err("not ready".into())
            }]
        );
    }

    #[test]
    fn a_pod_kept_in_the_cache_is_probed_as_the_pod_itself() {
        let pods = [
            pod("a-serving", "Running", true, Some("127.1.0.1"), false),
            pod("b-crashed", "Running", false, Some("127.1.0.2"), false),
            pod("c-leaving", "Running", true, Some("127.1.0.3"), true),
            pod("d-pending", "Pending", false, None, false),
        ];
        let mut kept = pods.clone();
        kept.iter_mut().for_each(crate::cache::pod_summary);
        assert_eq!(probe_targets(&kept), probe_targets(&pods));
        assert_eq!(probe_targets(&kept).len(), 2);
    }

    async fn serve_once(status: &'static str) -> u16 {
        let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
        serve_one(b"\r\n\r\n", answer).await.0
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

    #[tokio::test]
    async fn a_path_that_cannot_go_into_a_request_line_fails_the_probe_before_any_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let port = listener.local_addr().expect("bound").port();
        let targets = [("web-0".to_string(), Some("127.0.0.1".to_string()))];
        for path in ["/he alth", "/health\r\nX-Injected: 1", "health"] {
            let mut check = get(port);
            check.path = path.into();
            let probes = probe_all(&targets, &check, Duration::from_secs(1)).await;
            let why = probes[0].outcome.as_ref().expect_err("refused");
            assert!(
                why.starts_with(&format!(
                    "httpGet.path {path:?} must start with / and contain"
                )),
                "{why}"
            );
            assert!(why.contains("no spaces or control characters"), "{why}");
        }
        // Nothing connected: a connection made would wait in the listener's backlog by now.
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "a probe connected: {accepted:?}");
    }

    #[tokio::test]
    async fn a_probe_sends_its_get_with_host_and_closes() {
        // A redirect passes, as for the kubelet, and is not followed.
        let (port, server) = serve_one(
            b"\r\n\r\n",
            b"HTTP/1.1 302 Found\r\nlocation: /elsewhere\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
        let mut check = get(port);
        check.path = "/health?full=1".into();
        assert_eq!(
            probe("127.0.0.1", &check, Duration::from_secs(5)).await,
            Ok(())
        );
        let request = server.await.expect("server");
        assert!(
            request.starts_with("get /health?full=1 http/1.1\r\n"),
            "{request}"
        );
        let host = format!("\r\nhost: 127.0.0.1:{port}\r\n");
        for header in [host.as_str(), "\r\nconnection: close\r\n"] {
            assert!(request.contains(header), "{header:?} in {request}");
        }
    }

    #[tokio::test]
    async fn an_https_probe_accepts_the_pod_s_own_certificate() {
        use tokio_rustls::rustls::ServerConfig;
        use tokio_rustls::rustls::pki_types::PrivateKeyDer;
        use tokio_rustls::rustls::pki_types::pem::PemObject;

        let dir = tempfile::tempdir().expect("a temporary directory");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let made = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=pod"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl runs");
        assert!(made.status.success(), "{made:?}");
        let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from_pem_file(&cert).expect("a certificate")],
                PrivateKeyDer::from_pem_file(&key).expect("a key"),
            )
            .expect("a server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let port = listener.local_addr().expect("bound").port();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut s) = acceptor.accept(s).await {
                        let mut buf = [0u8; 512];
                        let _ = s.read(&mut buf).await;
                        let _ = s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
                        let _ = s.shutdown().await;
                    }
                });
            }
        });
        let mut check = get(port);
        check.scheme = Some(Scheme::Https);
        assert_eq!(
            probe("127.0.0.1", &check, Duration::from_secs(5)).await,
            Ok(())
        );
        // Plain HTTP against a TLS port is no answer.
        check.scheme = None;
        assert!(
            probe("127.0.0.1", &check, Duration::from_secs(5))
                .await
                .is_err()
        );
    }
}
