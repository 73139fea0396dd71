//! The transactional consume-transform-produce loop.
//!
//! Records are read with `isolation.level=read_committed`, transformed one at a time in
//! partition order, and the outputs plus the consumed offsets
//! (`send_offsets_to_transaction`) are committed in one Kafka transaction per batch.
//! A crash at any point leaves either the whole batch (outputs and offsets) or none of
//! it, so every input yields its outputs exactly once for read-committed consumers.
//!
//! Input that cannot be processed ([`ProcessError::Reject`]) becomes a `dead.letter`
//! event (original bytes, reason, source topic/partition/offset) in the same
//! transaction: it never blocks the partition and is never lost. So does input whose
//! output is too large to produce ([`PipelineConfig::max_record_bytes`]): a record the
//! broker would refuse is a poison pill that would otherwise abort every retry of its
//! batch. Transient failures ([`ProcessError::Retry`], a failed produce or commit) abort
//! the batch, rewind to the committed offsets and retry after a backoff that doubles
//! with each abort in a row (100 ms up to 30 s).
//!
//! The transactional id must be stable per instance (`<stage>-<instance id>`): a
//! restarted instance then fences its predecessor and aborts the transaction it left
//! open at once, instead of stalling read-committed consumers until the transaction
//! times out.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use futures::StreamExt;
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::util::Timeout;

use chorus_schemas::{DeadLetter, Envelope, EventData, Topic};

use super::{KafkaArgs, cloudevents_headers};
use crate::Shutdown;
use crate::metrics::{self, Readiness};

/// One consumed record, as the transform sees it.
#[derive(Debug)]
pub struct InputRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    message: &'a OwnedMessage,
}

impl<'a> InputRecord<'a> {
    fn from_message(message: &'a OwnedMessage) -> Self {
        InputRecord {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key(),
            payload: message.payload(),
            message,
        }
    }

    /// The names of the record's headers.
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.message
            .headers()
            .into_iter()
            .flat_map(|headers| headers.iter().map(|h| h.key))
    }

    /// A header's value as UTF-8 text (None when absent or not text).
    pub fn header(&self, name: &str) -> Option<&str> {
        let headers = self.message.headers()?;
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// One record to produce.
#[derive(Debug, Clone)]
pub struct OutputRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Option<OwnedHeaders>,
}

impl OutputRecord {
    /// A typed event for its own topic under `prefix`.
    pub fn event<T: EventData>(
        prefix: &str,
        event: &Envelope<T>,
    ) -> Result<Self, serde_json::Error> {
        Ok(OutputRecord {
            topic: T::TOPIC.name(prefix),
            key: Some(event.key.clone().into_bytes()),
            payload: event.to_json()?,
            headers: Some(cloudevents_headers()),
        })
    }
}

/// Why a record was not transformed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The input is bad: it goes to the dead-letter topic with this reason.
    #[error("rejected: {0}")]
    Reject(String),
    /// Something outside the input failed (a dependency is down): abort the batch,
    /// rewind, back off and try again.
    #[error("transient failure: {0}")]
    Retry(String),
}

/// A consume-transform-produce step, called once per record. With `concurrency` above
/// one, several calls run at once; outputs are still produced in input order.
pub trait Transform: Send + Sync {
    fn process(
        &self,
        record: &InputRecord<'_>,
    ) -> impl Future<Output = Result<Vec<OutputRecord>, ProcessError>> + Send;
}

/// Settings of one pipeline stage.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Stage name: metrics label and the `stage` of dead letters.
    pub stage: String,
    pub group_id: String,
    /// Full topic names to consume.
    pub input_topics: Vec<String>,
    /// Stable per instance, e.g. `router-<instance id>`.
    pub transactional_id: String,
    /// Most records per transaction.
    pub batch_max: usize,
    /// Longest a transaction collects records before committing.
    pub batch_linger: Duration,
    /// A transaction commits early when no record arrives for this long.
    pub batch_idle_gap: Duration,
    /// Records transformed at once (1 for CPU-bound steps; more for steps that wait on
    /// a remote service, like model calls).
    pub concurrency: usize,
    pub session_timeout: Duration,
    pub transaction_timeout: Duration,
    /// Where to start without a committed offset: `earliest` or `latest`.
    pub auto_offset_reset: String,
    /// Largest output record (key + value + headers) produced; the input of a larger
    /// one is dead-lettered instead. Below librdkafka's `message.max.bytes` (1,000,000)
    /// and the broker's (1 MiB), so that a produce never fails for size.
    pub max_record_bytes: usize,
}

/// The default [`PipelineConfig::max_record_bytes`]: 900 KiB.
pub const MAX_RECORD_BYTES: usize = 900 * 1024;

/// Longest wait between retries of a failing batch.
const MAX_ABORT_BACKOFF: Duration = Duration::from_secs(30);

/// The wait after the `aborts_in_a_row`-th abort in a row: 100 ms, doubling, at most 30 s.
fn abort_backoff(aborts_in_a_row: u32) -> Duration {
    Duration::from_millis(100)
        .saturating_mul(1u32 << aborts_in_a_row.saturating_sub(1).min(16))
        .min(MAX_ABORT_BACKOFF)
}

impl PipelineConfig {
    /// Defaults for a stage: transactions of up to 10,000 records or 500 ms, committed
    /// early when the input pauses for 5 ms.
    pub fn new(stage: &str, group_id: &str, input_topics: Vec<String>, instance_id: &str) -> Self {
        PipelineConfig {
            stage: stage.to_owned(),
            group_id: group_id.to_owned(),
            input_topics,
            transactional_id: format!("{group_id}-{instance_id}"),
            batch_max: 10_000,
            batch_linger: Duration::from_millis(500),
            batch_idle_gap: Duration::from_millis(5),
            concurrency: 1,
            session_timeout: Duration::from_secs(10),
            transaction_timeout: Duration::from_secs(60),
            auto_offset_reset: "earliest".into(),
            max_record_bytes: MAX_RECORD_BYTES,
        }
    }
}

/// Why a pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("kafka client setup: {0}")]
    Setup(#[source] KafkaError),
    #[error(
        "fatal kafka error (another instance with transactional id {transactional_id:?} took over?): {source}"
    )]
    Fatal {
        transactional_id: String,
        source: KafkaError,
    },
}

/// Librdkafka callbacks: consumer lag into the metric, rebalances into a generation
/// counter so that a batch spanning a rebalance is aborted, not committed. Other
/// consumers that commit their own offsets (the ClickHouse sink) use it too.
pub struct StageContext {
    group: String,
    generation: Arc<AtomicU64>,
}

impl StageContext {
    /// A context for consumer group `group`; `generation` counts rebalances.
    pub fn new(group: &str, generation: Arc<AtomicU64>) -> Self {
        StageContext {
            group: group.to_owned(),
            generation,
        }
    }
}

impl ClientContext for StageContext {
    fn stats(&self, statistics: Statistics) {
        for (topic_name, topic) in &statistics.topics {
            for (partition, p) in &topic.partitions {
                if *partition < 0 || !p.desired {
                    continue;
                }
                // Offsets are committed by the producer's transaction, which librdkafka's
                // own `consumer_lag` (from the consumer's committed offset) does not see:
                // measure from the position the stage has reached instead, against the
                // last stable offset (what a read_committed consumer can reach).
                let end = if p.ls_offset >= 0 {
                    p.ls_offset
                } else {
                    p.hi_offset
                };
                let lag = if p.app_offset >= 0 && end >= 0 {
                    (end - p.app_offset).max(0)
                } else if p.consumer_lag >= 0 {
                    p.consumer_lag
                } else if end >= 0 && p.committed_offset < 0 && p.app_offset < 0 {
                    // Nothing consumed yet and nothing committed: all of it is behind.
                    end
                } else {
                    continue;
                };
                metrics::CONSUMER_LAG
                    .with_label_values(&[&self.group, topic_name, &partition.to_string()])
                    .set(lag);
            }
        }
    }
}

impl ConsumerContext for StageContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        match rebalance {
            Rebalance::Revoke(tpl) => {
                tracing::info!(group = %self.group, partitions = tpl.count(), "partitions revoked")
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(group = %self.group, partitions = tpl.count(), "partitions assigned")
            }
            Rebalance::Error(e) => {
                tracing::warn!(group = %self.group, error = %e, "rebalance error")
            }
        }
    }
}

/// A read-committed group consumer that commits its own offsets (none automatically),
/// with the stage context (lag metric, rebalance generation): the input side of every
/// stage, and of the sinks that commit after writing elsewhere.
pub fn stage_consumer(
    kafka: &KafkaArgs,
    client_id: &str,
    group_id: &str,
    auto_offset_reset: &str,
    session_timeout: Duration,
    context: StageContext,
) -> Result<StreamConsumer<StageContext>, KafkaError> {
    kafka
        .client_config(client_id)
        .set("group.id", group_id)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", auto_offset_reset)
        .set(
            "session.timeout.ms",
            session_timeout.as_millis().to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (session_timeout.as_millis() / 4).max(100).to_string(),
        )
        .set("statistics.interval.ms", "5000")
        .create_with_context(context)
}

/// Runs `transform` until shutdown. Transient Kafka failures rebuild the clients after
/// a backoff; a fatal one (fenced by a newer instance) is returned.
pub async fn run_pipeline<T: Transform>(
    kafka: &KafkaArgs,
    config: &PipelineConfig,
    transform: T,
    shutdown: Shutdown,
    readiness: Readiness,
) -> Result<(), PipelineError> {
    let mut backoff = Duration::from_millis(500);
    while !shutdown.is_triggered() {
        let started = Instant::now();
        match run_once(kafka, config, &transform, &shutdown, &readiness).await {
            Ok(()) => return Ok(()),
            Err(StageError::Fatal(source)) => {
                readiness.set(false);
                return Err(PipelineError::Fatal {
                    transactional_id: config.transactional_id.clone(),
                    source,
                });
            }
            Err(StageError::Transient(reason)) => {
                readiness.set(false);
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_millis(500);
                }
                tracing::warn!(stage = %config.stage, %reason, ?backoff, "pipeline restarting after transient failure");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.triggered() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    Ok(())
}

enum StageError {
    Transient(String),
    Fatal(KafkaError),
}

fn classify(context: &str, e: KafkaError) -> StageError {
    let fatal = match &e {
        KafkaError::Transaction(rd) => rd.is_fatal(),
        _ => false,
    };
    if fatal {
        StageError::Fatal(e)
    } else {
        StageError::Transient(format!("{context}: {e}"))
    }
}

/// Waits, in 1 ms steps and for at most 10 s, until `producer` has no record or
/// delivery report in flight, so that `commit_transaction` finds its queue empty.
///
/// rdkafka 0.39's `commit_transaction` first runs its own `flush`, which, when anything
/// is still in flight, polls the event queue for a fixed 100 ms (its `poll` keeps
/// polling until the deadline even after it served the last report). That is the
/// "1 ms or 101 ms" commit measured in issue 20: a commit waited 100 ms whenever its
/// last delivery report had not been served yet. The producer's own poll thread serves
/// the reports meanwhile; after the limit the commit's flush takes over as before.
pub(crate) async fn wait_until_delivered(producer: &FutureProducer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Runs a blocking librdkafka call without stalling other tasks on this runtime.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

async fn run_once<T: Transform>(
    kafka: &KafkaArgs,
    config: &PipelineConfig,
    transform: &T,
    shutdown: &Shutdown,
    readiness: &Readiness,
) -> Result<(), StageError> {
    let stage = config.stage.as_str();
    let generation = Arc::new(AtomicU64::new(0));
    let context = StageContext::new(&config.group_id, generation.clone());
    let consumer = stage_consumer(
        kafka,
        &format!("{stage}-consumer"),
        &config.group_id,
        &config.auto_offset_reset,
        config.session_timeout,
        context,
    )
    .map_err(|e| classify("creating consumer", e))?;
    let producer: FutureProducer = kafka
        .transactional_producer_config(
            &format!("{stage}-producer"),
            &config.transactional_id,
            config.transaction_timeout,
        )
        .create()
        .map_err(|e| classify("creating producer", e))?;
    let txn_timeout = Timeout::After(Duration::from_secs(30));
    blocking(|| producer.init_transactions(txn_timeout))
        .map_err(|e| classify("init_transactions", e))?;
    let topics: Vec<&str> = config.input_topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| classify("subscribe", e))?;
    // Known series start at zero, so rates and alerts see them before the first event.
    for outcome in ["committed", "aborted"] {
        metrics::TRANSACTIONS.with_label_values(&[stage, outcome]);
    }
    for topic in &topics {
        metrics::EVENTS_IN.with_label_values(&[stage, topic]);
        metrics::DEAD_LETTERS.with_label_values(&[stage, topic]);
    }
    readiness.set(true);
    tracing::info!(stage, group = %config.group_id, transactional_id = %config.transactional_id, topics = ?topics, "pipeline running");

    let dead_letter_topic = Topic::DeadLetters.name(&kafka.topic_prefix);
    let processing_seconds = metrics::PROCESSING_SECONDS.with_label_values(&[stage]);
    let concurrency = config.concurrency.max(1);
    let mut recovery = Recovery {
        stage,
        producer: &producer,
        consumer: &consumer,
        txn_timeout,
        shutdown,
        aborts_in_a_row: 0,
    };
    // The commit of the previous batch, in flight while the next one is read and
    // transformed (a producer has one transaction at a time, so the next batch's
    // outputs are produced only once it is settled).
    let mut committing: Option<Committing> = None;
    loop {
        let next = match committing.as_mut() {
            Some(previous) => tokio::select! {
                biased;
                _ = shutdown.triggered() => Next::Shutdown,
                joined = &mut previous.task => Next::Settled(joined),
                message = consumer.recv() => Next::Message(message),
            },
            None => tokio::select! {
                biased;
                _ = shutdown.triggered() => Next::Shutdown,
                message = consumer.recv() => Next::Message(message),
            },
        };
        let first = match next {
            Next::Shutdown => break,
            Next::Settled(joined) => {
                if let Some(previous) = committing.take() {
                    recovery.settle(previous, joined).await?;
                }
                continue;
            }
            Next::Message(message) => message,
        };
        let first = match first {
            Ok(message) => message.detach(),
            Err(e) => {
                tracing::warn!(stage, error = %e, "consumer error");
                continue;
            }
        };
        let batch_generation = generation.load(Ordering::SeqCst);

        // Collect until the batch is full, the linger time is up, or the input pauses
        // (so a lone record commits at once, while a busy stream gets big transactions).
        let mut messages = vec![first];
        let deadline = tokio::time::Instant::now() + config.batch_linger;
        while messages.len() < config.batch_max && !shutdown.is_triggered() {
            let wait_until = deadline.min(tokio::time::Instant::now() + config.batch_idle_gap);
            match tokio::time::timeout_at(wait_until, consumer.recv()).await {
                Err(_) => break,
                Ok(Err(e)) => {
                    tracing::warn!(stage, error = %e, "consumer error");
                    break;
                }
                Ok(Ok(message)) => messages.push(message.detach()),
            }
        }

        if tracing::enabled!(tracing::Level::DEBUG) {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let oldest = messages
                .iter()
                .filter_map(|m| m.timestamp().to_millis())
                .min()
                .map(|t| now_ms - t);
            tracing::debug!(stage, records = messages.len(), oldest_ms = ?oldest, "batch read");
        }
        // Transform (up to `concurrency` records at once; results keep input order, so
        // outputs keep per-partition order), then produce and commit in one transaction.
        let mut results: Vec<Result<Vec<OutputRecord>, ProcessError>> =
            Vec::with_capacity(messages.len());
        let mut in_flight = futures::stream::FuturesOrdered::new();
        let mut pending = messages.iter();
        loop {
            while in_flight.len() < concurrency {
                match pending.next() {
                    Some(message) => {
                        in_flight.push_back(transform_one(transform, message, &processing_seconds))
                    }
                    None => break,
                }
            }
            match in_flight.next().await {
                Some(result) => results.push(result),
                None => break,
            }
        }

        if let Some(previous) = committing.take() {
            let committed = recovery.finish(previous).await?;
            if !committed {
                // The consumer was rewound to the committed offsets, before this batch:
                // it is read (and transformed) again.
                continue;
            }
        }

        let mut batch = Batch::default();
        let outcome = produce_batch(
            stage,
            &dead_letter_topic,
            config.max_record_bytes,
            (&consumer, &producer, txn_timeout),
            &messages,
            results,
            &mut batch,
        )
        .await;
        let outcome = match outcome {
            Err(reason) => Err(reason),
            Ok(()) if generation.load(Ordering::SeqCst) != batch_generation => {
                Err("consumer group rebalanced during the batch".to_owned())
            }
            Ok(()) => Ok(start_commit(&producer, txn_timeout)),
        };
        match outcome {
            Ok(task) => {
                committing = Some(Committing {
                    task,
                    batch,
                    records: messages.len(),
                });
            }
            Err(reason) => {
                recovery
                    .abort_and_rewind(&reason, messages.len(), batch.began)
                    .await?;
            }
        }
    }
    if let Some(previous) = committing.take() {
        recovery.finish(previous).await?;
    }
    readiness.set(false);
    tracing::info!(stage, "pipeline stopped");
    Ok(())
}

async fn transform_one<T: Transform>(
    transform: &T,
    message: &OwnedMessage,
    histogram: &prometheus::Histogram,
) -> Result<Vec<OutputRecord>, ProcessError> {
    let record = InputRecord::from_message(message);
    let started = Instant::now();
    let result = transform.process(&record).await;
    histogram.observe(started.elapsed().as_secs_f64());
    result
}

/// What one transaction holds.
#[derive(Default)]
struct Batch {
    began: bool,
    in_per_topic: BTreeMap<String, u64>,
    out_per_topic: BTreeMap<String, u64>,
    dead_per_topic: BTreeMap<String, u64>,
}

/// Opens the transaction, adds the batch's input offsets to it, and queues every output
/// (dead letters for rejected input).
///
/// The offsets go first: a transaction begun right after the previous commit returned
/// meets the coordinator still completing that commit, and whichever request reaches it
/// first is refused with `CONCURRENT_TRANSACTIONS`. librdkafka retries `AddOffsetsToTxn`
/// after `retry.backoff.ms` (2 ms here) but `AddPartitionsToTxn`, which the first record
/// of each partition triggers, after a fixed 20 ms; sending the offsets first lets the
/// cheap retry absorb the wait.
async fn produce_batch(
    stage: &str,
    dead_letter_topic: &str,
    max_record_bytes: usize,
    (consumer, producer, timeout): (&StreamConsumer<StageContext>, &FutureProducer, Timeout),
    messages: &[OwnedMessage],
    results: Vec<Result<Vec<OutputRecord>, ProcessError>>,
    batch: &mut Batch,
) -> Result<(), String> {
    if let Some(Err(ProcessError::Retry(reason))) = results
        .iter()
        .find(|r| matches!(r, Err(ProcessError::Retry(_))))
    {
        return Err(format!("transform asked to retry: {reason}"));
    }
    let mut offsets = TopicPartitionList::new();
    let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for message in messages {
        let position = next
            .entry((message.topic(), message.partition()))
            .or_default();
        *position = (*position).max(message.offset() + 1);
    }
    for ((topic, partition), offset) in next {
        offsets
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .map_err(|e| format!("offset list: {e}"))?;
    }
    let group = consumer
        .group_metadata()
        .ok_or_else(|| "consumer has no group metadata".to_owned())?;
    blocking(|| producer.begin_transaction()).map_err(|e| format!("begin_transaction: {e}"))?;
    batch.began = true;
    blocking(|| producer.send_offsets_to_transaction(&offsets, &group, timeout))
        .map_err(|e| format!("send_offsets_to_transaction: {e}"))?;
    for (message, result) in messages.iter().zip(results) {
        let record = InputRecord::from_message(message);
        let rejected = match result {
            Ok(outputs) => match oversized(&outputs, max_record_bytes) {
                None => Ok(outputs),
                Some(reason) => Err(reason),
            },
            Err(ProcessError::Reject(reason)) => Err(reason),
            Err(ProcessError::Retry(reason)) => return Err(reason),
        };
        let outputs = match rejected {
            Ok(outputs) => outputs,
            Err(reason) => {
                *batch
                    .dead_per_topic
                    .entry(record.topic.to_owned())
                    .or_default() += 1;
                vec![dead_letter_output(
                    stage,
                    dead_letter_topic,
                    &record,
                    reason,
                    max_record_bytes,
                )?]
            }
        };
        for output in &outputs {
            send_in_transaction(producer, output).await?;
            *batch.out_per_topic.entry(output.topic.clone()).or_default() += 1;
        }
        *batch
            .in_per_topic
            .entry(record.topic.to_owned())
            .or_default() += 1;
    }
    Ok(())
}

/// The bytes a record puts on the wire, near enough: key, value and headers.
fn record_bytes(output: &OutputRecord) -> usize {
    let headers = output.headers.as_ref().map_or(0, |headers| {
        headers
            .iter()
            .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
            .sum()
    });
    output.key.as_ref().map_or(0, Vec::len) + output.payload.len() + headers
}

/// Why `outputs` cannot be produced, if one is larger than `max` bytes.
fn oversized(outputs: &[OutputRecord], max: usize) -> Option<String> {
    outputs.iter().find_map(|output| {
        let bytes = record_bytes(output);
        (bytes > max).then(|| {
            format!(
                "its output to {} would be a record of {bytes} bytes, over the limit of {max} bytes",
                output.topic
            )
        })
    })
}

/// The dead letter of `record`, as an output record. When the original would make it
/// too large itself, the copy is left out and the reason says where the original is.
fn dead_letter_output(
    stage: &str,
    dead_letter_topic: &str,
    record: &InputRecord<'_>,
    reason: String,
    max_record_bytes: usize,
) -> Result<OutputRecord, String> {
    let encode = |dead: &Envelope<DeadLetter>| -> Result<OutputRecord, String> {
        Ok(OutputRecord {
            topic: dead_letter_topic.to_owned(),
            key: Some(dead.key.clone().into_bytes()),
            payload: dead
                .to_json()
                .map_err(|e| format!("encoding dead letter: {e}"))?,
            headers: Some(cloudevents_headers()),
        })
    };
    let mut dead = dead_letter(stage, record, reason);
    let output = encode(&dead)?;
    if record_bytes(&output) <= max_record_bytes {
        return Ok(output);
    }
    dead.data.payload_base64 = String::new();
    dead.data.reason = format!(
        "{} (the original, {} bytes, is too large to copy here: read it at {}/{}@{})",
        dead.data.reason,
        record.payload.map_or(0, <[u8]>::len),
        record.topic,
        record.partition,
        record.offset
    );
    encode(&dead)
}

fn dead_letter(stage: &str, record: &InputRecord<'_>, reason: String) -> Envelope<DeadLetter> {
    let b64 = base64::engine::general_purpose::STANDARD;
    Envelope::new(
        stage,
        DeadLetter {
            source_topic: record.topic.to_owned(),
            source_partition: record.partition,
            source_offset: record.offset,
            source_key_base64: record.key.map(|k| b64.encode(k)),
            payload_base64: b64.encode(record.payload.unwrap_or_default()),
            reason,
            stage: stage.to_owned(),
        },
    )
}

/// Queues a record in the open transaction, waiting while the queue is full.
async fn send_in_transaction(
    producer: &FutureProducer,
    output: &OutputRecord,
) -> Result<(), String> {
    let mut record: FutureRecord<'_, [u8], [u8]> =
        FutureRecord::to(&output.topic).payload(&output.payload);
    if let Some(key) = &output.key {
        record = record.key(key);
    }
    if let Some(headers) = &output.headers {
        record = record.headers(headers.clone());
    }
    loop {
        match producer.send_result(record) {
            // The delivery report is not awaited: commit_transaction flushes and fails
            // if any record of the transaction failed.
            Ok(_delivery) => return Ok(()),
            Err((
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                returned,
            )) => {
                metrics::PRODUCER_BACKPRESSURE
                    .with_label_values(&["pipeline"])
                    .inc();
                record = returned;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err((e, _)) => return Err(format!("producing to {}: {e}", output.topic)),
        }
    }
}

/// What the main loop is waiting for next.
enum Next<M> {
    Shutdown,
    /// The previous batch's commit finished.
    Settled(Result<Result<(), String>, tokio::task::JoinError>),
    Message(M),
}

/// A batch whose transaction is being committed.
struct Committing {
    task: tokio::task::JoinHandle<Result<(), String>>,
    batch: Batch,
    records: usize,
}

/// Starts committing the open transaction (its offsets are already in it) on a task of
/// its own, so that the loop reads and transforms the next batch meanwhile.
fn start_commit(
    producer: &FutureProducer,
    timeout: Timeout,
) -> tokio::task::JoinHandle<Result<(), String>> {
    let producer = producer.clone();
    tokio::spawn(async move {
        wait_until_delivered(&producer).await;
        blocking(|| producer.commit_transaction(timeout))
            .map_err(|e| format!("commit_transaction: {e}"))
    })
}

/// What settling a commit and aborting a batch need: the stage's clients and its count
/// of aborts in a row (the backoff).
struct Recovery<'a> {
    stage: &'a str,
    producer: &'a FutureProducer,
    consumer: &'a StreamConsumer<StageContext>,
    txn_timeout: Timeout,
    shutdown: &'a Shutdown,
    aborts_in_a_row: u32,
}

impl Recovery<'_> {
    /// Waits for `previous`'s commit to finish, then settles it.
    async fn finish(&mut self, mut previous: Committing) -> Result<bool, StageError> {
        let joined = (&mut previous.task).await;
        self.settle(previous, joined).await
    }

    /// Records the outcome of a finished commit: the metrics when it committed (true),
    /// the abort and rewind when it failed (false).
    async fn settle(
        &mut self,
        previous: Committing,
        joined: Result<Result<(), String>, tokio::task::JoinError>,
    ) -> Result<bool, StageError> {
        let outcome = joined.unwrap_or_else(|e| Err(format!("commit task failed: {e}")));
        let (stage, batch) = (self.stage, &previous.batch);
        match outcome {
            Ok(()) => {
                self.aborts_in_a_row = 0;
                metrics::TRANSACTIONS
                    .with_label_values(&[stage, "committed"])
                    .inc();
                for (topic, count) in &batch.in_per_topic {
                    metrics::EVENTS_IN
                        .with_label_values(&[stage, topic])
                        .inc_by(*count);
                }
                for (topic, count) in &batch.out_per_topic {
                    metrics::EVENTS_OUT
                        .with_label_values(&[stage, topic])
                        .inc_by(*count);
                }
                for (topic, count) in &batch.dead_per_topic {
                    metrics::DEAD_LETTERS
                        .with_label_values(&[stage, topic])
                        .inc_by(*count);
                }
                Ok(true)
            }
            Err(reason) => {
                self.abort_and_rewind(&reason, previous.records, true)
                    .await?;
                Ok(false)
            }
        }
    }

    /// Aborts the open transaction (if one began), moves the consumer back to the
    /// committed offsets and waits out the backoff of this many aborts in a row.
    async fn abort_and_rewind(
        &mut self,
        reason: &str,
        records: usize,
        began: bool,
    ) -> Result<(), StageError> {
        let stage = self.stage;
        metrics::TRANSACTIONS
            .with_label_values(&[stage, "aborted"])
            .inc();
        tracing::warn!(stage, %reason, records, "aborting transaction and rewinding");
        if began {
            blocking(|| self.producer.abort_transaction(self.txn_timeout))
                .map_err(|e| classify("abort_transaction", e))?;
        }
        rewind(self.consumer).map_err(|e| classify("rewinding to committed offsets", e))?;
        self.aborts_in_a_row = self.aborts_in_a_row.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(abort_backoff(self.aborts_in_a_row)) => {}
            _ = self.shutdown.triggered() => {}
        }
        Ok(())
    }
}

/// Moves every assigned partition back to its committed offset (or the beginning).
pub fn rewind(consumer: &StreamConsumer<StageContext>) -> Result<(), KafkaError> {
    let timeout = Timeout::After(Duration::from_secs(10));
    let committed = consumer.committed(timeout)?;
    for element in committed.elements() {
        let offset = match element.offset() {
            Offset::Offset(o) => Offset::Offset(o),
            _ => Offset::Beginning,
        };
        consumer.seek(element.topic(), element.partition(), offset, timeout)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn message(payload: Vec<u8>) -> OwnedMessage {
        OwnedMessage::new(
            Some(payload),
            Some(b"key".to_vec()),
            "p.chorus.inference.jobs".into(),
            rdkafka::Timestamp::NotAvailable,
            3,
            42,
            None,
        )
    }

    fn output(bytes: usize) -> OutputRecord {
        OutputRecord {
            topic: "p.chorus.inference.results".into(),
            key: Some(b"k".to_vec()),
            payload: vec![b'x'; bytes],
            headers: None,
        }
    }

    #[test]
    fn aborts_back_off_exponentially_to_a_ceiling() {
        let waits: Vec<u128> = (1..=12).map(|n| abort_backoff(n).as_millis()).collect();
        assert_eq!(&waits[..5], &[100, 200, 400, 800, 1600]);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(abort_backoff(u32::MAX), MAX_ABORT_BACKOFF);
    }

    #[test]
    fn an_output_over_the_limit_is_named_with_its_size() {
        assert_eq!(oversized(&[output(100)], 200), None);
        let reason = oversized(&[output(100), output(300)], 200).unwrap();
        assert!(
            reason.contains("301 bytes") && reason.contains("limit of 200"),
            "{reason}"
        );
    }

    #[test]
    fn a_dead_letter_too_large_to_copy_its_original_says_where_it_is() {
        let small = message(vec![b'a'; 10]);
        let record = InputRecord::from_message(&small);
        let dead = dead_letter_output("worker", "p.dl", &record, "why".into(), 10_000).unwrap();
        assert!(record_bytes(&dead) <= 10_000);
        let letter = Envelope::<DeadLetter>::from_json(&dead.payload).unwrap();
        assert!(!letter.data.payload_base64.is_empty());

        let large = message(vec![b'a'; 9_000]);
        let record = InputRecord::from_message(&large);
        let dead = dead_letter_output("worker", "p.dl", &record, "why".into(), 10_000).unwrap();
        assert!(record_bytes(&dead) <= 10_000);
        let letter = Envelope::<DeadLetter>::from_json(&dead.payload).unwrap();
        assert!(letter.data.payload_base64.is_empty());
        assert!(
            letter.data.reason.starts_with("why")
                && letter.data.reason.contains("p.chorus.inference.jobs/3@42"),
            "{}",
            letter.data.reason
        );
    }
}
