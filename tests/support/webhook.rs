//! Webhooks as a forge sends them to a running Bosun: a GitHub push, or any event, signed.
#![allow(dead_code)] // each test binary uses its own part of the support module

use std::time::{Duration, Instant};

/// Posts a signed GitHub push to Bosun's `/webhook` at `addr`; the status code.
pub async fn post_webhook(addr: &str, signature: &str, body: &str) -> u16 {
    post_webhook_answer(addr, signature, body).await.0
}

/// Posts a signed push; the status code and the body of the answer.
pub async fn post_webhook_answer(addr: &str, signature: &str, body: &str) -> (u16, String) {
    post_event(
        addr,
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", signature),
        ],
        body,
    )
    .await
}

/// Posts `body` with `headers` (the event, its signature, its delivery id) to Bosun's `/webhook` at
/// `addr`; the status code and the body of the answer.
pub async fn post_event(addr: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("connecting to bosun at {addr}: {e}"),
        }
    };
    let mut req = format!("POST /webhook HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    stream.read_to_string(&mut out).await.expect("read");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let answer = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, answer)
}

/// `X-Hub-Signature-256` of `body` with `secret`, as GitHub signs a push.
pub fn sign_push(secret: &[u8], body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("key");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
