//! The idempotent producer every service writes events with.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use chorus_schemas::{AnyEvent, Envelope, EventData};

use super::{KafkaArgs, cloudevents_headers};
use crate::metrics;

/// Why an event could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("encoding event: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("delivery was cancelled (producer closed)")]
    Cancelled,
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// An idempotent (`enable.idempotence`, `acks=all`) producer. A full local queue makes
/// sends wait (backpressure, counted in `chorus_producer_backpressure_total`) instead
/// of failing; nothing is dropped.
#[derive(Clone)]
pub struct EventProducer {
    producer: FutureProducer,
    kafka: KafkaArgs,
    client: String,
}

impl std::fmt::Debug for EventProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventProducer")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl EventProducer {
    /// Creates the producer. `queue_max_messages` bounds the local queue (the point at
    /// which backpressure starts).
    pub fn new(
        kafka: &KafkaArgs,
        client: &str,
        queue_max_messages: usize,
    ) -> Result<Self, KafkaError> {
        let producer: FutureProducer = kafka
            .client_config(client)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set(
                "queue.buffering.max.messages",
                queue_max_messages.max(1).to_string(),
            )
            .set("message.timeout.ms", "120000")
            .create()?;
        // The series exists from the start (at zero), so alerts can rate it.
        metrics::PRODUCER_BACKPRESSURE.with_label_values(&[client]);
        Ok(EventProducer {
            producer,
            kafka: kafka.clone(),
            client: client.to_owned(),
        })
    }

    /// Produces a typed event to its topic and waits for the broker's acknowledgement.
    pub async fn send<T: EventData>(&self, event: &Envelope<T>) -> Result<Delivered, ProduceError> {
        let delivery = self.enqueue(event).await?;
        await_delivery(delivery).await
    }

    /// Produces a typed event to `topic` (the intake topic, say) and waits for the ack.
    pub async fn send_to<T: EventData>(
        &self,
        topic: &str,
        event: &Envelope<T>,
    ) -> Result<Delivered, ProduceError> {
        let delivery = self.enqueue_to(topic, event).await?;
        await_delivery(delivery).await
    }

    /// Queues a typed event (waiting while the queue is full) and returns the pending
    /// acknowledgement, so that callers can pipeline many sends.
    pub async fn enqueue<T: EventData>(
        &self,
        event: &Envelope<T>,
    ) -> Result<DeliveryFuture, ProduceError> {
        let payload = event.to_json()?;
        let topic = self.kafka.topic(T::TOPIC);
        self.enqueue_raw(
            &topic,
            Some(event.key.as_bytes()),
            &payload,
            Some(cloudevents_headers()),
        )
        .await
    }

    /// Queues a typed event to `topic` (the intake topic, say) with its key and headers.
    pub async fn enqueue_to<T: EventData>(
        &self,
        topic: &str,
        event: &Envelope<T>,
    ) -> Result<DeliveryFuture, ProduceError> {
        let payload = event.to_json()?;
        self.enqueue_raw(
            topic,
            Some(event.key.as_bytes()),
            &payload,
            Some(cloudevents_headers()),
        )
        .await
    }

    /// Queues a decoded event of any type to its own topic, with its key and headers.
    pub async fn enqueue_any(&self, event: &AnyEvent) -> Result<DeliveryFuture, ProduceError> {
        self.enqueue_any_to(&self.kafka.topic(event.topic()), event)
            .await
    }

    /// Queues a decoded event of any type to `topic` (the intake topic, say), with its
    /// key and headers.
    pub async fn enqueue_any_to(
        &self,
        topic: &str,
        event: &AnyEvent,
    ) -> Result<DeliveryFuture, ProduceError> {
        let payload = event.to_json()?;
        let headers = cloudevents_headers();
        self.enqueue_raw(topic, Some(event.key().as_bytes()), &payload, Some(headers))
            .await
    }

    /// Queues raw bytes (waiting while the queue is full).
    pub async fn enqueue_raw(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Result<DeliveryFuture, ProduceError> {
        self.enqueue_record(topic, None, key, payload, headers)
            .await
    }

    /// Queues raw bytes for one partition (replicating a log partition by partition).
    pub async fn enqueue_raw_to(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Result<DeliveryFuture, ProduceError> {
        self.enqueue_record(topic, Some(partition), key, payload, headers)
            .await
    }

    async fn enqueue_record(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Result<DeliveryFuture, ProduceError> {
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).payload(payload);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    metrics::EVENTS_OUT
                        .with_label_values(&[&self.client, topic])
                        .inc();
                    return Ok(delivery);
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    metrics::PRODUCER_BACKPRESSURE
                        .with_label_values(&[&self.client])
                        .inc();
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    /// Waits until every queued record is acknowledged (or `timeout` passes).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(Timeout::After(timeout))
    }

    /// Records waiting in the local queue.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }
}

/// Waits for one acknowledgement.
/// Waits for every delivery, in order ("enqueue all, then await every delivery"); the
/// first failure is returned. Returns how many were delivered.
pub async fn await_all(
    pending: impl IntoIterator<Item = DeliveryFuture>,
) -> Result<usize, ProduceError> {
    let mut delivered = 0;
    for delivery in pending {
        await_delivery(delivery).await?;
        delivered += 1;
    }
    Ok(delivered)
}

/// Waits for one delivery.
pub async fn await_delivery(delivery: DeliveryFuture) -> Result<Delivered, ProduceError> {
    match delivery.await {
        Ok(Ok(delivery)) => Ok(Delivered {
            partition: delivery.partition,
            offset: delivery.offset,
        }),
        Ok(Err((e, _))) => Err(e.into()),
        Err(_) => Err(ProduceError::Cancelled),
    }
}
