//! `chorus chain …`: deploy the contracts; shared chain flags.

use std::path::PathBuf;

use alloy::primitives::{Address, U256};
use anyhow::Context;
use clap::{Args, Subcommand};

use chorus_chain::{ChainClient, DeployPlan, anvil_dev_signer, deploy_all, load_signer};

/// How to reach the chain and sign on it.
#[derive(Debug, Clone, Args)]
pub struct ChainArgs {
    /// JSON-RPC endpoints of the chain, in failover order (comma-separated). URLs may
    /// carry API keys; only scheme://host:port is ever logged.
    #[arg(
        long = "rpc-url",
        env = "CHORUS_RPC_URLS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8545"
    )]
    pub rpc_urls: Vec<String>,
    /// Chain id (56 = BNB Smart Chain).
    #[arg(long, env = "CHORUS_CHAIN_ID", default_value_t = 56)]
    pub chain_id: u64,
    /// Deployment file with the contract addresses (written by `chorus chain deploy`).
    #[arg(
        long,
        env = "CHORUS_DEPLOYMENT",
        default_value = "target/chorus/deployment.json"
    )]
    pub deployment: PathBuf,
}

/// Where the signing key comes from: the environment or a file, never a flag value.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// File holding the hex private key (mode 600). The environment variable
    /// CHORUS_CHAIN_KEY takes precedence; the key is never logged.
    #[arg(long, env = "CHORUS_CHAIN_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Sign with anvil's public dev key. Refused unless the node says it is anvil
    /// (web3_clientVersion); never used as a fallback for a missing key.
    #[arg(long, conflicts_with = "key_file")]
    pub dev_key: bool,
}

impl KeyArgs {
    /// A signing client for the first RPC endpoint. Fails closed: no key (or an unreadable
    /// key file, or one readable by others) is an error, and the dev key only signs for
    /// anvil.
    pub async fn client(&self, chain: &ChainArgs) -> anyhow::Result<ChainClient> {
        let url = chain
            .rpc_urls
            .first()
            .context("at least one --rpc-url is needed")?;
        let signer = if self.dev_key {
            let signer = anvil_dev_signer(url).await?;
            tracing::warn!("signing with anvil's public dev key (--dev-key)");
            signer
        } else {
            let env_key = std::env::var("CHORUS_CHAIN_KEY").ok();
            load_signer(env_key.as_deref(), self.key_file.as_deref())?
        };
        Ok(ChainClient::new(url, signer, chain.chain_id)?)
    }
}

#[derive(Debug, Args)]
pub struct ChainCommandArgs {
    #[command(subcommand)]
    command: ChainCommand,
}

#[derive(Debug, Subcommand)]
enum ChainCommand {
    /// Deploy the token, the registries, the standing bond and the PoI distributor; write
    /// the deployment file.
    Deploy(DeployArgs),
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    chain: ChainArgs,
    #[command(flatten)]
    key: KeyArgs,
    /// Account allowed to post PoI checkpoints (default: the deployer).
    #[arg(long, env = "CHORUS_CHECKPOINTER")]
    checkpointer: Option<Address>,
    /// Minimum provider stake, in whole tokens.
    #[arg(long, default_value_t = 100)]
    min_stake_tokens: u64,
    /// Account allowed to revoke pending PoI roots and pause claims (the watcher's key;
    /// default: the deployer).
    #[arg(long, env = "CHORUS_GUARDIAN")]
    guardian: Option<Address>,
    /// Seconds a posted root stays pending (revocable) before claims pay. Keep it longer
    /// than the indexer's confirmations plus the time to recompute an epoch.
    #[arg(long, default_value_t = 86_400)]
    challenge_window_seconds: u64,
    /// The most one epoch may add to the distributor's cumulative total, in whole tokens.
    #[arg(long, default_value_t = 1_000_000)]
    epoch_budget_tokens: u64,
    /// The first epoch the distributor pays (epochs are then posted in sequence).
    #[arg(long, default_value_t = 0)]
    first_epoch: u64,
    /// The token's supply cap, in whole tokens.
    #[arg(long, default_value_t = 1_000_000_000)]
    token_cap_tokens: u64,
    /// Seconds a change of the distributor's admin waits.
    #[arg(long, default_value_t = 172_800)]
    admin_delay_seconds: u64,
    /// Also deploy the log fixture (tests and benchmarks only).
    #[arg(long)]
    with_log_fixture: bool,
}

pub async fn run(args: ChainCommandArgs) -> anyhow::Result<()> {
    match args.command {
        ChainCommand::Deploy(args) => {
            let client = args.key.client(&args.chain).await?;
            let chr = U256::from(10u64).pow(U256::from(18));
            let plan = DeployPlan {
                chain_id: args.chain.chain_id,
                checkpointer: args.checkpointer.unwrap_or(client.address()),
                min_stake: U256::from(args.min_stake_tokens) * chr,
                guardian: args.guardian.unwrap_or(client.address()),
                challenge_window_seconds: args.challenge_window_seconds,
                epoch_budget: U256::from(args.epoch_budget_tokens) * chr,
                first_epoch: args.first_epoch,
                token_cap: U256::from(args.token_cap_tokens) * chr,
                admin_delay_seconds: args.admin_delay_seconds,
                with_log_fixture: args.with_log_fixture,
            };
            let deployment = deploy_all(&client, &plan).await?;
            deployment.save(&args.chain.deployment)?;
            println!("{}", serde_json::to_string_pretty(&deployment)?);
            eprintln!("deployment written to {}", args.chain.deployment.display());
            Ok(())
        }
    }
}
