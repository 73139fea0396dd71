//! An epoch's input as exact Kafka offset ranges: planning them from record times, and
//! reading exactly those records back.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use alloy::primitives::{B256, keccak256};
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use chorus_runtime::kafka::{KafkaArgs, ReadToEndConsumer, ReadToEndContext};
use chorus_schemas::{AnyEvent, Topic};

/// The topics an epoch reads within its time window.
pub const WINDOW_TOPICS: [Topic; 5] = [
    Topic::ChatMessages,
    Topic::AgentCalls,
    Topic::InferenceJobs,
    Topic::InferenceResults,
    Topic::Feedback,
];

/// `[from, to)` of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRange {
    /// Topic name without the deployment prefix.
    pub topic: String,
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

/// Everything needed to recompute an epoch: the exact input and the config identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub manifest_version: u32,
    pub epoch: u64,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub config_version: String,
    pub config_hash: String,
    /// Chain events are read from the start of the topic to the window end (the
    /// registrations they carry are cumulative state); the other topics within the window.
    pub sources: Vec<SourceRange>,
}

impl Manifest {
    /// keccak256 of the manifest's canonical JSON.
    pub fn hash(&self) -> B256 {
        keccak256(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Records in the ranges.
    pub fn records(&self) -> i64 {
        self.sources.iter().map(|s| s.to - s.from).sum()
    }
}

fn consumer(kafka: &KafkaArgs) -> Result<ReadToEndConsumer, KafkaError> {
    kafka
        .client_config("chorus-scoring")
        .set("group.id", kafka.assign_only_group("scoring"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("fetch.max.bytes", "52428800")
        .create_with_context(ReadToEndContext)
}

fn partitions(consumer: &ReadToEndConsumer, topic: &str) -> Result<Vec<i32>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    Ok(metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// First offset at or after `time_ms` per partition (the high watermark where none).
fn offsets_at(
    consumer: &ReadToEndConsumer,
    topic: &str,
    time_ms: i64,
) -> Result<BTreeMap<i32, i64>, KafkaError> {
    let parts = partitions(consumer, topic)?;
    let mut list = TopicPartitionList::new();
    for p in &parts {
        list.add_partition_offset(topic, *p, Offset::Offset(time_ms))?;
    }
    let found = consumer.offsets_for_times(list, Duration::from_secs(10))?;
    let mut out = BTreeMap::new();
    for element in found.elements() {
        let offset = match element.offset() {
            Offset::Offset(o) => o,
            _ => {
                consumer
                    .fetch_watermarks(topic, element.partition(), Duration::from_secs(10))?
                    .1
            }
        };
        out.insert(element.partition(), offset);
    }
    Ok(out)
}

/// Topics whose records are context rather than paid items: read from `lookback_ms`
/// (one epoch length) before the window, so that a result in this epoch whose job (and agent call) were
/// written in the previous one is still verified and paid. Nothing is paid twice: work
/// is counted by its result, and results are read from the window only.
pub const LOOKBACK_TOPICS: [Topic; 2] = [Topic::AgentCalls, Topic::InferenceJobs];

/// Plans the input of `[start_ms, end_ms)`; `LOOKBACK_TOPICS` from `start_ms - lookback_ms`.
pub fn plan_sources(
    kafka: &KafkaArgs,
    start_ms: i64,
    end_ms: i64,
    lookback_ms: i64,
) -> Result<Vec<SourceRange>, KafkaError> {
    let consumer = consumer(kafka)?;
    let mut sources = Vec::new();
    for topic in WINDOW_TOPICS {
        let name = kafka.topic(topic);
        let from_ms = if LOOKBACK_TOPICS.contains(&topic) {
            start_ms.saturating_sub(lookback_ms).max(0)
        } else {
            start_ms
        };
        let from = offsets_at(&consumer, &name, from_ms)?;
        let to = offsets_at(&consumer, &name, end_ms)?;
        for (partition, from) in from {
            let to = to.get(&partition).copied().unwrap_or(from);
            sources.push(SourceRange {
                topic: topic.name(""),
                partition,
                from,
                to: to.max(from),
            });
        }
    }
    let chain = kafka.topic(Topic::ChainEvents);
    for (partition, to) in offsets_at(&consumer, &chain, end_ms)? {
        let low = consumer
            .fetch_watermarks(&chain, partition, Duration::from_secs(10))?
            .0;
        sources.push(SourceRange {
            topic: Topic::ChainEvents.name(""),
            partition,
            from: low,
            to: to.max(low),
        });
    }
    Ok(sources)
}

/// What reading found besides events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub records: u64,
    pub undecodable: u64,
}

/// Reads exactly the committed records of `sources` and hands each decoded event to
/// `sink`. Records that do not decode are counted and skipped (the stage that wrote
/// them dead-lettered their originals).
pub fn read_sources(
    kafka: &KafkaArgs,
    sources: &[SourceRange],
    mut sink: impl FnMut(AnyEvent) -> Result<(), String>,
) -> Result<ReadStats, SourceError> {
    let consumer = consumer(kafka)?;
    let mut list = TopicPartitionList::new();
    let mut pending: BTreeSet<(String, i32)> = BTreeSet::new();
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for range in sources.iter().filter(|r| r.to > r.from) {
        let topic = format!("{}{}", kafka.topic_prefix, range.topic);
        list.add_partition_offset(&topic, range.partition, Offset::Offset(range.from))?;
        pending.insert((topic.clone(), range.partition));
        ends.insert((topic, range.partition), range.to);
    }
    let mut stats = ReadStats::default();
    if pending.is_empty() {
        return Ok(stats);
    }
    consumer.assign(&list)?;
    let mut idle = 0;
    while !pending.is_empty() {
        match consumer.poll(Duration::from_millis(500)) {
            None => {
                idle += 1;
                if idle > 240 {
                    return Err(SourceError::Stalled(
                        pending.iter().map(|(t, p)| format!("{t}[{p}]")).collect(),
                    ));
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                // The end of what is stable: done if it is past the range.
                let done: Vec<_> = pending
                    .iter()
                    .filter(|(topic, p)| *p == partition && {
                        let position = consumer
                            .position()
                            .ok()
                            .and_then(|tpl| tpl.find_partition(topic, *p).map(|e| e.offset()));
                        matches!(position, Some(Offset::Offset(o)) if o >= ends[&(topic.clone(), *p)])
                    })
                    .cloned()
                    .collect();
                for key in done {
                    pending.remove(&key);
                }
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(message)) => {
                idle = 0;
                let key = (message.topic().to_string(), message.partition());
                let Some(end) = ends.get(&key).copied() else {
                    continue;
                };
                if message.offset() >= end {
                    pending.remove(&key);
                    continue;
                }
                if message.offset() + 1 >= end {
                    pending.remove(&key);
                }
                stats.records += 1;
                match AnyEvent::decode(None, message.payload().unwrap_or_default()) {
                    Ok(event) => sink(event).map_err(SourceError::Sink)?,
                    Err(_) => stats.undecodable += 1,
                }
            }
        }
    }
    Ok(stats)
}

/// Why reading failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("no progress for 2 minutes on {0:?} (an open transaction, or the data is gone?)")]
    Stalled(Vec<String>),
    #[error("{0}")]
    Sink(String),
}
