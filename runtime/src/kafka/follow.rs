//! Following a topic from its beginning to rebuild state (registries, conversations):
//! read every committed record, resolve once caught up, keep applying new records in
//! the background until shutdown. Used for compacted state topics; no consumer group.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{KafkaArgs, inspect};
use crate::Shutdown;

/// What a follower does with each record: `apply(partition, offset, value)`.
pub type ApplyRecord = Arc<dyn Fn(i32, i64, &[u8]) + Send + Sync>;

/// Applies every record value of `topic` (full name) with `apply(partition, offset,
/// value)`: returns after the records present at start (up to each partition's high
/// watermark then) were applied; later records are applied by a background task until
/// `shutdown`.
pub async fn follow_topic(
    kafka: &KafkaArgs,
    topic: &str,
    client: &str,
    apply: ApplyRecord,
    shutdown: Shutdown,
) -> Result<usize, KafkaError> {
    let consumer: StreamConsumer = kafka
        .client_config(client)
        .set("group.id", format!("{client}-assign-only"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()?;
    let partitions = inspect::partitions(kafka, topic)?;
    let mut list = TopicPartitionList::new();
    for partition in &partitions {
        list.add_partition_offset(topic, *partition, Offset::Beginning)?;
    }
    consumer.assign(&list)?;
    // Caught up with a partition when a record at or past its high watermark at start
    // arrives, or at its end (EOF). EOF alone is not enough: under steady traffic
    // every fetch returns new records and the end is never reported.
    let mut targets = std::collections::HashMap::new();
    let mut at_end = std::collections::BTreeSet::new();
    for partition in &partitions {
        let (low, high) = watermarks(&consumer, topic, *partition).await?;
        if high <= low {
            at_end.insert(*partition);
        }
        targets.insert(*partition, high);
    }
    let mut applied = 0;
    while at_end.len() < partitions.len() {
        match tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await {
            Err(_) => {
                tracing::warn!(
                    topic,
                    caught_up = at_end.len(),
                    partitions = partitions.len(),
                    applied,
                    "no record or end of partition for 30 s; continuing with what was read"
                );
                break;
            }
            Ok(Err(KafkaError::PartitionEOF(p))) => {
                if at_end.insert(p) {
                    tracing::debug!(topic, partition = p, applied, "caught up with partition");
                }
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(message)) => {
                if let Some(payload) = message.payload() {
                    apply(message.partition(), message.offset(), payload);
                    applied += 1;
                }
                let partition = message.partition();
                if targets
                    .get(&partition)
                    .is_some_and(|high| message.offset() + 1 >= *high)
                    && at_end.insert(partition)
                {
                    tracing::debug!(topic, partition, applied, "caught up with partition");
                }
            }
        }
    }
    let topic_name = topic.to_owned();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.triggered() => break,
                message = consumer.recv() => match message {
                    Ok(message) => {
                        if let Some(payload) = message.payload() {
                            apply(message.partition(), message.offset(), payload);
                        }
                    }
                    Err(KafkaError::PartitionEOF(_)) => {}
                    Err(e) => tracing::warn!(topic = %topic_name, error = %e, "follower consumer error"),
                }
            }
        }
    });
    Ok(applied)
}

/// A partition's (low, high) watermarks. Right after a topic is created its partitions
/// may have no leader yet, so leader errors are retried for up to 30 s.
async fn watermarks(
    consumer: &StreamConsumer,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), KafkaError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
            Err(e)
                if matches!(
                    e.rdkafka_error_code(),
                    Some(
                        RDKafkaErrorCode::NotLeaderForPartition
                            | RDKafkaErrorCode::LeaderNotAvailable
                            | RDKafkaErrorCode::UnknownTopicOrPartition
                    )
                ) && tokio::time::Instant::now() < deadline =>
            {
                tracing::debug!(topic, partition, error = %e, "no partition leader yet; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}
