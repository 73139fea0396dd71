//! Chain helpers: a private anvil per test (chain id 56), deployment of the Chorus
//! contracts, and a TCP relay whose death simulates an RPC endpoint going away.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use alloy::primitives::U256;
use chorus_chain::{ChainClient, DeployPlan, Deployment, deploy_all};

/// anvil's first three dev accounts (public test keys of its default mnemonic).
pub const DEV_KEY_0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
pub const DEV_KEY_1: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
pub const DEV_KEY_2: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";

/// A private anvil process, killed on drop.
pub struct Anvil {
    child: Child,
    pub port: u16,
}

impl Anvil {
    /// Starts anvil (installed by `infra/scripts/install.sh anvil`) on a free port.
    pub fn start() -> anyhow::Result<Self> {
        let bin =
            crate::chorus_home().join("npm/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
        anyhow::ensure!(
            bin.exists(),
            "anvil not installed at {} (run infra/scripts/install.sh anvil)",
            bin.display()
        );
        let port = crate::free_port();
        let child = Command::new(bin)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--chain-id",
                "56",
                "--accounts",
                "4",
                "--silent",
                "--gas-limit",
                "300000000",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let anvil = Anvil { child, port };
        crate::wait_for("anvil to listen", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })?;
        Ok(anvil)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A client signing with dev key 0.
    pub fn client(&self) -> ChainClient {
        ChainClient::new(&self.url(), DEV_KEY_0.parse().expect("dev key"), 56).expect("client")
    }

    /// Raw JSON-RPC call (anvil_* methods).
    pub async fn rpc(
        &self,
        method: &str,
        params: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        use alloy::providers::Provider;
        let client = self.client();
        let result: serde_json::Value = client
            .provider()
            .raw_request(method.to_string().into(), params)
            .await?;
        Ok(result)
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deploys the contracts (with the log fixture) and writes the deployment file under
/// `target/test-logs/`.
pub async fn deploy(client: &ChainClient, name: &str) -> anyhow::Result<(Deployment, PathBuf)> {
    let deployment = deploy_all(
        client,
        &DeployPlan {
            with_log_fixture: true,
            ..DeployPlan::local(
                56,
                client.address(),
                guardian_address(),
                CHALLENGE_WINDOW_SECONDS,
                U256::from(100u64),
            )
        },
    )
    .await?;
    let path = crate::repo_root().join(format!("target/test-logs/{name}-deployment.json"));
    deployment.save(&path)?;
    Ok((deployment, path))
}

/// The challenge window of the tests' distributors: an hour, which tests pass with
/// [`advance_time`] instead of waiting.
pub const CHALLENGE_WINDOW_SECONDS: u64 = 3_600;

/// The guardian of the tests' distributors: anvil's dev account #2 ([`DEV_KEY_2`]).
pub fn guardian_address() -> alloy::primitives::Address {
    DEV_KEY_2
        .parse::<alloy::signers::local::PrivateKeySigner>()
        .map(|s| s.address())
        .unwrap_or_default()
}

/// Moves anvil's clock `seconds` forward and mines a block (`evm_increaseTime`,
/// `evm_mine`), so a challenge window passes without waiting.
pub async fn advance_time(client: &ChainClient, seconds: u64) -> anyhow::Result<()> {
    Ok(chorus_chain::anvil_advance_time(client, seconds).await?)
}

/// A loopback TCP relay to `target_port`; `kill` closes the listener and every open
/// connection, like an RPC endpoint that dies.
pub struct Relay {
    pub port: u16,
    alive: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn start(target_port: u16) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    break;
                }
                connections.spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
            connections.abort_all();
        });
        Ok(Relay { port, alive, task })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Closes the listener and drops every relayed connection.
    pub fn kill(&self) {
        self.alive.store(false, Ordering::SeqCst);
        self.task.abort();
    }
}
