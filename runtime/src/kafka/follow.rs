//! Following a topic from its beginning to rebuild state (registries, conversations):
//! read every committed record, resolve once caught up, keep applying new records in
//! the background until shutdown. Used for compacted state topics; no consumer group.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::pipeline::blocking;
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
    let consumer: StreamConsumer<super::ReadToEndContext> = kafka
        .client_config(client)
        // Assigned partitions; the group is only librdkafka's requirement, under the
        // principal's own prefix, and never commits.
        .set(
            "group.id",
            kafka.assign_only_group(&format!("{client}-assign-only")),
        )
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create_with_context(super::ReadToEndContext)?;
    // Each partition's high watermark at start (retried while a new topic has no
    // leader yet). Caught up with a partition when a record at or past it arrives, or at
    // its end (EOF). EOF alone is not enough: under steady traffic every fetch returns
    // new records and the end is never reported.
    let targets = blocking(|| inspect::end_offsets(kafka, topic))?;
    let partitions: Vec<i32> = targets.keys().copied().collect();
    let mut list = TopicPartitionList::new();
    for partition in &partitions {
        list.add_partition_offset(topic, *partition, Offset::Beginning)?;
    }
    consumer.assign(&list)?;
    let mut at_end: std::collections::BTreeSet<i32> = targets
        .iter()
        .filter(|(_, high)| **high <= 0)
        .map(|(partition, _)| *partition)
        .collect();
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
