//! Read-only views of topics and groups: end offsets, committed offsets, lag, and
//! reading a topic's committed records. Used by tools, the demo, benchmarks and tests.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{KafkaArgs, ReadToEndConsumer, ReadToEndContext};

const TIMEOUT: Duration = Duration::from_secs(10);

/// One committed record read back.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub event_type: Option<String>,
}

fn consumer(kafka: &KafkaArgs, group: Option<&str>) -> Result<ReadToEndConsumer, KafkaError> {
    let mut config = kafka.client_config("chorus-inspect");
    // librdkafka wants a group even to assign partitions; without one given, a group
    // under the principal's own prefix (which its ACLs cover). Naming another group only
    // fetches that group's committed offsets (DESCRIBE on it, nothing more).
    let group = group.map_or_else(|| kafka.assign_only_group("inspect"), str::to_owned);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true");
    config.create_with_context(ReadToEndContext)
}

/// Errors that go away by themselves (leader or coordinator moving or loading).
fn is_transient(error: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::NotCoordinator
                | Code::CoordinatorLoadInProgress
                | Code::CoordinatorNotAvailable
                | Code::NotLeaderForPartition
                | Code::LeaderNotAvailable
                | Code::RequestTimedOut
                | Code::OperationTimedOut
                | Code::BrokerTransportFailure
                | Code::AllBrokersDown
        )
    )
}

/// Partition ids of a topic.
pub fn partitions(kafka: &KafkaArgs, topic: &str) -> Result<Vec<i32>, KafkaError> {
    let consumer = consumer(kafka, None)?;
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// Every topic whose name starts with `prefix` (that the principal may describe).
pub fn topics_with_prefix(kafka: &KafkaArgs, prefix: &str) -> Result<Vec<String>, KafkaError> {
    let consumer = consumer(kafka, None)?;
    let metadata = consumer.fetch_metadata(None, TIMEOUT)?;
    let mut names: Vec<String> = metadata
        .topics()
        .iter()
        .map(|t| t.name())
        .filter(|name| name.starts_with(prefix))
        .map(str::to_owned)
        .collect();
    names.sort();
    Ok(names)
}

/// The end offset (high watermark; with read_committed semantics, the last stable
/// offset is at or below it) of every partition.
pub fn end_offsets(kafka: &KafkaArgs, topic: &str) -> Result<BTreeMap<i32, i64>, KafkaError> {
    let consumer = consumer(kafka, None)?;
    let mut out = BTreeMap::new();
    for partition in partitions(kafka, topic)? {
        let mut attempt = 0;
        let high = loop {
            match consumer.fetch_watermarks(topic, partition, TIMEOUT) {
                Ok((_low, high)) => break high,
                // A partition that just moved or was just created has no leader for a moment.
                Err(e) if attempt < 20 => {
                    attempt += 1;
                    tracing::debug!(topic, partition, error = %e, "retrying watermark fetch");
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => return Err(e),
            }
        };
        out.insert(partition, high);
    }
    Ok(out)
}

/// The offsets a consumer group committed on a topic (0 where it has none).
pub fn committed_offsets(
    kafka: &KafkaArgs,
    group: &str,
    topic: &str,
) -> Result<BTreeMap<i32, i64>, KafkaError> {
    let consumer = consumer(kafka, Some(group))?;
    let mut list = TopicPartitionList::new();
    for partition in partitions(kafka, topic)? {
        list.add_partition(topic, partition);
    }
    // The group coordinator answers "not coordinator" / "loading" for a while after a
    // broker start or for a new group: retry those for up to ~10 s.
    let mut attempt = 0;
    let committed = loop {
        match consumer.committed_offsets(list.clone(), TIMEOUT) {
            Ok(committed) => break committed,
            Err(e) if attempt < 40 && is_transient(&e) => {
                attempt += 1;
                tracing::debug!(group, topic, error = %e, "retrying committed offsets");
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => return Err(e),
        }
    };
    Ok(committed
        .elements()
        .iter()
        .map(|e| {
            (
                e.partition(),
                if let Offset::Offset(o) = e.offset() {
                    o
                } else {
                    0
                },
            )
        })
        .collect())
}

/// Records a group still has to consume on a topic. Transaction markers count as
/// records here, so a caught-up transactional input shows a small residue only when a
/// transaction is open.
pub fn group_lag(kafka: &KafkaArgs, group: &str, topic: &str) -> Result<i64, KafkaError> {
    let ends = end_offsets(kafka, topic)?;
    let committed = committed_offsets(kafka, group, topic)?;
    Ok(ends
        .iter()
        .map(|(p, end)| (end - committed.get(p).copied().unwrap_or(0)).max(0))
        .sum())
}

/// Reads the committed records of `topic` from `from` offsets (beginning where absent)
/// up to the current end.
pub fn read_committed(
    kafka: &KafkaArgs,
    topic: &str,
    from: &BTreeMap<i32, i64>,
) -> Result<Vec<StoredRecord>, KafkaError> {
    let consumer = consumer(kafka, None)?;
    let parts = partitions(kafka, topic)?;
    let mut list = TopicPartitionList::new();
    for partition in &parts {
        let start = from
            .get(partition)
            .map(|o| Offset::Offset(*o))
            .unwrap_or(Offset::Beginning);
        list.add_partition_offset(topic, *partition, start)?;
    }
    consumer.assign(&list)?;
    let mut done = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let mut idle_polls = 0;
    while done.len() < parts.len() {
        match consumer.poll(Duration::from_millis(500)) {
            None => {
                idle_polls += 1;
                if idle_polls > 60 {
                    break;
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                done.insert(partition);
            }
            Some(Err(e)) => return Err(e),
            Some(Ok(message)) => {
                idle_polls = 0;
                let event_type = message
                    .payload()
                    .and_then(chorus_schemas::peek_event_type)
                    .map(|info| info.type_name.to_owned());
                out.push(StoredRecord {
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    event_type,
                });
            }
        }
    }
    Ok(out)
}
