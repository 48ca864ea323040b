//! Answers HTTP for kwok's pods, for the demo (`scripts/demo`) and for trying Bosun by hand on the local
//! cluster: kwok simulates pods but runs no containers, so something must answer Bosun's active health
//! checks on each pod's (loopback) address.
//!
//! For every pod of the given namespaces, it listens on `podIP:containerPort` for each declared port and
//! answers from the pod that has the address at the time of the request (kwok reuses freed addresses):
//! 200 by default, 500 when the pod's image tag ends in `-unhealthy`, 503 when no pod has the address.
//!
//! ```sh
//! KUBECONFIG=... cargo run --example kwok_pod_http -- shop pets
//! ```

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn answer(stores: &[Store<Pod>], ip: IpAddr) -> (u16, &'static str) {
    let pod = stores.iter().flat_map(Store::state).find(|p| {
        p.status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|a| a.parse::<IpAddr>().ok())
            == Some(ip)
    });
    match pod {
        None => (503, "Service Unavailable"),
        Some(p) => {
            let image = p
                .spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            if image.ends_with("-unhealthy") {
                (500, "Internal Server Error")
            } else {
                (200, "OK")
            }
        }
    }
}

async fn serve(addr: SocketAddr, stores: Vec<Store<Pod>>) {
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("kwok_pod_http: cannot listen on {addr}: {e}");
            return;
        }
    };
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let stores = stores.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let (code, reason) = answer(&stores, addr.ip());
            let body = format!("{code} {reason}\n");
            let response = format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let namespaces: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(!namespaces.is_empty(), "usage: kwok_pod_http NAMESPACE...");
    let client = Client::try_default().await?;
    let mut streams = Vec::new();
    let mut stores = Vec::new();
    for ns in &namespaces {
        let (reader, writer) = reflector::store();
        let stream = reflector::reflector(
            writer,
            watcher(
                Api::<Pod>::namespaced(client.clone(), ns),
                watcher::Config::default(),
            ),
        )
        .applied_objects()
        .boxed();
        streams.push(stream);
        stores.push(reader);
    }
    let mut all = futures::stream::select_all(streams);
    let mut listening: HashSet<SocketAddr> = HashSet::new();
    while let Some(event) = all.next().await {
        let Ok(pod) = event else { continue };
        let Some(ip) = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|a| a.parse::<IpAddr>().ok())
        else {
            continue;
        };
        let ports = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .map(|p| p.container_port);
        for port in ports {
            let addr = SocketAddr::new(ip, port as u16);
            if listening.insert(addr) {
                tokio::spawn(serve(addr, stores.clone()));
            }
        }
    }
    Ok(())
}
