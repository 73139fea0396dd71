//! `chorus score`, `chorus verify`, `chorus proof`: Proof of Intelligence.

use std::path::PathBuf;

use alloy::primitives::Address;
use anyhow::Context;
use clap::Args;

use chorus_chain::Deployment;
use chorus_runtime::kafka::KafkaArgs;
use chorus_scoring::{
    EngineConfig, ScoreOptions, ScoringConfig, claim_proof, score_epoch, verify_epoch,
};

use super::chain::{ChainArgs, KeyArgs};

/// Flags shared by the PoI commands.
#[derive(Debug, Clone, Args)]
pub struct PoiArgs {
    /// The versioned scoring config (weights, caps, prices, pool, epoch length).
    #[arg(long = "scoring-config", env = "CHORUS_SCORING_CONFIG", default_value_os_t = super::repo_path("infra/poi/scoring-v3.toml"))]
    pub scoring_config: PathBuf,
    /// Working directory for epoch archives and claim files.
    #[arg(long, env = "CHORUS_POI_WORK_DIR", default_value = "target/chorus/poi")]
    pub work_dir: PathBuf,
    /// Memory pool of the scoring query in MiB: sorts and aggregations spill to disk
    /// beyond it; the query fails (it never swaps) if the operators that cannot spill
    /// need more. A 10-million-event epoch needs about 2 GiB.
    #[arg(long, env = "CHORUS_POI_MEMORY_MB", default_value_t = 2048)]
    pub memory_mb: usize,
    /// Archive buckets scored at the same time, each as a one-partition query sharing
    /// the memory pool (0 = the number of cores).
    #[arg(long, env = "CHORUS_POI_BUCKET_CONCURRENCY", default_value_t = 0)]
    pub bucket_concurrency: usize,
    /// Partitions of the query plan (0 = automatic): in process, of each bucket's query;
    /// on Ballista, the shuffle partitions of the joins and aggregations (more of them,
    /// less memory per executor task).
    #[arg(long, env = "CHORUS_POI_PARTITIONS", default_value_t = 0)]
    pub partitions: usize,
    /// Where the contribution query runs: `in-process` (the bucketed plan, in this
    /// process) or `ballista` (the whole-archive query on the Apache DataFusion
    /// Ballista scheduler at --scheduler; needs a build with the `ballista` feature and
    /// executors that see --work-dir at the same path). Both give the same root.
    #[arg(long, env = "CHORUS_POI_ENGINE", value_enum, default_value_t = ScoringEngine::InProcess)]
    pub engine: ScoringEngine,
    /// The Ballista scheduler for --engine ballista, as df://host:port.
    #[arg(long, env = "CHORUS_BALLISTA_SCHEDULER")]
    pub scheduler: Option<String>,
}

/// Where `chorus score` and `chorus verify` run the contribution query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScoringEngine {
    InProcess,
    Ballista,
}

impl PoiArgs {
    pub fn config(&self) -> anyhow::Result<ScoringConfig> {
        ScoringConfig::load(&self.scoring_config)
            .with_context(|| format!("scoring config {}", self.scoring_config.display()))
    }

    pub fn engine(&self) -> anyhow::Result<EngineConfig> {
        let ballista_scheduler = match (self.engine, &self.scheduler) {
            (ScoringEngine::InProcess, _) => None,
            (ScoringEngine::Ballista, Some(url)) if url.starts_with("df://") => Some(url.clone()),
            (ScoringEngine::Ballista, Some(url)) => {
                anyhow::bail!("--scheduler {url}: a Ballista scheduler URL is df://host:port")
            }
            (ScoringEngine::Ballista, None) => {
                anyhow::bail!("--engine ballista needs --scheduler df://host:port")
            }
        };
        Ok(EngineConfig {
            memory_limit: self.memory_mb.max(16) * 1024 * 1024,
            bucket_concurrency: self.bucket_concurrency,
            target_partitions: self.partitions,
            ballista_scheduler,
        })
    }
}

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// The epoch to score (see the config's [epoch] for its time window).
    #[arg(long)]
    epoch: Option<u64>,
    /// Score the epoch that contains the current time, up to now.
    #[arg(long, conflicts_with = "epoch")]
    current: bool,
    /// Score an epoch whose window has not ended (its input stops at now).
    #[arg(long)]
    allow_open: bool,
    /// Do not checkpoint on chain (record in Kafka only).
    #[arg(long)]
    no_chain: bool,
    /// After the run, successful or not, write this process's metrics (Prometheus text
    /// format, e.g. chorus_poi_checkpoint_refusals_total) to this file: a batch job has
    /// no endpoint to scrape, so point node_exporter's textfile collector here.
    #[arg(long, env = "CHORUS_SCORE_METRICS_FILE")]
    metrics_file: Option<PathBuf>,
    /// Scorer name: its Kafka transactional id is <topic prefix>chorus-scorer-<name>.
    #[arg(long, env = "CHORUS_SCORER_NAME", default_value = "main")]
    name: String,
    #[command(flatten)]
    poi: PoiArgs,
    #[command(flatten)]
    chain: ChainArgs,
    #[command(flatten)]
    key: KeyArgs,
}

pub async fn score(kafka: &KafkaArgs, args: ScoreArgs) -> anyhow::Result<()> {
    chorus_scoring::epoch::register_metrics();
    let metrics_file = args.metrics_file.clone();
    let outcome = score_and_report(kafka, args).await;
    if let Some(path) = metrics_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, chorus_runtime::metrics::render())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("writing the metrics file {}", path.display()))?;
    }
    outcome
}

async fn score_and_report(kafka: &KafkaArgs, args: ScoreArgs) -> anyhow::Result<()> {
    let config = args.poi.config()?;
    let epoch = match (args.epoch, args.current) {
        (Some(epoch), _) => epoch,
        (None, true) => config.epoch_at(chrono::Utc::now().timestamp_millis()),
        (None, false) => anyhow::bail!("pass --epoch N or --current"),
    };
    let allow_open = args.allow_open || args.current;
    let (client, distributor) = if args.no_chain {
        (None, None)
    } else {
        let deployment = Deployment::load(&args.chain.deployment)?;
        (
            Some(args.key.client(&args.chain).await?),
            Some(deployment.poi_distributor),
        )
    };
    let options = ScoreOptions {
        epoch,
        allow_open,
        work_dir: args.poi.work_dir.clone(),
        engine: args.poi.engine()?,
        scorer_name: args.name.clone(),
        chain_id: args.chain.chain_id,
        distributor,
    };
    let outcome = score_epoch(kafka, &config, &options, client.as_ref()).await?;
    let result = &outcome.result;
    println!(
        "epoch {epoch}: {} events read from {} offset ranges in {:.2} s, scored in {:.2} s",
        result.events_read,
        result.manifest.sources.len(),
        result.seconds_reading,
        result.seconds_query
    );
    for payout in &result.payouts {
        println!(
            "  {:<16} {:#x}  points {:>12}  items {:>8}  {} wei",
            format!("{:?}", payout.role),
            payout.account,
            payout.points,
            payout.items,
            payout.amount
        );
    }
    if !result.excluded.is_empty() {
        println!(
            "  {} contributors without a payable address were left out",
            result.excluded.len()
        );
    }
    if outcome.already_recorded {
        println!("epoch {epoch}: already recorded; the recomputation gives the recorded root");
    }
    println!(
        "root {:#x}  manifest {:#x}",
        outcome.root, outcome.manifest_hash
    );
    match &outcome.tx_hash {
        Some(tx) if outcome.already_on_chain => println!("checkpoint already on chain in tx {tx}"),
        Some(tx) => println!("checkpoint tx {tx}"),
        None => println!("not checkpointed on chain (--no-chain)"),
    }
    if let (Some(client), Some(distributor)) = (&client, distributor) {
        let contract = chorus_chain::contracts::PoiDistributor::new(distributor, client.provider());
        if let Ok(at) = contract.claimableAt(epoch).call().await {
            println!(
                "pending: claimable from {at} (unix seconds), after the challenge window in which the guardian may revoke it"
            );
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The epoch to verify (not with --watch).
    #[arg(long, required_unless_present = "watch", conflicts_with = "watch")]
    epoch: Option<u64>,
    /// Compare with the recorded checkpoint only, not the chain.
    #[arg(long, conflicts_with = "watch")]
    no_chain: bool,
    /// Keep running: follow the distributor's posted roots through the indexer's chain
    /// events, recompute each epoch from the log as soon as its root is posted, export
    /// the outcome (chorus_poi_watch_roots_total{outcome}) and, with a guardian key,
    /// revoke a root that does not match while its challenge window is open.
    #[arg(long)]
    watch: bool,
    /// The guardian's key file (a 0x-hex private key, mode 600), else CHORUS_GUARDIAN_KEY;
    /// without either the watcher only reports.
    #[arg(long, env = "CHORUS_GUARDIAN_KEY_FILE")]
    guardian_key_file: Option<PathBuf>,
    #[command(flatten)]
    poi: PoiArgs,
    #[command(flatten)]
    chain: ChainArgs,
    #[command(flatten)]
    service: crate::ServiceArgs,
}

pub async fn verify(kafka: &KafkaArgs, args: VerifyArgs) -> anyhow::Result<()> {
    let config = args.poi.config()?;
    let Some(epoch) = args.epoch else {
        return watch(kafka, config, args).await;
    };
    let chain = if args.no_chain {
        None
    } else {
        let deployment = Deployment::load(&args.chain.deployment)?;
        let url = args.chain.rpc_urls.first().context("--rpc-url")?;
        Some((
            chorus_chain::read_only_provider(url)?,
            deployment.poi_distributor,
        ))
    };
    let verification = verify_epoch(
        kafka,
        &config,
        epoch,
        &args.poi.work_dir,
        &args.poi.engine()?,
        chain.as_ref().map(|(c, d)| (c, *d)),
    )
    .await?;
    println!("{}", serde_json::to_string_pretty(&verification)?);
    if verification.ok {
        println!(
            "verified: epoch {} root {}",
            verification.epoch, verification.computed_root
        );
        Ok(())
    } else {
        anyhow::bail!(
            "epoch {} does NOT verify: {}",
            verification.epoch,
            verification.problems.join("; ")
        )
    }
}

/// `chorus verify --watch`.
async fn watch(kafka: &KafkaArgs, config: ScoringConfig, args: VerifyArgs) -> anyhow::Result<()> {
    let deployment = Deployment::load(&args.chain.deployment)?;
    let url = args.chain.rpc_urls.first().context("--rpc-url")?;
    let env_key = std::env::var("CHORUS_GUARDIAN_KEY").ok();
    let guardian = match (env_key.as_deref(), args.guardian_key_file.as_deref()) {
        (None, None) => {
            tracing::warn!(
                "no guardian key (CHORUS_GUARDIAN_KEY or --guardian-key-file): mismatching roots are reported, not revoked"
            );
            None
        }
        (env, file) => {
            let signer = chorus_chain::load_signer(env, file)?;
            Some(chorus_chain::ChainClient::new(
                url,
                signer,
                args.chain.chain_id,
            )?)
        }
    };
    let (shutdown, readiness) = args.service.start().await?;
    chorus_scoring::watch::Watcher {
        kafka: kafka.clone(),
        config,
        work_dir: args.poi.work_dir.clone(),
        engine: args.poi.engine()?,
        reader: chorus_chain::read_only_provider(url)?,
        distributor: deployment.poi_distributor,
        guardian,
    }
    .run(shutdown, readiness)
    .await?;
    Ok(())
}

#[derive(Debug, Args)]
pub struct ProofArgs {
    #[arg(long)]
    epoch: u64,
    #[arg(long)]
    account: Address,
}

pub async fn proof(kafka: &KafkaArgs, args: ProofArgs) -> anyhow::Result<()> {
    let kafka = kafka.clone();
    let proof = tokio::task::spawn_blocking(move || claim_proof(&kafka, args.epoch, args.account))
        .await??;
    println!("{}", serde_json::to_string_pretty(&proof)?);
    Ok(())
}
