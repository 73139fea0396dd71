//! Scoring, checkpointing and verifying an epoch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use serde::{Deserialize, Serialize};

use chorus_chain::ChainClient;
use chorus_chain::contracts::PoiDistributor;
use chorus_chain::merkle::{Claim, ClaimTree};
use chorus_runtime::kafka::{KafkaArgs, OutputRecord, TransactionalWriter, inspect};
use chorus_schemas::{AnyEvent, Envelope, PoiCheckpoint, PoiScore, Topic};

use crate::archive::ArchiveWriter;
use crate::config::ScoringConfig;
use crate::engine::{Contribution, EngineConfig, contributions_of};
use crate::payout::{Payout, cumulative, split};
use crate::source::{Manifest, plan_sources, read_sources};

const SOURCE: &str = "scoring";

/// Why scoring, checkpointing or verifying failed.
#[derive(Debug, thiserror::Error)]
pub enum PoiError {
    #[error("epoch {epoch} is still open (it ends at {end_ms} ms); wait, or pass --allow-open")]
    EpochOpen { epoch: u64, end_ms: i64 },
    #[error("epoch {0} has no contributions to pay")]
    Empty(u64),
    #[error("no checkpoint recorded for epoch {0}")]
    NoCheckpoint(u64),
    #[error(
        "the scoring config differs from the one epoch {epoch} was scored with (hash {actual}, recorded {recorded})"
    )]
    ConfigMismatch {
        epoch: u64,
        actual: String,
        recorded: String,
    },
    #[error("on chain, epoch {epoch} has root {on_chain}, but the log gives {computed}")]
    RootConflict {
        epoch: u64,
        on_chain: B256,
        computed: B256,
    },
    #[error(
        "epoch {epoch}: the recorded checkpoint has root {recorded}, but recomputing the epoch from the log gives {computed}; nothing was sent"
    )]
    RootMismatch {
        epoch: u64,
        recorded: String,
        computed: String,
    },
    #[error(
        "epoch {epoch}: the recorded scores give root {from_scores}, but the recorded checkpoint says {recorded}; nothing was sent"
    )]
    ScoresMismatch {
        epoch: u64,
        recorded: String,
        from_scores: String,
    },
    #[error(
        "epoch {epoch}: the recorded checkpoint's manifest {problem}, so it was not computed from this log and config; nothing was sent"
    )]
    ManifestMismatch { epoch: u64, problem: String },
    #[error(
        "epoch {epoch} has checkpoints with different roots recorded ({roots}); nothing was sent"
    )]
    ConflictingCheckpoints { epoch: u64, roots: String },
    #[error("account {0} has no claim in this epoch")]
    NoClaim(Address),
    #[error("{0}")]
    Kafka(String),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    Chain(#[from] chorus_chain::ChainError),
    #[error("reading the distributor: {0}")]
    ChainRead(String),
    #[error("merkle: {0}")]
    Merkle(#[from] chorus_chain::merkle::MerkleError),
}

/// A computed epoch.
#[derive(Debug, Clone)]
pub struct EpochResult {
    pub manifest: Manifest,
    pub contributions: Vec<Contribution>,
    pub payouts: Vec<Payout>,
    pub excluded: Vec<(String, String)>,
    pub undistributed: U256,
    pub cumulative: BTreeMap<Address, U256>,
    pub tree: ClaimTree,
    pub events_read: u64,
    pub seconds_reading: f64,
    pub seconds_query: f64,
}

impl EpochResult {
    pub fn root(&self) -> B256 {
        self.tree.root()
    }

    pub fn cumulative_total(&self) -> U256 {
        self.cumulative.values().copied().sum()
    }
}

/// Where the scorer keeps its per-epoch working files.
fn epoch_dir(work_dir: &Path, epoch: u64) -> PathBuf {
    work_dir.join(format!("epoch-{epoch}"))
}

/// Computes an epoch from the manifest's exact input.
pub async fn compute(
    kafka: &KafkaArgs,
    config: &ScoringConfig,
    manifest: Manifest,
    previous: &BTreeMap<Address, U256>,
    work_dir: &Path,
    engine: &EngineConfig,
) -> Result<EpochResult, PoiError> {
    let archive_dir = epoch_dir(work_dir, manifest.epoch).join("archive");
    let started = Instant::now();
    let kafka_for_read = kafka.clone();
    let sources = manifest.sources.clone();
    let manifest_records = manifest.records();
    let dir = archive_dir.clone();
    let (stats, rows) = tokio::task::spawn_blocking(move || -> Result<_, PoiError> {
        let expected = u64::try_from(manifest_records).unwrap_or(0);
        let mut writer = ArchiveWriter::create_for(&dir, expected)?;
        let stats = read_sources(&kafka_for_read, &sources, |event| {
            writer.add(&event).map_err(|e| e.to_string())
        })?;
        let rows = writer.finish()?;
        Ok((stats, rows))
    })
    .await
    .map_err(|e| PoiError::Kafka(format!("archive task: {e}")))??;
    let seconds_reading = started.elapsed().as_secs_f64();
    tracing::info!(
        epoch = manifest.epoch,
        records = stats.records,
        undecodable = stats.undecodable,
        ?rows,
        "epoch archived"
    );

    let started = Instant::now();
    let contributions = contributions_of(&archive_dir, config, engine).await?;
    let seconds_query = started.elapsed().as_secs_f64();
    let Claims {
        split,
        cumulative,
        tree,
    } = claims_of(&contributions, config, previous, manifest.epoch)?;
    Ok(EpochResult {
        manifest,
        contributions,
        payouts: split.payouts,
        excluded: split.excluded,
        undistributed: split.undistributed,
        cumulative,
        tree,
        events_read: stats.records,
        seconds_reading,
        seconds_query,
    })
}

/// An epoch's payouts and the cumulative claim tree they give.
#[derive(Debug)]
pub struct Claims {
    pub split: crate::payout::Split,
    pub cumulative: BTreeMap<Address, U256>,
    pub tree: ClaimTree,
}

/// Splits the pool of `epoch` over its contributions and builds the claim tree on top of
/// the `previous` cumulative amounts: what a root is computed from, whichever engine
/// gave the contributions.
pub fn claims_of(
    contributions: &[Contribution],
    config: &ScoringConfig,
    previous: &BTreeMap<Address, U256>,
    epoch: u64,
) -> Result<Claims, PoiError> {
    let split = split(contributions, config);
    let cumulative = cumulative(previous, &split.payouts);
    if cumulative.is_empty() {
        return Err(PoiError::Empty(epoch));
    }
    let claims: Vec<Claim> = cumulative
        .iter()
        .map(|(account, amount)| Claim {
            account: *account,
            cumulative_amount: *amount,
        })
        .collect();
    let tree = ClaimTree::build(&claims)?;
    Ok(Claims {
        split,
        cumulative,
        tree,
    })
}

/// The recorded PoI state: checkpoints and scores per epoch, from the log.
#[derive(Debug, Default)]
pub struct Recorded {
    /// The first checkpoint record per epoch (it carries the manifest) and the tx hash
    /// if a later record added one.
    pub checkpoints: BTreeMap<u64, (PoiCheckpoint, Option<String>)>,
    /// Every root recorded per epoch (one, unless someone wrote a second checkpoint).
    pub roots: BTreeMap<u64, std::collections::BTreeSet<String>>,
    /// (epoch, account, role) → amount.
    pub scores: BTreeMap<(u64, String, String), U256>,
}

impl Recorded {
    /// Reads both PoI topics.
    pub fn load(kafka: &KafkaArgs) -> Result<Self, PoiError> {
        let mut recorded = Recorded::default();
        let read = |topic: Topic| {
            inspect::read_committed(kafka, &kafka.topic(topic), &BTreeMap::new())
                .map_err(|e| PoiError::Kafka(format!("reading {}: {e}", kafka.topic(topic))))
        };
        for record in read(Topic::PoiCheckpoints)? {
            if let Ok(AnyEvent::PoiCheckpoint(e)) = AnyEvent::decode(None, &record.payload) {
                recorded
                    .roots
                    .entry(e.data.epoch)
                    .or_default()
                    .insert(e.data.merkle_root.to_ascii_lowercase());
                let entry = recorded
                    .checkpoints
                    .entry(e.data.epoch)
                    .or_insert_with(|| (e.data.clone(), None));
                if e.data.tx_hash.is_some() && entry.1.is_none() {
                    entry.1 = e.data.tx_hash.clone();
                }
            }
        }
        for record in read(Topic::PoiScores)? {
            if let Ok(AnyEvent::PoiScore(e)) = AnyEvent::decode(None, &record.payload) {
                let role = serde_json::to_value(e.data.role)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let amount = U256::from_str_radix(&e.data.amount_wei, 10).unwrap_or_default();
                recorded
                    .scores
                    .entry((e.data.epoch, e.data.account.to_ascii_lowercase(), role))
                    .or_insert(amount);
            }
        }
        Ok(recorded)
    }

    /// Cumulative amounts over the checkpointed epochs before `epoch`.
    pub fn cumulative_before(&self, epoch: u64) -> BTreeMap<Address, U256> {
        let mut total: BTreeMap<Address, U256> = BTreeMap::new();
        for ((e, account, _), amount) in &self.scores {
            if *e < epoch
                && self.checkpoints.contains_key(e)
                && let Ok(address) = account.parse::<Address>()
            {
                *total.entry(address).or_default() += *amount;
            }
        }
        total
    }

    /// Checks what an epoch's payout builds on, for every checkpointed epoch up to
    /// `through`: one root per epoch, and the recorded scores rebuild that root (so no
    /// score was added, changed or dropped after the checkpoint). Scores of epochs with
    /// no checkpoint count for nothing and are not checked.
    pub fn check_consistent(&self, through: u64) -> Result<(), PoiError> {
        for (&epoch, (checkpoint, _)) in self.checkpoints.range(..=through) {
            if let Some(roots) = self.roots.get(&epoch).filter(|r| r.len() > 1) {
                return Err(PoiError::ConflictingCheckpoints {
                    epoch,
                    roots: roots.iter().cloned().collect::<Vec<_>>().join(", "),
                });
            }
            let claims: Vec<Claim> = self
                .cumulative_before(epoch + 1)
                .into_iter()
                .map(|(account, cumulative_amount)| Claim {
                    account,
                    cumulative_amount,
                })
                .collect();
            let from_scores = ClaimTree::build(&claims)
                .map(|tree| format!("{:#x}", tree.root()))
                .unwrap_or_else(|e| format!("none ({e})"));
            if !from_scores.eq_ignore_ascii_case(&checkpoint.merkle_root) {
                return Err(PoiError::ScoresMismatch {
                    epoch,
                    recorded: checkpoint.merkle_root.clone(),
                    from_scores,
                });
            }
        }
        Ok(())
    }

    /// The manifest recorded for `epoch`.
    pub fn manifest(&self, epoch: u64) -> Option<Manifest> {
        self.checkpoints
            .get(&epoch)
            .and_then(|(c, _)| c.manifest_json.as_deref())
            .and_then(|m| serde_json::from_str(m).ok())
    }
}

/// Options of `chorus score`.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    pub epoch: u64,
    pub allow_open: bool,
    pub work_dir: PathBuf,
    pub engine: EngineConfig,
    /// Names the scorer's Kafka transactional id.
    pub scorer_name: String,
    pub chain_id: u64,
    pub distributor: Option<Address>,
}

/// What `chorus score` did.
#[derive(Debug, Clone)]
pub struct ScoreOutcome {
    /// This run's computation (a recorded epoch is recomputed too).
    pub result: EpochResult,
    pub root: B256,
    pub manifest_hash: B256,
    pub already_recorded: bool,
    pub tx_hash: Option<String>,
    pub already_on_chain: bool,
}

fn output<T: chorus_schemas::EventData>(
    kafka: &KafkaArgs,
    event: &Envelope<T>,
) -> Result<OutputRecord, PoiError> {
    OutputRecord::event(&kafka.topic_prefix, event)
        .map_err(|e| PoiError::Kafka(format!("encoding: {e}")))
}

/// Counts epochs `chorus score` refused to checkpoint because what was recorded
/// disagrees with its own computation (a forged or corrupted checkpoint or score).
pub static CHECKPOINT_REFUSALS: std::sync::LazyLock<prometheus::IntCounterVec> =
    std::sync::LazyLock::new(|| {
        chorus_runtime::metrics::counter(
            "chorus_poi_checkpoint_refusals_total",
            "Epochs not checkpointed because the recorded checkpoint or scores disagree with the recomputation",
            &["reason"],
        )
    });

/// Creates the scorer's metric series at zero, so a scrape sees them before the first
/// refusal.
pub fn register_metrics() {
    for reason in REFUSAL_REASONS {
        CHECKPOINT_REFUSALS.with_label_values(&[reason]);
    }
}

const REFUSAL_REASONS: [&str; 4] = [
    "root_mismatch",
    "scores_mismatch",
    "manifest_mismatch",
    "conflicting_checkpoints",
];

fn refuse(error: PoiError) -> PoiError {
    let reason = match &error {
        PoiError::RootMismatch { .. } => REFUSAL_REASONS[0],
        PoiError::ScoresMismatch { .. } => REFUSAL_REASONS[1],
        PoiError::ManifestMismatch { .. } => REFUSAL_REASONS[2],
        PoiError::ConflictingCheckpoints { .. } => REFUSAL_REASONS[3],
        _ => "other",
    };
    CHECKPOINT_REFUSALS.with_label_values(&[reason]).inc();
    tracing::error!(error = %error, "refusing to checkpoint");
    error
}

/// Scores an epoch and, unless it is recorded already, records it (scores + checkpoint
/// event, one Kafka transaction); then checkpoints it on chain when a client is given.
///
/// The scorer signs only what it computed: the epoch is always recomputed from the log,
/// and a recorded checkpoint (or recorded scores) that disagree with the recomputation
/// stop it with an error naming the epoch and both roots; nothing is sent.
pub async fn score_epoch(
    kafka: &KafkaArgs,
    config: &ScoringConfig,
    options: &ScoreOptions,
    chain: Option<&ChainClient>,
) -> Result<ScoreOutcome, PoiError> {
    let recorded = chorus_runtime::kafka::blocking(|| Recorded::load(kafka))?;
    let epoch = options.epoch;
    recorded.check_consistent(epoch).map_err(refuse)?;
    let writer = chorus_runtime::kafka::blocking(|| {
        TransactionalWriter::new(
            kafka,
            &format!(
                "{}-{}",
                chorus_runtime::kafka::Principal::Scorer.id_prefix(&kafka.topic_prefix),
                options.scorer_name
            ),
        )
    })
    .map_err(|e| PoiError::Kafka(e.to_string()))?;
    let (start, end) = config.window(epoch);
    let recorded_checkpoint = recorded.checkpoints.get(&epoch).map(|(c, _)| c.clone());
    let recorded_manifest = recorded.manifest(epoch);
    if recorded_checkpoint.is_some() && recorded_manifest.is_none() {
        return Err(refuse(PoiError::ManifestMismatch {
            epoch,
            problem: "is missing or unreadable".into(),
        }));
    }
    // The window: the config's, up to now for an open epoch; a recorded epoch keeps the
    // end it was scored with, which must lie inside the config's window.
    let window_end = match &recorded_manifest {
        Some(m) => {
            if m.window_start_ms != start || m.window_end_ms > end || m.window_end_ms < start {
                return Err(refuse(PoiError::ManifestMismatch {
                    epoch,
                    problem: format!(
                        "covers {}..{} ms, outside the epoch's window {start}..{end} ms",
                        m.window_start_ms, m.window_end_ms
                    ),
                }));
            }
            m.window_end_ms
        }
        None => {
            let now = chrono::Utc::now().timestamp_millis();
            if end > now && !options.allow_open {
                return Err(PoiError::EpochOpen { epoch, end_ms: end });
            }
            end.min(now)
        }
    };
    let plan_kafka = kafka.clone();
    let lookback =
        i64::try_from(config.epoch.length_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    let sources =
        tokio::task::spawn_blocking(move || plan_sources(&plan_kafka, start, window_end, lookback))
            .await
            .map_err(|e| PoiError::Kafka(e.to_string()))?
            .map_err(|e| PoiError::Kafka(format!("planning offsets: {e}")))?;
    let manifest = Manifest {
        manifest_version: 1,
        epoch,
        window_start_ms: start,
        window_end_ms: window_end,
        config_version: config.version.clone(),
        config_hash: format!("{:#x}", config.hash()),
        sources,
    };
    if let Some(m) = &recorded_manifest
        && *m != manifest
    {
        return Err(refuse(PoiError::ManifestMismatch {
            epoch,
            problem: format!(
                "(hash {:#x}) differs from the one planned here (hash {:#x}: config {}, {} offset ranges)",
                m.hash(),
                manifest.hash(),
                manifest.config_hash,
                manifest.sources.len()
            ),
        }));
    }
    let previous = recorded.cumulative_before(epoch);
    let result = compute(
        kafka,
        config,
        manifest,
        &previous,
        &options.work_dir,
        &options.engine,
    )
    .await?;
    let computed_root = format!("{:#x}", result.root());
    let (checkpoint, already_recorded) = match recorded_checkpoint {
        Some(checkpoint) => {
            if !checkpoint.merkle_root.eq_ignore_ascii_case(&computed_root)
                || checkpoint.manifest_hash != format!("{:#x}", result.manifest.hash())
            {
                return Err(refuse(PoiError::RootMismatch {
                    epoch,
                    recorded: checkpoint.merkle_root.clone(),
                    computed: computed_root,
                }));
            }
            tracing::info!(epoch, root = %checkpoint.merkle_root, "epoch already recorded; the recomputation agrees");
            (checkpoint, true)
        }
        None => {
            let checkpoint = PoiCheckpoint {
                epoch,
                merkle_root: computed_root,
                manifest_hash: format!("{:#x}", result.manifest.hash()),
                config_hash: result.manifest.config_hash.clone(),
                total_amount_wei: result.cumulative_total().to_string(),
                accounts: result.cumulative.len() as u32,
                chain_id: options.chain_id,
                distributor: options
                    .distributor
                    .map(|d| format!("{d:#x}"))
                    .unwrap_or_default(),
                tx_hash: None,
                manifest_json: Some(serde_json::to_string(&result.manifest).unwrap_or_default()),
            };
            let mut records = Vec::with_capacity(result.payouts.len() + 1);
            for payout in &result.payouts {
                records.push(output(
                    kafka,
                    &Envelope::new(
                        SOURCE,
                        PoiScore {
                            epoch,
                            account: format!("{:#x}", payout.account),
                            role: payout.role,
                            points: payout.points,
                            items: payout.items,
                            amount_wei: payout.amount.to_string(),
                        },
                    ),
                )?);
            }
            records.push(output(kafka, &Envelope::new(SOURCE, checkpoint.clone()))?);
            writer
                .commit(&records)
                .await
                .map_err(|e| PoiError::Kafka(e.to_string()))?;
            write_claims_file(&options.work_dir, epoch, &result);
            (checkpoint, false)
        }
    };
    // What goes on chain is this run's computation, never a recorded value.
    let total = result.cumulative_total();
    let (root, manifest_hash) = (result.root(), result.manifest.hash());
    let mut outcome = ScoreOutcome {
        result,
        root,
        manifest_hash,
        already_recorded,
        tx_hash: recorded
            .checkpoints
            .get(&epoch)
            .and_then(|(_, tx)| tx.clone()),
        already_on_chain: false,
    };
    let (Some(chain), Some(distributor)) = (chain, options.distributor) else {
        return Ok(outcome);
    };
    let (tx_hash, already) =
        submit_root(chain, distributor, epoch, root, manifest_hash, total).await?;
    outcome.already_on_chain = already;
    if outcome.tx_hash.as_deref() != Some(tx_hash.as_str()) {
        let mut recorded_checkpoint = checkpoint.clone();
        recorded_checkpoint.tx_hash = Some(tx_hash.clone());
        recorded_checkpoint.manifest_json = None;
        let record = output(kafka, &Envelope::new(SOURCE, recorded_checkpoint))?;
        writer
            .commit(&[record])
            .await
            .map_err(|e| PoiError::Kafka(e.to_string()))?;
    }
    outcome.tx_hash = Some(tx_hash);
    Ok(outcome)
}

/// Puts the root on chain unless it is there already (checks first; a crash between
/// sending and recording is repaired by finding the `Checkpointed` log). Returns the
/// transaction hash and whether it was already on chain.
pub async fn submit_root(
    chain: &ChainClient,
    distributor: Address,
    epoch: u64,
    root: B256,
    manifest_hash: B256,
    cumulative_total: U256,
) -> Result<(String, bool), PoiError> {
    let contract = PoiDistributor::new(distributor, chain.provider());
    let on_chain = contract
        .rootOf(epoch)
        .call()
        .await
        .map_err(|e| PoiError::ChainRead(e.to_string()))?;
    if on_chain == root {
        let tx = checkpoint_tx(chain, distributor, epoch).await?;
        tracing::info!(epoch, tx = %tx, "root already on chain; not sending again");
        return Ok((tx, true));
    }
    if !on_chain.is_zero() {
        return Err(PoiError::RootConflict {
            epoch,
            on_chain,
            computed: root,
        });
    }
    let receipt = chain
        .transact(
            &format!("checkpoint epoch {epoch}"),
            distributor,
            &PoiDistributor::checkpointCall {
                epoch,
                root,
                manifestHash: manifest_hash,
                cumulativeTotal: cumulative_total,
            },
        )
        .await?;
    Ok((format!("{:#x}", receipt.transaction_hash), false))
}

/// Finds the transaction that checkpointed `epoch`, looking back a bounded number of
/// blocks (public BSC endpoints refuse wide log queries). Empty when it is older.
async fn checkpoint_tx(
    chain: &ChainClient,
    distributor: Address,
    epoch: u64,
) -> Result<String, PoiError> {
    const LOOKBACK_BLOCKS: u64 = 5_000;
    let head = chain
        .provider()
        .get_block_number()
        .await
        .map_err(|e| PoiError::ChainRead(e.to_string()))?;
    let filter = Filter::new()
        .address(distributor)
        .event_signature(PoiDistributor::Checkpointed::SIGNATURE_HASH)
        .topic1(B256::from(U256::from(epoch)))
        .from_block(head.saturating_sub(LOOKBACK_BLOCKS))
        .to_block(head);
    let logs = chain
        .provider()
        .get_logs(&filter)
        .await
        .map_err(|e| PoiError::ChainRead(e.to_string()))?;
    Ok(logs
        .first()
        .and_then(|l| l.transaction_hash)
        .map(|h| format!("{h:#x}"))
        .unwrap_or_default())
}

fn write_claims_file(work_dir: &Path, epoch: u64, result: &EpochResult) {
    #[derive(Serialize)]
    struct ClaimOut {
        account: String,
        cumulative_amount: String,
        proof: Vec<String>,
    }
    let claims: Vec<ClaimOut> = result
        .tree
        .claims()
        .filter_map(|c| result.tree.proof(c.account))
        .map(|(c, proof)| ClaimOut {
            account: format!("{:#x}", c.account),
            cumulative_amount: c.cumulative_amount.to_string(),
            proof: proof.iter().map(|p| format!("{p:#x}")).collect(),
        })
        .collect();
    let dir = epoch_dir(work_dir, epoch);
    let _ = std::fs::create_dir_all(&dir);
    let body = serde_json::json!({
        "epoch": epoch,
        "root": format!("{:#x}", result.root()),
        "manifest": result.manifest,
        "claims": claims,
    });
    let _ = std::fs::write(
        dir.join("claims.json"),
        serde_json::to_vec_pretty(&body).unwrap_or_default(),
    );
}

/// What `chorus verify` found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verification {
    pub epoch: u64,
    pub computed_root: String,
    pub recorded_root: String,
    /// The recorded checkpoint's manifest hash (what the chain's must be).
    #[serde(default)]
    pub recorded_manifest_hash: String,
    pub on_chain_root: Option<String>,
    pub events_replayed: u64,
    pub ok: bool,
    pub problems: Vec<String>,
}

/// Replays the recorded manifest with `config`, recomputes the root and compares it with
/// the recorded and the on-chain root.
pub async fn verify_epoch(
    kafka: &KafkaArgs,
    config: &ScoringConfig,
    epoch: u64,
    work_dir: &Path,
    engine: &EngineConfig,
    chain: Option<(&DynProvider, Address)>,
) -> Result<Verification, PoiError> {
    let recorded = chorus_runtime::kafka::blocking(|| Recorded::load(kafka))?;
    let (checkpoint, _) = recorded
        .checkpoints
        .get(&epoch)
        .ok_or(PoiError::NoCheckpoint(epoch))?;
    let manifest = recorded
        .manifest(epoch)
        .ok_or(PoiError::NoCheckpoint(epoch))?;
    let actual = format!("{:#x}", config.hash());
    if manifest.config_hash != actual {
        return Err(PoiError::ConfigMismatch {
            epoch,
            actual,
            recorded: manifest.config_hash,
        });
    }
    let previous = recorded.cumulative_before(epoch);
    let verify_dir = work_dir.join("verify");
    let mut problems = Vec::new();
    let computed = match compute(
        kafka,
        config,
        manifest.clone(),
        &previous,
        &verify_dir,
        engine,
    )
    .await
    {
        Ok(result) => Some(result),
        Err(PoiError::Empty(_)) => {
            problems.push("the replayed log has no contributions".to_string());
            None
        }
        Err(e) => return Err(e),
    };
    let computed_root = computed
        .as_ref()
        .map(|r| format!("{:#x}", r.root()))
        .unwrap_or_default();
    if format!("{:#x}", manifest.hash()) != checkpoint.manifest_hash {
        problems.push("the recorded manifest does not match its recorded hash".into());
    }
    if computed_root != checkpoint.merkle_root {
        problems.push(format!(
            "replaying the log gives root {computed_root}, the recorded checkpoint says {}",
            checkpoint.merkle_root
        ));
    }
    let mut on_chain_root = None;
    if let Some((provider, distributor)) = chain {
        let root = PoiDistributor::new(distributor, provider)
            .rootOf(epoch)
            .call()
            .await
            .map_err(|e| PoiError::ChainRead(e.to_string()))?;
        let root = format!("{root:#x}");
        if root != computed_root {
            problems.push(format!(
                "the distributor holds root {root}, the log gives {computed_root}"
            ));
        }
        on_chain_root = Some(root);
    }
    Ok(Verification {
        epoch,
        computed_root,
        recorded_root: checkpoint.merkle_root.clone(),
        recorded_manifest_hash: checkpoint.manifest_hash.clone(),
        on_chain_root,
        events_replayed: computed.as_ref().map(|r| r.events_read).unwrap_or_default(),
        ok: problems.is_empty(),
        problems,
    })
}

/// A claim with its proof, as `chorus proof` prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimProof {
    pub epoch: u64,
    pub account: String,
    pub cumulative_amount: String,
    pub proof: Vec<String>,
    pub root: String,
}

/// The claim of `account` at `epoch`, rebuilt from the recorded scores.
pub fn claim_proof(
    kafka: &KafkaArgs,
    epoch: u64,
    account: Address,
) -> Result<ClaimProof, PoiError> {
    let recorded = Recorded::load(kafka)?;
    let (checkpoint, _) = recorded
        .checkpoints
        .get(&epoch)
        .ok_or(PoiError::NoCheckpoint(epoch))?;
    let totals = recorded.cumulative_before(epoch + 1);
    let claims: Vec<Claim> = totals
        .iter()
        .map(|(a, amount)| Claim {
            account: *a,
            cumulative_amount: *amount,
        })
        .collect();
    let tree = ClaimTree::build(&claims)?;
    if format!("{:#x}", tree.root()) != checkpoint.merkle_root {
        return Err(PoiError::Kafka(format!(
            "recorded scores give root {:#x}, the checkpoint says {}",
            tree.root(),
            checkpoint.merkle_root
        )));
    }
    let (claim, proof) = tree.proof(account).ok_or(PoiError::NoClaim(account))?;
    Ok(ClaimProof {
        epoch,
        account: format!("{account:#x}"),
        cumulative_amount: claim.cumulative_amount.to_string(),
        proof: proof.iter().map(|p| format!("{p:#x}")).collect(),
        root: checkpoint.merkle_root.clone(),
    })
}
