//! A fault injector in front of a real model provider (llama-server): requests pass
//! through to it untouched until a fault is switched on, and then get a 500, a body
//! that is not JSON, no answer at all, or (a lying provider) an answer whose `usage`
//! claims a million tokens. The model behind it is real; only the
//! failures are made up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the next requests get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ProviderFault {
    /// Passed through to the real provider.
    None = 0,
    /// `500 Internal Server Error`.
    ServerError = 1,
    /// `200 OK` with a body that is not JSON.
    Garbage = 2,
    /// The request is read and never answered (the caller's timeout must fire).
    Hang = 3,
    /// A provider that lies: a two-letter answer reporting a million tokens each way.
    InflatedUsage = 4,
}

const FAULTS: [ProviderFault; 5] = [
    ProviderFault::None,
    ProviderFault::ServerError,
    ProviderFault::Garbage,
    ProviderFault::Hang,
    ProviderFault::InflatedUsage,
];

/// The injector; dropped, it stops listening.
pub struct FaultyProvider {
    pub port: u16,
    fault: Arc<AtomicU8>,
    served: Arc<[AtomicU64; 5]>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyProvider {
    /// Listens on a free loopback port and passes requests to `upstream_port`.
    pub async fn start(upstream_port: u16) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let fault = Arc::new(AtomicU8::new(ProviderFault::None as u8));
        let served: Arc<[AtomicU64; 5]> = Arc::new(Default::default());
        let (mode, counts) = (fault.clone(), served.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (mode, counts) = (mode.clone(), counts.clone());
                tokio::spawn(async move {
                    let _ = serve(client, upstream_port, &mode, &counts).await;
                });
            }
        });
        Ok(FaultyProvider {
            port,
            fault,
            served,
            task,
        })
    }

    /// The OpenAI-compatible base URL to register.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    pub fn set(&self, fault: ProviderFault) {
        self.fault.store(fault as u8, Ordering::SeqCst);
    }

    /// Requests that got `fault` so far.
    pub fn served(&self, fault: ProviderFault) -> u64 {
        self.served[fault as usize].load(Ordering::SeqCst)
    }
}

impl Drop for FaultyProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn canned(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

async fn serve(
    mut client: TcpStream,
    upstream_port: u16,
    mode: &AtomicU8,
    counts: &[AtomicU64; 5],
) -> anyhow::Result<()> {
    // Read one request: the head, then Content-Length bytes of body.
    let mut request = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = client.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "client closed before a full request head");
        request.extend_from_slice(&chunk[..n]);
        if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < head_end + length {
        let n = client.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "client closed before a full request body");
        request.extend_from_slice(&chunk[..n]);
    }

    let fault = FAULTS[usize::from(mode.load(Ordering::SeqCst)).min(FAULTS.len() - 1)];
    counts[fault as usize].fetch_add(1, Ordering::SeqCst);
    match fault {
        ProviderFault::ServerError => {
            let body = r#"{"error":{"code":500,"message":"injected fault","type":"server_error"}}"#;
            client
                .write_all(canned("500 Internal Server Error", "application/json", body).as_bytes())
                .await?;
        }
        ProviderFault::Garbage => {
            client
                .write_all(
                    canned("200 OK", "application/json", "\u{1}{\"choices\": [garbage").as_bytes(),
                )
                .await?;
        }
        ProviderFault::InflatedUsage => {
            let body = r#"{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1000000,"completion_tokens":1000000,"total_tokens":2000000}}"#;
            client
                .write_all(canned("200 OK", "application/json", body).as_bytes())
                .await?;
        }
        ProviderFault::Hang => {
            // Hold the connection open, silent, until the caller gives up.
            let mut sink = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(600), client.read(&mut sink)).await;
        }
        ProviderFault::None => {
            // Forwarded with `Connection: close`, so the upstream's answer ends with EOF
            // and the caller does not reuse the connection.
            let mut forwarded = String::new();
            for line in head.split("\r\n").filter(|l| !l.is_empty()) {
                let is_connection = line
                    .split_once(':')
                    .is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case("connection"));
                if !is_connection {
                    forwarded.push_str(line);
                    forwarded.push_str("\r\n");
                }
            }
            forwarded.push_str("Connection: close\r\n\r\n");
            let mut upstream = TcpStream::connect(("127.0.0.1", upstream_port)).await?;
            upstream.write_all(forwarded.as_bytes()).await?;
            upstream.write_all(&request[head_end..]).await?;
            tokio::io::copy(&mut upstream, &mut client).await?;
        }
    }
    client.shutdown().await?;
    Ok(())
}
