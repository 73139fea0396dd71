use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use chorus_ingest::IngestConfig;
use chorus_ingest::api::ApiSettings;
use chorus_ingest::auth::ApiKeys;
use chorus_ingest::limits::RateLimit;
use chorus_runtime::kafka::KafkaArgs;

use crate::ServiceArgs;

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    service: ServiceArgs,
    /// Address of the HTTP API.
    #[arg(long, env = "CHORUS_INGEST_LISTEN", default_value = "127.0.0.1:8088")]
    listen: SocketAddr,
    /// TOML file of API keys (`[[key]]` with `name`, `secret_keccak256`, `scopes`).
    #[arg(long, env = "CHORUS_API_KEYS_FILE")]
    api_keys_file: Option<PathBuf>,
    /// Largest request body in bytes (larger ones get 413).
    #[arg(long, env = "CHORUS_INGEST_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    max_body_bytes: usize,
    /// Longest chat message in characters.
    #[arg(long, env = "CHORUS_INGEST_MAX_MESSAGE_CHARS", default_value_t = 8000)]
    max_message_chars: usize,
    /// Signed requests must be at most this many seconds from the server's clock.
    #[arg(long, env = "CHORUS_INGEST_SIGNATURE_WINDOW_S", default_value_t = 300)]
    signature_window_seconds: i64,
    /// The chain id signatures are made for (EIP-712 domain `chainId`; BSC is 56).
    #[arg(long, env = "CHORUS_CHAIN_ID", default_value_t = 56)]
    chain_id: u64,
    /// The deployment's contract signatures are made for (EIP-712 domain
    /// `verifyingContract`: the PoI distributor's address). Without it signatures bind
    /// the chain only, and every deployment on it accepts them: set it in production.
    #[arg(long, env = "CHORUS_VERIFYING_CONTRACT")]
    verifying_contract: Option<alloy::primitives::Address>,
    /// Also accept the legacy EIP-191 text signatures (`chorus:<action>\n<JSON>`), for
    /// existing clients; replays are identified by their digest just the same.
    #[arg(long, env = "CHORUS_ACCEPT_EIP191")]
    accept_eip191: bool,
    /// How long a post waits for the log to show its author's membership (a
    /// conversation created a moment ago on another replica), in milliseconds.
    #[arg(
        long,
        env = "CHORUS_INGEST_MEMBERSHIP_WAIT_MS",
        default_value_t = 3_000
    )]
    membership_wait_ms: u64,
    /// Longest a session-key grant may run, in seconds.
    #[arg(long, env = "CHORUS_INGEST_MAX_SESSION_S", default_value_t = 7 * 86_400)]
    max_session_seconds: i64,
    /// How long a write waits on Kafka before answering 503, in milliseconds.
    #[arg(
        long,
        env = "CHORUS_INGEST_PRODUCE_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    produce_timeout_ms: u64,
    /// How long the producer lets a write wait for others to share its Kafka request,
    /// in milliseconds (librdkafka's `linger.ms`). Every request waits for its write's
    /// acknowledgement, so it pays this on each one; under load, writes share requests
    /// anyway because several are in flight.
    #[arg(long, env = "CHORUS_INGEST_PRODUCER_LINGER_MS", default_value_t = 5)]
    producer_linger_ms: u64,
    /// Requests per second per API key (0 = no limit); over it the API answers 429 with
    /// Retry-After.
    #[arg(long, env = "CHORUS_INGEST_KEY_RATE_PER_S", default_value_t = 2_000.0)]
    key_rate_per_s: f64,
    /// Requests a key may send at once before its per-second rate applies.
    #[arg(long, env = "CHORUS_INGEST_KEY_BURST", default_value_t = 4_000.0)]
    key_burst: f64,
    /// Signed writes per second per account (0 = no limit); over it, 429.
    #[arg(long, env = "CHORUS_INGEST_ACCOUNT_RATE_PER_S", default_value_t = 20.0)]
    account_rate_per_s: f64,
    /// Signed writes an account may send at once before its per-second rate applies.
    #[arg(long, env = "CHORUS_INGEST_ACCOUNT_BURST", default_value_t = 100.0)]
    account_burst: f64,
}

pub async fn run(kafka: &KafkaArgs, args: IngestArgs) -> anyhow::Result<()> {
    // Keys come from a file or the environment (CHORUS_API_KEYS=name:secret:scope+scope;...),
    // never from a flag, so they do not show in process listings.
    let mut keys = match &args.api_keys_file {
        Some(path) => ApiKeys::load_file(path).map_err(anyhow::Error::msg)?,
        None => ApiKeys::default(),
    };
    if keys.is_empty()
        && let Ok(value) = std::env::var("CHORUS_API_KEYS")
    {
        keys = ApiKeys::parse_env(&value)
            .map_err(anyhow::Error::msg)
            .context("CHORUS_API_KEYS")?;
    }
    if keys.is_empty() {
        bail!("no API keys: set CHORUS_API_KEYS or --api-keys-file (every write is authenticated)");
    }
    let (shutdown, readiness) = args.service.start().await?;
    let settings = ApiSettings {
        max_body_bytes: args.max_body_bytes,
        max_message_chars: args.max_message_chars,
        signature_window_seconds: args.signature_window_seconds,
        domain: chorus_ingest::auth::Domain {
            chain_id: args.chain_id,
            verifying_contract: args.verifying_contract.unwrap_or_else(|| {
                tracing::warn!("no --verifying-contract: signatures bind chain {} only; set it to the deployment's PoI distributor", args.chain_id);
                alloy::primitives::Address::ZERO
            }),
        },
        accept_eip191: args.accept_eip191,
        membership_wait: Duration::from_millis(args.membership_wait_ms),
        max_session_seconds: args.max_session_seconds,
        produce_timeout: Duration::from_millis(args.produce_timeout_ms),
        source: format!("ingest/{}", args.service.instance_id),
        key_rate: RateLimit {
            per_second: args.key_rate_per_s,
            burst: args.key_burst,
        },
        account_rate: RateLimit {
            per_second: args.account_rate_per_s,
            burst: args.account_burst,
        },
    };
    let config = IngestConfig {
        listen: args.listen,
        producer_linger: Duration::from_millis(args.producer_linger_ms),
        keys,
        settings,
    };
    chorus_ingest::serve(kafka, config, shutdown, readiness).await?;
    Ok(())
}
