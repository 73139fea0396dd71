//! The indexing loop.
//!
//! Each block range is fetched (`eth_getLogs` plus the block headers the reorg checks
//! need), checked against the cursor, and written as `chain.log` events together with
//! the advanced cursor in one Kafka transaction. Ranges are applied strictly in block
//! order, and only a committed transaction moves the cursor.
//!
//! - **Catch-up** (every block of the range at least a reorg window below the head): up
//!   to `FETCH_DEPTH` ranges are fetched at once and applied in order as they arrive;
//!   the transaction of one range is committed while the next ones are still being
//!   fetched. Only one transaction is open at a time.
//! - **Near the head** (inside the reorg window): one range at a time, fetched, checked
//!   and committed before the next is requested.
//!
//! Both paths run the same checks (a range's first block must extend the block the
//! cursor recorded before it, the fetched headers must chain, every log must belong to
//! its block's header) and handle errors the same way: a failed fetch or commit drops
//! whatever is in flight, and the loop resumes from the last committed cursor.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant};

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, B256, keccak256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, Log};
use base64::Engine;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use prometheus::{IntCounterVec, IntGaugeVec};
use uuid::Uuid;

use chorus_chain::{ContractKind, EventDecoder, RpcFailure, RpcPool};
use chorus_runtime::Shutdown;
use chorus_runtime::kafka::{KafkaArgs, OutputRecord, TransactionError, TransactionalWriter};
use chorus_runtime::metrics::Readiness;
use chorus_schemas::{ChainLog, ChainLogRetracted, DeadLetter, Envelope, Topic};

use crate::cursor::{Cursor, EmittedLog, RecentBlock};
use crate::progress::Progress;

const SOURCE: &str = "indexer";

/// Catch-up ranges fetched ahead: at most this many ranges are requested or fetched
/// but not yet committed, besides the one whose transaction is being committed.
const FETCH_DEPTH: usize = 4;

/// A catch-up session plans new ranges for this long, then applies what is in flight
/// and returns, so the loop reads the head again (its lag metric, the progress line and
/// the end of the catch-up region follow the chain).
const CATCH_UP_SESSION: Duration = Duration::from_secs(30);

const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// When logs are emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitMode {
    /// Only once the block is `confirmations` deep.
    Confirmed,
    /// At once; a reorg retracts what it dropped.
    Eager,
}

/// What to index and how.
#[derive(Debug, Clone)]
pub struct IndexerSettings {
    /// Names the cursor and the Kafka transactional id: one running instance per name.
    pub name: String,
    pub chain_id: u64,
    pub contracts: Vec<(ContractKind, Address)>,
    /// First block to index when no cursor exists yet.
    pub start_block: u64,
    pub mode: EmitMode,
    pub confirmations: u64,
    pub initial_range: u64,
    pub max_range: u64,
    /// Recent blocks remembered for reorg detection (must exceed the deepest reorg).
    pub reorg_window: u64,
    pub poll_interval: Duration,
    /// Stop once every block up to this one is indexed (backfill jobs, tests, benches).
    pub stop_at_block: Option<u64>,
    /// Show a progress bar when stderr is a terminal.
    pub progress: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexerReport {
    pub first_block: u64,
    pub next_block: u64,
    pub logs: u64,
    pub dead_letters: u64,
    pub retracted: u64,
    pub reorgs: u64,
    pub transactions: u64,
    /// Time spent in the indexing loop (after connecting and loading the cursor).
    pub indexing_time: Duration,
}

/// Why the indexer stopped.
#[derive(Debug, thiserror::Error)]
pub enum IndexerError {
    #[error(transparent)]
    Kafka(#[from] TransactionError),
    #[error("reading the cursor topic {topic}: {reason}")]
    CursorRead { topic: String, reason: String },
    #[error(
        "the RPC endpoints serve chain id {actual}, but the indexer is configured for {expected}"
    )]
    WrongChain { expected: u64, actual: u64 },
    #[error("the stored cursor of {name:?} is for chain {stored}, not {configured}")]
    CursorChain {
        name: String,
        stored: u64,
        configured: u64,
    },
    #[error(
        "reorg deeper than the remembered window of {window} blocks below block {block}; re-index from an earlier block with a new indexer name"
    )]
    ReorgTooDeep { window: u64, block: u64 },
    #[error(transparent)]
    Rpc(#[from] RpcFailure),
    #[error("contract ABIs: {0}")]
    Abi(#[from] chorus_chain::LogDecodeError),
}

/// The deterministic id of the `chain.log` event for a log.
pub fn log_event_id(chain_id: u64, block_hash: &B256, log_index: u64) -> Uuid {
    derived_id(b"log", chain_id, block_hash, log_index)
}

fn retraction_event_id(chain_id: u64, block_hash: &B256, log_index: u64) -> Uuid {
    derived_id(b"retract", chain_id, block_hash, log_index)
}

fn derived_id(tag: &[u8], chain_id: u64, block_hash: &B256, log_index: u64) -> Uuid {
    let mut input = Vec::with_capacity(tag.len() + 48);
    input.extend_from_slice(tag);
    input.extend_from_slice(&chain_id.to_be_bytes());
    input.extend_from_slice(block_hash.as_slice());
    input.extend_from_slice(&log_index.to_be_bytes());
    let hash = keccak256(&input);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Registered once per process (several indexers in one process share the families).
static METRICS: std::sync::LazyLock<Metrics> = std::sync::LazyLock::new(Metrics::new);

struct Metrics {
    head_lag: IntGaugeVec,
    block: IntGaugeVec,
    range: IntGaugeVec,
    logs: IntCounterVec,
    reorgs: IntCounterVec,
    checkpoint_epoch: IntGaugeVec,
    checkpoint_time: IntGaugeVec,
}

impl Metrics {
    fn new() -> Self {
        use chorus_runtime::metrics::{counter, gauge};
        Metrics {
            head_lag: gauge(
                "chorus_indexer_head_lag_blocks",
                "Blocks between the chain head and the last indexed block.",
                &["indexer"],
            ),
            block: gauge(
                "chorus_indexer_block",
                "The last block indexed.",
                &["indexer"],
            ),
            range: gauge(
                "chorus_indexer_range_blocks",
                "Current eth_getLogs block range (adaptive).",
                &["indexer"],
            ),
            logs: counter(
                "chorus_indexer_logs_total",
                "Logs handled, by outcome: emitted, dead_lettered, retracted.",
                &["indexer", "outcome"],
            ),
            reorgs: counter(
                "chorus_indexer_reorgs_total",
                "Chain reorganisations detected.",
                &["indexer"],
            ),
            checkpoint_epoch: gauge(
                "chorus_poi_last_checkpoint_epoch",
                "Epoch of the latest PoI checkpoint seen on chain.",
                &["indexer"],
            ),
            checkpoint_time: gauge(
                "chorus_poi_last_checkpoint_timestamp_seconds",
                "Block time (unix seconds) of the latest PoI checkpoint seen on chain.",
                &["indexer"],
            ),
        }
    }
}

struct Header {
    hash: B256,
    parent: B256,
    timestamp: u64,
}

enum StepError {
    Shrink(RpcFailure),
    Retry(String),
    Fatal(IndexerError),
}

impl From<RpcFailure> for StepError {
    fn from(failure: RpcFailure) -> Self {
        if failure.wants_smaller_request() {
            StepError::Shrink(failure)
        } else {
            StepError::Retry(failure.to_string())
        }
    }
}

impl From<TransactionError> for StepError {
    fn from(error: TransactionError) -> Self {
        match error {
            TransactionError::Fatal { .. } => StepError::Fatal(error.into()),
            TransactionError::Aborted { .. } => StepError::Retry(error.to_string()),
        }
    }
}

/// A step that failed, with the range it was for (for the log line).
struct RangeFailure {
    from: u64,
    to: u64,
    error: StepError,
}

/// What a range fetch brought back: its logs and the headers the reorg checks need.
struct Fetched {
    from: u64,
    to: u64,
    logs: Vec<Log>,
    headers: BTreeMap<u64, Header>,
    /// How long the fetch took.
    took: Duration,
}

/// A fetched range checked against the cursor: what to do with it.
enum Step {
    /// The range does not extend the chain the cursor recorded: `suspect` (the block
    /// before the range) was replaced.
    Reorg { suspect: u64 },
    /// The range extends the cursor: commit these records.
    Commit(Prepared),
}

/// The transaction of a range, ready to commit.
struct Prepared {
    to: u64,
    /// The events and dead letters, then the cursor record.
    records: Vec<OutputRecord>,
    /// The cursor once the transaction is committed.
    next: Cursor,
    emitted: u64,
    dead: u64,
    /// (epoch, block time) of the PoI checkpoints seen.
    checkpoints: Vec<(i64, i64)>,
}

/// The adaptive range size and the retry backoff.
struct Pacing {
    range: u64,
    max_range: u64,
    backoff: Duration,
}

impl Pacing {
    fn new(initial_range: u64, max_range: u64) -> Self {
        Pacing {
            range: initial_range.max(1),
            max_range: max_range.max(1),
            backoff: INITIAL_BACKOFF,
        }
    }

    /// A range of `logs` logs was indexed in `took`: the range doubles while steps stay
    /// fast and small, halves when they are slow.
    fn succeeded(&mut self, took: Duration, logs: u64) {
        self.backoff = INITIAL_BACKOFF;
        if took < Duration::from_millis(500) && logs < 5_000 {
            self.range = self.range.saturating_mul(2).min(self.max_range);
        } else if took > Duration::from_secs(5) {
            self.range = (self.range / 2).max(1);
        }
    }

    fn reset_backoff(&mut self) {
        self.backoff = INITIAL_BACKOFF;
    }

    /// The node refused the range size or timed out: halve it.
    fn shrink(&mut self) {
        self.range = (self.range / 2).max(1);
    }

    /// The delay before the next attempt; doubles it (up to 10 s) for the one after.
    fn back_off(&mut self) -> Duration {
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        delay
    }
}

/// The catch-up ranges still to request: consecutive from `next_from`, none past
/// `limit`, none planned after `open_until`.
struct Plan {
    next_from: u64,
    limit: u64,
    open_until: Instant,
}

impl Plan {
    /// The next range of at most `range` blocks, if any.
    fn next(&mut self, range: u64) -> Option<(u64, u64)> {
        if self.next_from > self.limit || Instant::now() >= self.open_until {
            return None;
        }
        let from = self.next_from;
        let to = from.saturating_add(range.max(1) - 1).min(self.limit);
        // `limit` is at least a reorg window (>= 1 block) below the head, so `to + 1`
        // does not overflow.
        self.next_from = to.saturating_add(1);
        Some((from, to))
    }
}

/// Requests planned ranges until `FETCH_DEPTH` are requested or fetched but not
/// applied (`buffered` of them already fetched).
fn fill<F: Future>(
    in_flight: &mut FuturesOrdered<F>,
    buffered: usize,
    plan: &mut Plan,
    range: u64,
    start: impl Fn(u64, u64) -> F,
) {
    while in_flight.len() + buffered < FETCH_DEPTH {
        let Some((from, to)) = plan.next(range) else {
            break;
        };
        in_flight.push_back(start(from, to));
    }
}

struct Indexer<'a> {
    kafka: &'a KafkaArgs,
    rpc: &'a RpcPool,
    settings: &'a IndexerSettings,
    writer: TransactionalWriter,
    decoder: EventDecoder,
    kinds: HashMap<Address, ContractKind>,
    cursor: Cursor,
    metrics: &'static Metrics,
    report: IndexerReport,
}

fn cursor_key(settings: &IndexerSettings) -> String {
    settings.name.clone()
}

fn load_cursor(
    kafka: &KafkaArgs,
    settings: &IndexerSettings,
) -> Result<Option<Cursor>, IndexerError> {
    let topic = kafka.topic(Topic::IndexerCursor);
    let error = |reason: String| IndexerError::CursorRead {
        topic: topic.clone(),
        reason,
    };
    let records = chorus_runtime::kafka::inspect::read_committed(kafka, &topic, &BTreeMap::new())
        .map_err(|e| error(e.to_string()))?;
    let key = cursor_key(settings);
    let latest = records
        .iter()
        .filter(|r| r.key.as_deref() == Some(key.as_bytes()))
        .max_by_key(|r| r.offset);
    match latest {
        None => Ok(None),
        Some(record) => serde_json::from_slice(&record.payload)
            .map(Some)
            .map_err(|e| {
                error(format!(
                    "cursor at offset {} is unreadable: {e}",
                    record.offset
                ))
            }),
    }
}

/// Runs the indexer until shutdown (or `stop_at_block`).
pub async fn run_indexer(
    kafka: &KafkaArgs,
    rpc: &RpcPool,
    settings: &IndexerSettings,
    shutdown: Shutdown,
    readiness: Readiness,
) -> Result<IndexerReport, IndexerError> {
    let actual = rpc
        .call("eth_chainId", |p| async move { p.get_chain_id().await })
        .await?;
    if actual != settings.chain_id {
        return Err(IndexerError::WrongChain {
            expected: settings.chain_id,
            actual,
        });
    }
    let transactional_id = format!(
        "{}-{}",
        chorus_runtime::kafka::Principal::Indexer.id_prefix(&kafka.topic_prefix),
        settings.name
    );
    let writer =
        chorus_runtime::kafka::blocking(|| TransactionalWriter::new(kafka, &transactional_id))?;
    let cursor = match chorus_runtime::kafka::blocking(|| load_cursor(kafka, settings))? {
        Some(cursor) if cursor.chain_id != settings.chain_id => {
            return Err(IndexerError::CursorChain {
                name: settings.name.clone(),
                stored: cursor.chain_id,
                configured: settings.chain_id,
            });
        }
        Some(cursor) => {
            tracing::info!(indexer = %settings.name, next_block = cursor.next_block, "resuming from the committed cursor");
            cursor
        }
        None => {
            tracing::info!(indexer = %settings.name, start_block = settings.start_block, "no cursor yet; starting");
            Cursor::new(settings.chain_id, settings.start_block)
        }
    };
    let mut indexer = Indexer {
        kafka,
        rpc,
        settings,
        writer,
        decoder: EventDecoder::new()?,
        kinds: settings.contracts.iter().map(|(k, a)| (*a, *k)).collect(),
        report: IndexerReport {
            first_block: cursor.next_block,
            next_block: cursor.next_block,
            ..IndexerReport::default()
        },
        cursor,
        metrics: &METRICS,
    };
    // Known series start at zero, so rates and alerts see them before the first event.
    let name = settings.name.as_str();
    for outcome in ["emitted", "dead_lettered", "retracted"] {
        indexer.metrics.logs.with_label_values(&[name, outcome]);
    }
    indexer.metrics.reorgs.with_label_values(&[name]);
    indexer.metrics.head_lag.with_label_values(&[name]);
    readiness.set(true);
    let started = Instant::now();
    let result = indexer.run(&shutdown).await;
    indexer.report.indexing_time = started.elapsed();
    readiness.set(false);
    result.map(|()| indexer.report.clone())
}

impl Indexer<'_> {
    fn name(&self) -> &str {
        &self.settings.name
    }

    /// The loop: reads the head, then indexes the next ranges (several at once while
    /// catching up, one at a time inside the reorg window), or checks the tip when idle.
    async fn run(&mut self, shutdown: &Shutdown) -> Result<(), IndexerError> {
        let mut pacing = Pacing::new(self.settings.initial_range, self.settings.max_range);
        let window = self.settings.reorg_window.max(1);
        let mut progress = Progress::new(self.cursor.next_block, self.settings.progress);
        loop {
            if shutdown.is_triggered() {
                break;
            }
            if let Some(stop) = self.settings.stop_at_block
                && self.cursor.next_block > stop
            {
                break;
            }
            let head = match self
                .rpc
                .call(
                    "eth_blockNumber",
                    |p| async move { p.get_block_number().await },
                )
                .await
            {
                Ok(head) => head,
                Err(e) => {
                    tracing::warn!(indexer = %self.name(), error = %e, "cannot read the chain head; retrying");
                    sleep_or_shutdown(pacing.back_off(), shutdown).await;
                    continue;
                }
            };
            let safe = match self.settings.mode {
                EmitMode::Eager => head,
                EmitMode::Confirmed => head.saturating_sub(self.settings.confirmations),
            };
            let last_done = self.cursor.next_block.saturating_sub(1);
            self.metrics
                .head_lag
                .with_label_values(&[self.name()])
                .set(head.saturating_sub(last_done) as i64);
            let target = self.settings.stop_at_block.map_or(safe, |s| s.min(safe));
            progress.update(
                self.name(),
                self.cursor.next_block,
                target,
                head,
                self.report.logs,
            );

            if self.cursor.next_block > safe {
                let checked = self.check_tip().await;
                match checked {
                    Ok(()) => pacing.reset_backoff(),
                    Err(StepError::Fatal(e)) => return Err(e),
                    Err(StepError::Shrink(e)) => {
                        tracing::warn!(indexer = %self.name(), error = %e, "tip check failed")
                    }
                    Err(StepError::Retry(e)) => {
                        tracing::warn!(indexer = %self.name(), error = %e, "tip check failed")
                    }
                }
                sleep_or_shutdown(self.settings.poll_interval, shutdown).await;
                continue;
            }
            let from = self.cursor.next_block;
            // The catch-up region: blocks at least a reorg window below the head (none
            // while the chain is shorter than the window).
            let catch_up_limit = head.checked_sub(window).map(|limit| limit.min(target));
            let outcome = match catch_up_limit {
                Some(limit) if from <= limit => {
                    self.catch_up(head, limit, target, &mut pacing, &mut progress, shutdown)
                        .await
                }
                _ => {
                    let to = from.saturating_add(pacing.range - 1).min(target);
                    let started = Instant::now();
                    match self.index_range(from, to, head).await {
                        Ok(logs) => {
                            pacing.succeeded(started.elapsed(), logs);
                            Ok(())
                        }
                        Err(error) => Err(RangeFailure { from, to, error }),
                    }
                }
            };
            match outcome {
                Ok(()) => {}
                Err(RangeFailure {
                    from,
                    to,
                    error: StepError::Shrink(e),
                }) => {
                    pacing.shrink();
                    tracing::warn!(indexer = %self.name(), from, to, new_range = pacing.range, error = %e, "shrinking the block range");
                }
                Err(RangeFailure {
                    from,
                    to,
                    error: StepError::Retry(e),
                }) => {
                    tracing::warn!(indexer = %self.name(), from, to, error = %e, "step failed; retrying");
                    sleep_or_shutdown(pacing.back_off(), shutdown).await;
                }
                Err(RangeFailure {
                    error: StepError::Fatal(e),
                    ..
                }) => return Err(e),
            }
            self.metrics
                .range
                .with_label_values(&[self.name()])
                .set(pacing.range as i64);
        }
        progress.finish();
        Ok(())
    }

    /// Catch-up: indexes the ranges from the cursor up to `limit` (every block of them
    /// at least a reorg window below `head`), with up to `FETCH_DEPTH` ranges fetched
    /// at once. Fetched ranges are applied strictly in block order, each through
    /// [`Self::prepare`] (the same reorg checks as one range at a time) and its own
    /// transaction; while one transaction commits, the next ranges keep being fetched
    /// (their results are held, in order, until it is their turn). Never two
    /// transactions at once.
    ///
    /// Returns after the session ([`CATCH_UP_SESSION`]) has applied its last range, on
    /// shutdown, and after a reorg has been handled (the rewound cursor invalidates the
    /// ranges in flight). On the first failure in block order, the ranges after it are
    /// dropped unapplied and the failure is returned: the cursor is that of the last
    /// committed range, so the caller resumes exactly there.
    async fn catch_up(
        &mut self,
        head: u64,
        limit: u64,
        target: u64,
        pacing: &mut Pacing,
        progress: &mut Progress,
        shutdown: &Shutdown,
    ) -> Result<(), RangeFailure> {
        // Copies of the shared references, so the fetches in flight borrow the pool and
        // the settings, not `self` (which the commits and cursor updates need).
        let rpc = self.rpc;
        let settings = self.settings;
        let mut plan = Plan {
            next_from: self.cursor.next_block,
            limit,
            open_until: Instant::now() + CATCH_UP_SESSION,
        };
        let fetch = move |from, to| fetch_numbered(rpc, settings, from, to, head);
        let mut in_flight = FuturesOrdered::new();
        let mut ready: VecDeque<Result<Fetched, RangeFailure>> = VecDeque::new();
        fill(&mut in_flight, ready.len(), &mut plan, pacing.range, fetch);
        loop {
            if shutdown.is_triggered() {
                return Ok(());
            }
            let next = match ready.pop_front() {
                Some(fetched) => Some(fetched),
                None => in_flight.next().await,
            };
            let Some(fetched) = next else {
                return Ok(());
            };
            let fetched = fetched?;
            // Keep the pipeline full while this range is checked and committed.
            fill(&mut in_flight, ready.len(), &mut plan, pacing.range, fetch);
            let (from, to, took) = (fetched.from, fetched.to, fetched.took);
            let failed = move |error: StepError| RangeFailure { from, to, error };
            let prepared = match self.prepare(fetched).map_err(failed)? {
                Step::Reorg { suspect } => {
                    let started = Instant::now();
                    self.handle_reorg(suspect).await.map_err(failed)?;
                    pacing.succeeded(took + started.elapsed(), 0);
                    return Ok(());
                }
                Step::Commit(prepared) => prepared,
            };
            let committed = {
                let mut commit = std::pin::pin!(self.writer.commit(&prepared.records));
                loop {
                    tokio::select! {
                        result = &mut commit => break result,
                        Some(fetched) = in_flight.next(), if !in_flight.is_empty() => {
                            ready.push_back(fetched);
                        }
                    }
                }
            };
            committed.map_err(|e| failed(e.into()))?;
            let logs = self.finish(prepared);
            pacing.succeeded(took, logs);
            self.metrics
                .range
                .with_label_values(&[self.name()])
                .set(pacing.range as i64);
            self.metrics
                .head_lag
                .with_label_values(&[self.name()])
                .set(head.saturating_sub(to) as i64);
            progress.update(
                self.name(),
                self.cursor.next_block,
                target,
                head,
                self.report.logs,
            );
        }
    }

    async fn header(&self, number: u64) -> Result<Header, StepError> {
        fetch_header(self.rpc, number).await
    }

    /// While idle: has the last emitted block been replaced?
    async fn check_tip(&mut self) -> Result<(), StepError> {
        let last = self.cursor.next_block.saturating_sub(1);
        let Some(recorded) = self.cursor.hash_of(last).map(str::to_string) else {
            return Ok(());
        };
        let header = self.header(last).await?;
        if format!("{:#x}", header.hash) != recorded {
            self.handle_reorg(last).await?;
        }
        Ok(())
    }

    /// One range at a time (inside the reorg window): fetches `from..=to`, checks it and
    /// commits it in one transaction; returns the number of logs (0 after a reorg,
    /// which rewinds the cursor instead).
    async fn index_range(&mut self, from: u64, to: u64, head: u64) -> Result<u64, StepError> {
        let fetched = fetch_range(self.rpc, self.settings, from, to, head).await?;
        let prepared = match self.prepare(fetched)? {
            Step::Reorg { suspect } => {
                self.handle_reorg(suspect).await?;
                return Ok(0);
            }
            Step::Commit(prepared) => prepared,
        };
        self.writer.commit(&prepared.records).await?;
        Ok(self.finish(prepared))
    }

    /// Checks a fetched range against the cursor and builds its transaction: the
    /// `chain.log` events and dead letters of its logs, then the cursor advanced past
    /// it. The range must start at the cursor's next block; its first block must
    /// extend the block the cursor recorded before it (else a reorg replaced that
    /// block), the fetched headers must chain, and every log must belong to its
    /// block's header (else the chain moved during the fetch: retry).
    fn prepare(&self, fetched: Fetched) -> Result<Step, StepError> {
        let Fetched {
            from,
            to,
            logs,
            headers,
            ..
        } = fetched;
        if from != self.cursor.next_block {
            return Err(StepError::Retry(format!(
                "range {from}..={to} does not start at the cursor's next block {}",
                self.cursor.next_block
            )));
        }
        let window = self.settings.reorg_window.max(1);
        if let (Some(first), Some(recorded)) = (
            headers.get(&from),
            from.checked_sub(1).and_then(|p| self.cursor.hash_of(p)),
        ) && format!("{:#x}", first.parent) != recorded
        {
            return Ok(Step::Reorg { suspect: from - 1 });
        }
        let mut previous: Option<(u64, B256)> = None;
        for (number, header) in &headers {
            if let Some((prev_number, prev_hash)) = previous
                && prev_number + 1 == *number
                && header.parent != prev_hash
            {
                return Err(StepError::Retry(format!(
                    "block {number} does not extend block {prev_number}: the chain moved during the step"
                )));
            }
            previous = Some((*number, header.hash));
        }

        let prefix = &self.kafka.topic_prefix;
        let mut records = Vec::with_capacity(logs.len() + 1);
        let mut next = self.cursor.clone();
        let mut emitted_by_block: BTreeMap<u64, Vec<EmittedLog>> = BTreeMap::new();
        let (mut emitted, mut dead) = (0u64, 0u64);
        let mut checkpoints: Vec<(i64, i64)> = Vec::new();
        for log in &logs {
            let (Some(block_number), Some(block_hash), Some(tx_hash), Some(log_index)) = (
                log.block_number,
                log.block_hash,
                log.transaction_hash,
                log.log_index,
            ) else {
                return Err(StepError::Retry("the node returned a pending log".into()));
            };
            if let Some(header) = headers.get(&block_number)
                && header.hash != block_hash
            {
                return Err(StepError::Retry(format!(
                    "log in block {block_number} has hash {block_hash:#x}, header says {:#x}: the chain moved during the step",
                    header.hash
                )));
            }
            let address = log.inner.address;
            let Some(kind) = self.kinds.get(&address).copied() else {
                continue;
            };
            let timestamp = log
                .block_timestamp
                .or_else(|| headers.get(&block_number).map(|h| h.timestamp));
            let time = timestamp
                .and_then(|t| DateTime::<Utc>::from_timestamp(t as i64, 0))
                .unwrap_or_else(Utc::now);
            match self.decoder.decode(kind, &log.inner.data) {
                Ok((event_name, decoded)) => {
                    if kind == ContractKind::PoiDistributor && event_name == "Checkpointed" {
                        let epoch = decoded["epoch"]
                            .as_str()
                            .and_then(|e| e.parse::<i64>().ok());
                        if let (Some(epoch), Some(timestamp)) = (epoch, timestamp) {
                            checkpoints.push((epoch, timestamp as i64));
                        }
                    }
                    let data = ChainLog {
                        chain_id: self.settings.chain_id,
                        contract: kind.name().to_string(),
                        block_number,
                        block_hash: format!("{block_hash:#x}"),
                        block_timestamp: timestamp
                            .and_then(|t| DateTime::<Utc>::from_timestamp(t as i64, 0)),
                        tx_hash: format!("{tx_hash:#x}"),
                        tx_index: log.transaction_index.unwrap_or_default(),
                        log_index,
                        topics: log
                            .inner
                            .data
                            .topics()
                            .iter()
                            .map(|t| format!("{t:#x}"))
                            .collect(),
                        data: format!("0x{}", alloy::hex::encode(&log.inner.data.data)),
                        event_name: Some(event_name),
                        decoded: Some(decoded.to_string()),
                    };
                    let mut event = Envelope::with_time(SOURCE, time, data);
                    event.id = log_event_id(self.settings.chain_id, &block_hash, log_index);
                    records.push(output(prefix, &event)?);
                    emitted_by_block
                        .entry(block_number)
                        .or_default()
                        .push(EmittedLog {
                            contract: kind.name().to_string(),
                            tx_hash: format!("{tx_hash:#x}"),
                            log_index,
                        });
                    emitted += 1;
                }
                Err(reason) => {
                    let raw = serde_json::to_vec(log).unwrap_or_default();
                    let letter = DeadLetter {
                        source_topic: format!("chain:{}:{}", self.settings.chain_id, kind.name()),
                        source_partition: 0,
                        source_offset: block_number as i64,
                        source_key_base64: None,
                        payload_base64: base64::engine::general_purpose::STANDARD.encode(raw),
                        reason: format!(
                            "log {log_index} of tx {tx_hash:#x} in block {block_number}: {reason}"
                        ),
                        stage: SOURCE.to_string(),
                    };
                    let mut event = Envelope::with_time(SOURCE, time, letter);
                    event.id = derived_id(b"dead", self.settings.chain_id, &block_hash, log_index);
                    records.push(output(prefix, &event)?);
                    dead += 1;
                }
            }
        }
        next.next_block = to + 1;
        for (number, header) in &headers {
            next.recent.insert(
                *number,
                RecentBlock {
                    hash: format!("{:#x}", header.hash),
                    logs: emitted_by_block.remove(number).unwrap_or_default(),
                },
            );
        }
        next.trim(window);
        records.push(self.cursor_record(&next)?);
        Ok(Step::Commit(Prepared {
            to,
            records,
            next,
            emitted,
            dead,
            checkpoints,
        }))
    }

    /// After the transaction of `prepared` committed: moves the cursor, the report and
    /// the metrics on; returns the number of logs (events and dead letters).
    fn finish(&mut self, prepared: Prepared) -> u64 {
        let Prepared {
            to,
            next,
            emitted,
            dead,
            checkpoints,
            ..
        } = prepared;
        self.cursor = next;
        self.report.next_block = self.cursor.next_block;
        self.report.logs += emitted;
        self.report.dead_letters += dead;
        self.report.transactions += 1;
        self.metrics
            .logs
            .with_label_values(&[self.name(), "emitted"])
            .inc_by(emitted);
        self.metrics
            .logs
            .with_label_values(&[self.name(), "dead_lettered"])
            .inc_by(dead);
        self.metrics
            .block
            .with_label_values(&[self.name()])
            .set(to as i64);
        if let Some((epoch, time)) = checkpoints.into_iter().max_by_key(|c| c.1) {
            self.metrics
                .checkpoint_epoch
                .with_label_values(&[self.name()])
                .set(epoch);
            self.metrics
                .checkpoint_time
                .with_label_values(&[self.name()])
                .set(time);
        }
        emitted + dead
    }

    fn cursor_record(&self, cursor: &Cursor) -> Result<OutputRecord, StepError> {
        Ok(OutputRecord {
            topic: self.kafka.topic(Topic::IndexerCursor),
            key: Some(cursor_key(self.settings).into_bytes()),
            payload: serde_json::to_vec(cursor)
                .map_err(|e| StepError::Retry(format!("encoding the cursor: {e}")))?,
            headers: None,
        })
    }

    /// The block after `suspect` no longer extends our record of it (or `suspect`
    /// itself changed): find the last block we recorded that is still canonical,
    /// retract everything emitted above it and rewind the cursor there.
    async fn handle_reorg(&mut self, suspect: u64) -> Result<(), StepError> {
        let mut ancestor = None;
        let recorded: Vec<(u64, String)> = self
            .cursor
            .recent
            .range(..=suspect)
            .rev()
            .map(|(n, b)| (*n, b.hash.clone()))
            .collect();
        for (number, hash) in recorded {
            let header = self.header(number).await?;
            if format!("{:#x}", header.hash) == hash {
                ancestor = Some(number);
                break;
            }
        }
        let Some(ancestor) = ancestor else {
            return Err(StepError::Fatal(IndexerError::ReorgTooDeep {
                window: self.settings.reorg_window,
                block: suspect,
            }));
        };
        let mut next = self.cursor.clone();
        let dropped = next.rewind_to(ancestor);
        let depth = self.cursor.next_block.saturating_sub(ancestor + 1);
        let prefix = &self.kafka.topic_prefix;
        let mut records = Vec::new();
        for (number, block) in &dropped {
            let Ok(block_hash) = block.hash.parse::<B256>() else {
                continue;
            };
            for log in &block.logs {
                let data = ChainLogRetracted {
                    chain_id: self.settings.chain_id,
                    contract: log.contract.clone(),
                    block_number: *number,
                    block_hash: block.hash.clone(),
                    tx_hash: log.tx_hash.clone(),
                    log_index: log.log_index,
                    retracted_event_id: log_event_id(
                        self.settings.chain_id,
                        &block_hash,
                        log.log_index,
                    ),
                    reason: format!(
                        "reorg of depth {depth}: block {number} {} is no longer canonical",
                        block.hash
                    ),
                };
                let mut event = Envelope::new(SOURCE, data);
                event.id = retraction_event_id(self.settings.chain_id, &block_hash, log.log_index);
                records.push(output(prefix, &event)?);
            }
        }
        let retracted = records.len() as u64;
        records.push(self.cursor_record(&next)?);
        self.writer.commit(&records).await?;
        self.cursor = next;
        self.report.next_block = self.cursor.next_block;
        self.report.retracted += retracted;
        self.report.reorgs += 1;
        self.report.transactions += 1;
        self.metrics.reorgs.with_label_values(&[self.name()]).inc();
        self.metrics
            .logs
            .with_label_values(&[self.name(), "retracted"])
            .inc_by(retracted);
        tracing::warn!(indexer = %self.name(), depth, ancestor, retracted, "chain reorganisation: retracted the dropped logs and rewound");
        Ok(())
    }
}

fn output<T: chorus_schemas::EventData>(
    prefix: &str,
    event: &Envelope<T>,
) -> Result<OutputRecord, StepError> {
    OutputRecord::event(prefix, event)
        .map_err(|e| StepError::Retry(format!("encoding an event: {e}")))
}

/// The header of block `number`.
async fn fetch_header(rpc: &RpcPool, number: u64) -> Result<Header, StepError> {
    let block = rpc
        .call("eth_getBlockByNumber", move |p| async move {
            p.get_block_by_number(BlockNumberOrTag::Number(number))
                .await
        })
        .await?;
    let block =
        block.ok_or_else(|| StepError::Retry(format!("block {number} is not available yet")))?;
    Ok(Header {
        hash: block.header.hash,
        parent: block.header.parent_hash,
        timestamp: block.header.timestamp,
    })
}

/// Fetches the logs of `from..=to` and the headers the checks need: both ends of the
/// range, and every block inside the reorg window below `head` (where reorgs happen),
/// a few at a time. Reads only the node; the cursor is checked when the range is
/// applied ([`Indexer::prepare`]), so ranges can be fetched ahead of it.
async fn fetch_range(
    rpc: &RpcPool,
    settings: &IndexerSettings,
    from: u64,
    to: u64,
    head: u64,
) -> Result<Fetched, StepError> {
    let started = Instant::now();
    let addresses: Vec<Address> = settings.contracts.iter().map(|(_, a)| *a).collect();
    let filter = Filter::new()
        .address(addresses)
        .from_block(from)
        .to_block(to);
    let logs: Vec<Log> = rpc
        .call("eth_getLogs", |p| {
            let filter = filter.clone();
            async move { p.get_logs(&filter).await }
        })
        .await?;

    let window = settings.reorg_window.max(1);
    let window_start = head.saturating_sub(window - 1).max(from);
    let mut numbers: Vec<u64> = vec![from, to];
    numbers.extend(window_start..=to);
    numbers.sort_unstable();
    numbers.dedup();
    let fetched: Vec<Result<(u64, Header), StepError>> = futures::stream::iter(numbers)
        .map(move |number| async move { fetch_header(rpc, number).await.map(|h| (number, h)) })
        .buffered(8)
        .collect()
        .await;
    let mut headers = BTreeMap::new();
    for result in fetched {
        let (number, header) = result?;
        headers.insert(number, header);
    }
    Ok(Fetched {
        from,
        to,
        logs,
        headers,
        took: started.elapsed(),
    })
}

/// [`fetch_range`] for the catch-up pipeline: a failure carries its range.
async fn fetch_numbered(
    rpc: &RpcPool,
    settings: &IndexerSettings,
    from: u64,
    to: u64,
    head: u64,
) -> Result<Fetched, RangeFailure> {
    fetch_range(rpc, settings, from, to, head)
        .await
        .map_err(|error| RangeFailure { from, to, error })
}

async fn sleep_or_shutdown(duration: Duration, shutdown: &Shutdown) {
    tokio::select! {
        _ = tokio::time::sleep(duration) => {}
        _ = shutdown.triggered() => {}
    }
}
