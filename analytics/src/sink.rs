//! The ClickHouse sink: every event topic into its typed table.
//!
//! Records are read `read_committed`, checked against their table and encoded as
//! RowBinary into one buffer per table. A batch is sent when it reaches `batch_rows`
//! or `batch_interval` passes after its first row.
//!
//! Sending overlaps with reading (double buffering): a batch's insert runs in its own
//! task while the main loop goes on consuming and encoding the next batch. At most one
//! batch is in flight: when the next one is full (or its interval has passed) before
//! the insert ends, the loop stops reading and waits for the insert; the next batch is
//! sent only after the one before was acknowledged and its offsets committed.
//!
//! A batch's offsets are committed only after every table's insert was acknowledged
//! (and the batch's dead letters were acknowledged by Kafka), and batches commit in the
//! order they were read, so a committed offset never covers a row ClickHouse has not
//! acknowledged. A crash before the commit replays the batch (and the one read behind
//! it); the tables are `ReplacingMergeTree` keyed by event id, so the replay collapses
//! into the rows already there and `FINAL` (or the views) counts each event once.
//!
//! When ClickHouse is down or refuses a batch, the sink keeps the batch, pauses its
//! partitions (the group membership stays alive; nothing more is fetched; partitions a
//! rebalance assigns meanwhile are paused too) and retries with a jittered exponential
//! backoff until the insert succeeds: it never drops a row. The consumer is still
//! served while it waits, and what arrives joins the next batch.
//!
//! A rebalance while a batch is in flight is handled as when a batch spans one: the
//! batches keep what they read, and their offsets are committed once their rows are in;
//! a commit the group refuses is logged and the new owner replays those rows, which
//! collapse by id. On shutdown the running attempt is finished and, if acknowledged,
//! committed, then the batch in hand gets one attempt; a batch that fails then, or that
//! was waiting for a retry, is left uncommitted together with the batch read after it.
//! A record that does not fit its table (undecodable, a value out of the column's
//! range) becomes a `dead.letter` with the reason and the sink moves on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use base64::Engine;
use prometheus::{HistogramVec, IntCounterVec};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::task::{JoinError, JoinHandle};
use uuid::Uuid;

use chorus_runtime::Shutdown;
use chorus_runtime::kafka::{
    EventProducer, KafkaArgs, ProduceError, StageContext, await_delivery, blocking,
    cloudevents_headers, stage_consumer,
};
use chorus_runtime::metrics::{self, Readiness};
use chorus_schemas::{DeadLetter, Envelope, Topic};

use crate::clickhouse::{ClickHouseArgs, ClickHouseError};
use crate::record::record_cells;
use crate::tables::{TableDef, encode_row_binary, tables};

/// Rows inserted, per table.
pub static SINK_ROWS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    metrics::counter(
        "chorus_sink_rows_total",
        "Rows inserted into ClickHouse (acknowledged), by table.",
        &["table"],
    )
});

/// Batches, by outcome (inserted, retried).
pub static SINK_BATCHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    metrics::counter(
        "chorus_sink_batches_total",
        "Sink batches, by outcome: committed, or retried after a failure.",
        &["outcome"],
    )
});

/// Errors, by kind (insert, dead_letter, commit).
pub static SINK_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    metrics::counter(
        "chorus_sink_errors_total",
        "Sink failures, by kind: insert (ClickHouse), dead_letter (Kafka), commit (offsets).",
        &["kind"],
    )
});

/// Time to insert and commit one batch.
pub static SINK_BATCH_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    metrics::histogram(
        "chorus_sink_batch_seconds",
        "Time from a batch's first insert to its offset commit.",
        &["sink"],
        vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0],
    )
});

const STAGE: &str = "sink-clickhouse";

/// Settings of the sink.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub group_id: String,
    /// Full names of the topics to load.
    pub topics: Vec<String>,
    /// A batch is sent at this many rows ...
    pub batch_rows: usize,
    /// ... or this long after its first row, whichever comes first.
    pub batch_interval: Duration,
    /// Longest wait between two attempts at a failing batch.
    pub max_backoff: Duration,
    pub session_timeout: Duration,
}

impl SinkConfig {
    /// Defaults: every event topic under `kafka`'s prefix, 50,000 rows or 1 s.
    pub fn new(kafka: &KafkaArgs, group_id: &str) -> Self {
        SinkConfig {
            group_id: group_id.to_owned(),
            topics: sink_topics().map(|t| kafka.topic(t)).collect(),
            batch_rows: 50_000,
            batch_interval: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            session_timeout: Duration::from_secs(10),
        }
    }
}

/// The topics the sink loads: every topic of typed events (not the raw intake, not
/// the indexer's cursor).
pub fn sink_topics() -> impl Iterator<Item = Topic> {
    Topic::ALL
        .into_iter()
        .filter(|t| !matches!(t, Topic::Intake | Topic::ApiIntake | Topic::IndexerCursor))
}

/// Why the sink stopped.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    ClickHouse(#[from] ClickHouseError),
    #[error("analytics tables: {0}")]
    Tables(#[from] crate::tables::TableListError),
    /// The task inserting a batch panicked: the batch is gone from memory, so nothing
    /// after it may be committed (a restart replays it from the committed offsets).
    #[error("the task inserting a batch failed: {0}")]
    InsertTask(String),
}

/// One batch in the making.
struct Batch {
    /// RowBinary rows per table index, and their count.
    rows: Vec<(Vec<u8>, u64)>,
    dead_letters: Vec<Envelope<DeadLetter>>,
    /// Next offset to commit, per topic and partition.
    next_offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    records_in: BTreeMap<String, u64>,
    total: usize,
    started: Option<Instant>,
}

impl Batch {
    fn new(tables: usize) -> Self {
        Batch {
            rows: (0..tables).map(|_| (Vec::new(), 0)).collect(),
            dead_letters: Vec::new(),
            next_offsets: BTreeMap::new(),
            records_in: BTreeMap::new(),
            total: 0,
            started: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.next_offsets.is_empty()
    }
}

/// What an insert attempt needs; shared by the main loop and the attempt's task.
struct Destination {
    client: clickhouse::Client,
    producer: EventProducer,
    tables: &'static [TableDef],
    dead_letter_topic: String,
}

/// What an attempt's task hands back: the batch (with the tables it inserted cleared,
/// so a retry sends only the rest) and the outcome.
type AttemptOutput = (Batch, Result<(), String>);

/// The batch whose insert is under way (at most one). Exactly one of `running` and
/// `waiting` holds it.
struct InFlight {
    /// The attempt running now, in its own task.
    running: Option<JoinHandle<AttemptOutput>>,
    /// Between two attempts: the batch, and when the next attempt starts.
    waiting: Option<(Batch, Instant)>,
    /// When its first attempt started (`chorus_sink_batch_seconds`).
    started: Instant,
    /// The wait after the next failure.
    backoff: Duration,
    /// Whether an attempt failed: from then on the consumer is served (and paused)
    /// while the batch waits, whether or not the next batch is full.
    retrying: bool,
    /// Every list of partitions paused for it (its first failure's assignment, then
    /// each assignment a rebalance brought), all resumed once it is in.
    paused: Vec<TopicPartitionList>,
    /// The rebalance generation when the partitions were last paused.
    paused_in: u64,
}

impl InFlight {
    /// Starts the first attempt at `batch`.
    fn start(destination: &Arc<Destination>, batch: Batch) -> Self {
        InFlight {
            running: Some(spawn_attempt(destination, batch)),
            waiting: None,
            started: Instant::now(),
            backoff: Duration::from_millis(200),
            retrying: false,
            paused: Vec::new(),
            paused_in: 0,
        }
    }

    /// An attempt failed: pause consumption (once) and wait a jittered backoff before
    /// the next attempt.
    fn failed(
        &mut self,
        consumer: &StreamConsumer<StageContext>,
        generation: &AtomicU64,
        batch: Batch,
        reason: &str,
        max_backoff: Duration,
    ) {
        SINK_BATCHES.with_label_values(&["retried"]).inc();
        self.retrying = true;
        if self.paused.is_empty() {
            let paused_in = generation.load(Ordering::SeqCst);
            if let Ok(assignment) = consumer.assignment()
                && consumer.pause(&assignment).is_ok()
            {
                self.paused.push(assignment);
                self.paused_in = paused_in;
            }
        }
        let wait = jitter(self.backoff);
        tracing::warn!(%reason, rows = batch.total, retry_in = ?wait, "sink batch failed; consumption paused, retrying");
        self.waiting = Some((batch, Instant::now() + wait));
        self.backoff = (self.backoff * 2).min(max_backoff);
    }

    /// While paused, a rebalance may assign partitions that are not paused: pause the
    /// new assignment too (librdkafka keeps a partition's pause across rebalances, so
    /// the lists paused before stay paused and are resumed with it).
    fn keep_paused(&mut self, consumer: &StreamConsumer<StageContext>, generation: &AtomicU64) {
        let current = generation.load(Ordering::SeqCst);
        if self.paused.is_empty() || self.paused_in == current {
            return;
        }
        self.paused_in = current;
        match consumer.assignment() {
            Ok(assignment) => match consumer.pause(&assignment) {
                Ok(()) => self.paused.push(assignment),
                Err(e) => tracing::warn!(error = %e, "pausing the partitions a rebalance assigned"),
            },
            Err(e) => tracing::warn!(error = %e, "reading the assignment after a rebalance"),
        }
    }
}

/// Runs one attempt at `batch` in its own task, so that the main loop keeps reading.
fn spawn_attempt(destination: &Arc<Destination>, mut batch: Batch) -> JoinHandle<AttemptOutput> {
    let destination = Arc::clone(destination);
    tokio::spawn(async move {
        let result = try_flush(
            &destination.client,
            &destination.producer,
            destination.tables,
            &mut batch,
            &destination.dead_letter_topic,
        )
        .await;
        (batch, result)
    })
}

/// Waits for the running attempt to end (forever when none runs). The caller must take
/// the finished handle out of `in_flight` before waiting again.
async fn attempt_finished(in_flight: &mut Option<InFlight>) -> Result<AttemptOutput, JoinError> {
    match in_flight
        .as_mut()
        .and_then(|flight| flight.running.as_mut())
    {
        Some(running) => running.await,
        None => std::future::pending().await,
    }
}

fn insert_task_failed(e: JoinError) -> SinkError {
    tracing::error!(error = %e, "the task inserting a batch failed; stopping without committing it");
    SinkError::InsertTask(e.to_string())
}

/// Runs the sink until `shutdown`: the insert under way is finished and committed
/// first, then the batch in hand gets one attempt.
pub async fn run_sink(
    kafka: &KafkaArgs,
    clickhouse: &ClickHouseArgs,
    config: &SinkConfig,
    shutdown: Shutdown,
    readiness: Readiness,
) -> Result<(), SinkError> {
    let tables = tables()?;
    let client = clickhouse.client()?;
    let generation = Arc::new(AtomicU64::new(0));
    let consumer = stage_consumer(
        kafka,
        &format!("{STAGE}-consumer"),
        &config.group_id,
        "earliest",
        config.session_timeout,
        StageContext::new(&config.group_id, generation.clone()),
    )?;
    let producer = EventProducer::new(kafka, STAGE, 100_000)?;
    let destination = Arc::new(Destination {
        client,
        producer,
        tables,
        dead_letter_topic: kafka.topic(Topic::DeadLetters),
    });
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    for table in tables {
        SINK_ROWS.with_label_values(&[table.name]);
    }
    for outcome in ["committed", "retried"] {
        SINK_BATCHES.with_label_values(&[outcome]);
    }
    for kind in ["insert", "dead_letter", "commit"] {
        SINK_ERRORS.with_label_values(&[kind]);
    }
    for topic in &topics {
        metrics::EVENTS_IN.with_label_values(&[STAGE, topic]);
        metrics::DEAD_LETTERS.with_label_values(&[STAGE, topic]);
    }
    readiness.set(true);
    tracing::info!(group = %config.group_id, database = %clickhouse.clickhouse_database, topics = topics.len(), "clickhouse sink running");

    // `next` is the batch being read and encoded; `in_flight` the one being inserted.
    let mut next = Batch::new(tables.len());
    let mut in_flight: Option<InFlight> = None;
    loop {
        let now = Instant::now();
        let linger_end = next.started.map(|s| s + config.batch_interval);
        let ready = !next.is_empty()
            && (next.total >= config.batch_rows || linger_end.is_some_and(|end| end <= now));
        if ready && in_flight.is_none() {
            let batch = std::mem::replace(&mut next, Batch::new(tables.len()));
            in_flight = Some(InFlight::start(&destination, batch));
            continue;
        }
        // Here `ready` means an insert is under way: reading stops until it ends (as it
        // did during every insert before the overlap). While a batch is being retried,
        // though, the consumer is served (heartbeats, rebalances); its partitions are
        // paused, so little or nothing arrives, and that joins `next`.
        let retrying = in_flight.as_ref().is_some_and(|flight| flight.retrying);
        let retry_at = in_flight
            .as_ref()
            .and_then(|flight| flight.waiting.as_ref())
            .map(|(_, at)| *at);
        tokio::select! {
            message = consumer.recv(), if !ready || retrying => match message {
                Ok(message) => add_record(&mut next, &destination.dead_letter_topic, &message),
                Err(e) => {
                    tracing::warn!(error = %e, "kafka consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
            _ = tokio::time::sleep_until(linger_end.unwrap_or(now).into()), if !ready && linger_end.is_some() => {}
            joined = attempt_finished(&mut in_flight) => {
                if let Some(mut flight) = in_flight.take() {
                    // The handle has delivered its output; it must not be polled again.
                    flight.running = None;
                    let (batch, result) = match joined {
                        Ok(output) => output,
                        Err(e) => {
                            readiness.set(false);
                            return Err(insert_task_failed(e));
                        }
                    };
                    match result {
                        Ok(()) => complete(&consumer, &batch, flight.started, &flight.paused),
                        Err(reason) => {
                            flight.failed(&consumer, &generation, batch, &reason, config.max_backoff);
                            in_flight = Some(flight);
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(retry_at.unwrap_or(now).into()), if retry_at.is_some() => {
                if let Some(flight) = in_flight.as_mut()
                    && let Some((batch, _)) = flight.waiting.take()
                {
                    flight.running = Some(spawn_attempt(&destination, batch));
                }
            }
            _ = shutdown.triggered() => {
                let batch = std::mem::replace(&mut next, Batch::new(0));
                let finished = finish(&destination, &consumer, in_flight.take(), batch).await;
                readiness.set(false);
                tracing::info!("clickhouse sink stopped");
                return finished;
            }
        }
        if let Some(flight) = in_flight.as_mut() {
            flight.keep_paused(&consumer, &generation);
        }
    }
}

/// Turns one record into a row of its table, or a dead letter with the reason.
fn add_record(
    batch: &mut Batch,
    dead_letter_topic: &str,
    message: &rdkafka::message::BorrowedMessage<'_>,
) {
    let topic = message.topic();
    batch.started.get_or_insert_with(Instant::now);
    // One entry per partition, updated in place (no allocation per record); records in
    // are counted per partition and added to the metric when the batch is committed.
    let next = message.offset() + 1;
    match batch.next_offsets.get_mut(topic) {
        Some(partitions) => {
            partitions.insert(message.partition(), next);
        }
        None => {
            batch.next_offsets.insert(
                topic.to_owned(),
                BTreeMap::from([(message.partition(), next)]),
            );
        }
    }
    match batch.records_in.get_mut(topic) {
        Some(records) => *records += 1,
        None => {
            batch.records_in.insert(topic.to_owned(), 1);
        }
    }
    if topic == dead_letter_topic && message.payload().is_none() {
        return;
    }
    let payload = message.payload().unwrap_or_default();
    // The typed topics hold events Chorus wrote or its router validated; here each
    // value is checked against its column, decoded straight from the bytes.
    let row = record_cells(payload);
    match row {
        Ok((table, cells)) => {
            let (buffer, count) = &mut batch.rows[table.index];
            encode_row_binary(table, &cells, buffer);
            *count += 1;
            batch.total += 1;
        }
        Err(reason) => {
            // A dead letter of a dead letter would loop: count it and move on.
            if topic == dead_letter_topic {
                tracing::warn!(%reason, partition = message.partition(), offset = message.offset(), "dead letter does not fit its table; skipped");
                return;
            }
            metrics::DEAD_LETTERS
                .with_label_values(&[STAGE, topic])
                .inc();
            tracing::warn!(%topic, partition = message.partition(), offset = message.offset(), %reason, "record dead-lettered");
            batch.dead_letters.push(dead_letter(
                topic,
                message.partition(),
                message.offset(),
                message.key(),
                payload,
                reason,
            ));
            batch.total += 1;
        }
    }
}

/// A dead letter whose id is derived from its source position, so that a replayed
/// batch produces the same event (consumers dedup by id).
fn dead_letter(
    topic: &str,
    partition: i32,
    offset: i64,
    key: Option<&[u8]>,
    payload: &[u8],
    reason: String,
) -> Envelope<DeadLetter> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut envelope = Envelope::new(
        STAGE,
        DeadLetter {
            source_topic: topic.to_owned(),
            source_partition: partition,
            source_offset: offset,
            source_key_base64: key.map(|k| b64.encode(k)),
            payload_base64: b64.encode(payload),
            reason,
            stage: STAGE.to_owned(),
        },
    );
    let digest = alloy_primitives::keccak256(format!("{STAGE}/{topic}/{partition}/{offset}"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    envelope.id = uuid::Builder::from_custom_bytes(bytes).into_uuid();
    envelope
}

/// On shutdown: the attempt under way is awaited (not retried) and, if acknowledged,
/// its batch is committed; then `next` gets one attempt the same way. A batch whose
/// attempt fails, or that was waiting out a backoff, is left uncommitted together with
/// `next` (whose offsets would cover its rows): both are replayed on restart.
async fn finish(
    destination: &Arc<Destination>,
    consumer: &StreamConsumer<StageContext>,
    in_flight: Option<InFlight>,
    next: Batch,
) -> Result<(), SinkError> {
    if let Some(flight) = in_flight {
        let InFlight {
            running,
            waiting,
            started,
            paused,
            ..
        } = flight;
        let Some(running) = running else {
            let rows = waiting.map_or(0, |(batch, _)| batch.total) + next.total;
            tracing::warn!(
                rows,
                "stopping with an uninserted batch; it will be replayed"
            );
            return Ok(());
        };
        let (batch, result) = running.await.map_err(insert_task_failed)?;
        if let Err(reason) = result {
            SINK_BATCHES.with_label_values(&["retried"]).inc();
            let rows = batch.total + next.total;
            tracing::warn!(%reason, rows, "stopping with an uninserted batch; it will be replayed");
            return Ok(());
        }
        complete(consumer, &batch, started, &paused);
    }
    if next.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let (batch, result) = spawn_attempt(destination, next)
        .await
        .map_err(insert_task_failed)?;
    match result {
        Ok(()) => complete(consumer, &batch, started, &[]),
        Err(reason) => {
            SINK_BATCHES.with_label_values(&["retried"]).inc();
            tracing::warn!(%reason, rows = batch.total, "stopping with an uninserted batch; it will be replayed");
        }
    }
    Ok(())
}

/// Every row of `batch` is acknowledged: resume what its failures paused, commit its
/// offsets and count it.
fn complete(
    consumer: &StreamConsumer<StageContext>,
    batch: &Batch,
    started: Instant,
    paused: &[TopicPartitionList],
) {
    for assignment in paused {
        if let Err(e) = consumer.resume(assignment) {
            tracing::warn!(error = %e, "resuming partitions");
        }
    }
    match commit(consumer, &batch.next_offsets) {
        Ok(()) => {
            SINK_BATCHES.with_label_values(&["committed"]).inc();
            for (topic, records) in &batch.records_in {
                metrics::EVENTS_IN
                    .with_label_values(&[STAGE, topic])
                    .inc_by(*records);
            }
        }
        Err(e) => {
            // The rows are in ClickHouse; whoever owns the partitions now replays them
            // and the replay collapses by id.
            SINK_ERRORS.with_label_values(&["commit"]).inc();
            tracing::warn!(error = %e, "committing offsets failed (a rebalance?); the batch will be replayed");
        }
    }
    SINK_BATCH_SECONDS
        .with_label_values(&["clickhouse"])
        .observe(started.elapsed().as_secs_f64());
}

/// One attempt: each table's rows that are still pending, then the dead letters. A
/// table whose insert was acknowledged is cleared, so a retry sends only the rest.
async fn try_flush(
    client: &clickhouse::Client,
    producer: &EventProducer,
    tables: &[TableDef],
    batch: &mut Batch,
    dead_letter_topic: &str,
) -> Result<(), String> {
    for (table, (buffer, count)) in tables.iter().zip(batch.rows.iter_mut()) {
        if *count == 0 {
            continue;
        }
        let rows = bytes::Bytes::copy_from_slice(buffer);
        if let Err(e) = insert_rows(client, table, rows).await {
            SINK_ERRORS.with_label_values(&["insert"]).inc();
            return Err(format!("inserting {count} rows into {}: {e}", table.name));
        }
        SINK_ROWS.with_label_values(&[table.name]).inc_by(*count);
        buffer.clear();
        *count = 0;
    }
    if !batch.dead_letters.is_empty() {
        let mut deliveries = Vec::with_capacity(batch.dead_letters.len());
        for letter in &batch.dead_letters {
            let payload = letter.to_json().map_err(|e| e.to_string())?;
            let delivery = producer
                .enqueue_raw(
                    dead_letter_topic,
                    Some(letter.key.as_bytes()),
                    &payload,
                    Some(cloudevents_headers()),
                )
                .await
                .map_err(|e: ProduceError| e.to_string())?;
            deliveries.push(delivery);
        }
        for delivery in deliveries {
            if let Err(e) = await_delivery(delivery).await {
                SINK_ERRORS.with_label_values(&["dead_letter"]).inc();
                return Err(format!("producing a dead letter: {e}"));
            }
        }
        batch.dead_letters.clear();
    }
    Ok(())
}

/// Sends RowBinary rows in one INSERT and waits for ClickHouse's acknowledgement.
pub async fn insert_rows(
    client: &clickhouse::Client,
    table: &TableDef,
    rows: bytes::Bytes,
) -> Result<(), clickhouse::error::Error> {
    let mut insert = client
        .insert_formatted_with(format!(
            "INSERT INTO {} ({}) FORMAT RowBinary",
            table.name,
            table.column_list()
        ))
        .with_timeouts(
            Some(Duration::from_secs(30)),
            Some(Duration::from_secs(120)),
        );
    insert.send(rows).await?;
    insert.end().await
}

fn commit(
    consumer: &StreamConsumer<StageContext>,
    next_offsets: &BTreeMap<String, BTreeMap<i32, i64>>,
) -> Result<(), rdkafka::error::KafkaError> {
    let mut list = TopicPartitionList::new();
    for (topic, partitions) in next_offsets {
        for (partition, next) in partitions {
            list.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
        }
    }
    blocking(|| consumer.commit(&list, CommitMode::Sync))
}

fn jitter(base: Duration) -> Duration {
    let nanos = Uuid::now_v7().as_u128() as u64 % 1000;
    base + base.mul_f64(nanos as f64 / 4000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_ids_follow_the_source_position() {
        let a = dead_letter("t", 1, 7, None, b"x", "r".into());
        let b = dead_letter("t", 1, 7, None, b"x", "r".into());
        let c = dead_letter("t", 1, 8, None, b"x", "r".into());
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
    }

    #[test]
    fn the_sink_loads_every_typed_topic() {
        let topics: Vec<Topic> = sink_topics().collect();
        assert!(topics.contains(&Topic::PoiScores));
        assert!(topics.contains(&Topic::DeadLetters));
        assert!(!topics.contains(&Topic::Intake));
    }
}
