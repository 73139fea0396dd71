//! The idempotent producer every service writes events with.
//!
//! A `ThreadedProducer` (librdkafka's poll thread serves the delivery reports) whose
//! delivery callback counts down an [`Ack`] shared by the records it covers: one per
//! record for callers that wait for each acknowledgement (the ingest API), one per
//! batch for bulk writers ([`EventProducer::batch`]), so that a bulk write costs no
//! future, channel or allocation per record (issue 20; rust-rdkafka's `FutureProducer`
//! makes a boxed oneshot channel per record).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
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
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// The delivery state of one record or of a batch: records queued and not yet reported,
/// the first failure, the last success; the waiter is woken when the count reaches 0.
#[derive(Debug, Default)]
struct Ack {
    outstanding: AtomicUsize,
    outcome: Mutex<Outcome>,
    done: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Outcome {
    delivered: usize,
    last: Option<Delivered>,
    first_error: Option<KafkaError>,
}

impl Ack {
    fn report(&self, result: Result<Delivered, KafkaError>) {
        {
            let mut outcome = self
                .outcome
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match result {
                Ok(delivered) => {
                    outcome.delivered += 1;
                    outcome.last = Some(delivered);
                }
                Err(e) => {
                    outcome.first_error.get_or_insert(e);
                }
            }
        }
        if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }

    /// Waits until every record queued so far is reported.
    async fn wait(&self) -> Result<(usize, Option<Delivered>), ProduceError> {
        while self.outstanding.load(Ordering::Acquire) > 0 {
            self.done.notified().await;
        }
        let mut outcome = self
            .outcome
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match outcome.first_error.take() {
            Some(e) => Err(e.into()),
            None => Ok((outcome.delivered, outcome.last)),
        }
    }
}

/// The producer's librdkafka callbacks: each delivery report counts down its [`Ack`].
struct AckContext;

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Arc<Ack>;

    fn delivery(&self, result: &DeliveryResult<'_>, ack: Arc<Ack>) {
        ack.report(match result {
            Ok(message) => Ok(Delivered {
                partition: message.partition(),
                offset: message.offset(),
            }),
            Err((e, _)) => Err(e.clone()),
        });
    }
}

/// The pending acknowledgement of one record ([`await_delivery`]).
#[derive(Debug)]
#[must_use = "a delivery that is not awaited may have failed unnoticed"]
pub struct Delivery(Arc<Ack>);

/// Records queued together and acknowledged together ([`EventProducer::batch`]).
#[derive(Debug)]
#[must_use = "call finish() to learn whether the batch was delivered"]
pub struct ProduceBatch<'a> {
    producer: &'a EventProducer,
    ack: Arc<Ack>,
    /// The last topic's counter, so that a run of records to one topic looks its
    /// metric label up once.
    counter: Option<(String, prometheus::IntCounter)>,
}

impl ProduceBatch<'_> {
    /// Queues raw bytes (waiting while the queue is full).
    pub async fn enqueue_raw(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Result<(), ProduceError> {
        self.producer
            .queue(topic, None, key, payload, headers, &self.ack)
            .await?;
        match &self.counter {
            Some((last, counter)) if last == topic => counter.inc(),
            _ => {
                let counter = self.producer.events_out(topic);
                counter.inc();
                self.counter = Some((topic.to_owned(), counter));
            }
        }
        Ok(())
    }

    /// Queues a decoded event of any type to `topic`, with its key and headers.
    pub async fn enqueue_any_to(
        &mut self,
        topic: &str,
        event: &AnyEvent,
    ) -> Result<(), ProduceError> {
        let payload = event.to_json()?;
        self.enqueue_raw(
            topic,
            Some(event.key().as_bytes()),
            &payload,
            Some(cloudevents_headers()),
        )
        .await
    }

    /// Queues a decoded event of any type to its own topic.
    pub async fn enqueue_any(&mut self, event: &AnyEvent) -> Result<(), ProduceError> {
        let topic = self.producer.kafka.topic(event.topic());
        self.enqueue_any_to(&topic, event).await
    }

    /// Records queued in this batch and not yet acknowledged.
    pub fn outstanding(&self) -> usize {
        self.ack.outstanding.load(Ordering::Acquire)
    }

    /// Waits until every queued record is acknowledged; returns how many were, or the
    /// first failure.
    pub async fn finish(self) -> Result<usize, ProduceError> {
        self.ack.wait().await.map(|(delivered, _)| delivered)
    }
}

/// An idempotent (`enable.idempotence`, `acks=all`) producer. A full local queue makes
/// sends wait (backpressure, counted in `chorus_producer_backpressure_total`) instead
/// of failing; nothing is dropped.
#[derive(Clone)]
pub struct EventProducer {
    producer: ThreadedProducer<AckContext>,
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
    /// which backpressure starts). Records linger up to 5 ms to fill batches.
    pub fn new(
        kafka: &KafkaArgs,
        client: &str,
        queue_max_messages: usize,
    ) -> Result<Self, KafkaError> {
        Self::with_linger(kafka, client, queue_max_messages, Duration::from_millis(5))
    }

    /// Like [`EventProducer::new`], with librdkafka's `linger.ms`: how long a record
    /// waits for others to share its produce request. Writers that wait for each
    /// acknowledgement (the ingest API) pay it on every write.
    pub fn with_linger(
        kafka: &KafkaArgs,
        client: &str,
        queue_max_messages: usize,
        linger: Duration,
    ) -> Result<Self, KafkaError> {
        let producer: ThreadedProducer<AckContext> = kafka
            .client_config(client)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", linger.as_millis().to_string())
            .set("compression.type", "lz4")
            .set(
                "queue.buffering.max.messages",
                queue_max_messages.max(1).to_string(),
            )
            .set("message.timeout.ms", "120000")
            .create_with_context(AckContext)?;
        // The series exists from the start (at zero), so alerts can rate it.
        metrics::PRODUCER_BACKPRESSURE.with_label_values(&[client]);
        Ok(EventProducer {
            producer,
            kafka: kafka.clone(),
            client: client.to_owned(),
        })
    }

    /// A batch: records queued through it share one acknowledgement.
    pub fn batch(&self) -> ProduceBatch<'_> {
        ProduceBatch {
            producer: self,
            ack: Arc::default(),
            counter: None,
        }
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
    ) -> Result<Delivery, ProduceError> {
        let topic = self.kafka.topic(T::TOPIC);
        self.enqueue_to(&topic, event).await
    }

    /// Queues a typed event to `topic` (the intake topic, say) with its key and headers.
    pub async fn enqueue_to<T: EventData>(
        &self,
        topic: &str,
        event: &Envelope<T>,
    ) -> Result<Delivery, ProduceError> {
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
    pub async fn enqueue_any(&self, event: &AnyEvent) -> Result<Delivery, ProduceError> {
        self.enqueue_any_to(&self.kafka.topic(event.topic()), event)
            .await
    }

    /// Queues a decoded event of any type to `topic` (the intake topic, say), with its
    /// key and headers.
    pub async fn enqueue_any_to(
        &self,
        topic: &str,
        event: &AnyEvent,
    ) -> Result<Delivery, ProduceError> {
        let payload = event.to_json()?;
        self.enqueue_raw(
            topic,
            Some(event.key().as_bytes()),
            &payload,
            Some(cloudevents_headers()),
        )
        .await
    }

    /// Queues raw bytes (waiting while the queue is full).
    pub async fn enqueue_raw(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Result<Delivery, ProduceError> {
        self.enqueue_one(topic, None, key, payload, headers).await
    }

    /// Queues raw bytes for one partition (replicating a log partition by partition).
    pub async fn enqueue_raw_to(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Result<Delivery, ProduceError> {
        self.enqueue_one(topic, Some(partition), key, payload, headers)
            .await
    }

    async fn enqueue_one(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Result<Delivery, ProduceError> {
        let ack = Arc::new(Ack::default());
        self.queue(topic, partition, key, payload, headers, &ack)
            .await?;
        self.events_out(topic).inc();
        Ok(Delivery(ack))
    }

    /// Queues one record under `ack`, waiting while the local queue is full.
    async fn queue(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
        ack: &Arc<Ack>,
    ) -> Result<(), KafkaError> {
        let mut record: BaseRecord<'_, [u8], [u8], Arc<Ack>> =
            BaseRecord::with_opaque_to(topic, ack.clone()).payload(payload);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        // Counted before the send: the report can arrive before `send` returns.
        ack.outstanding.fetch_add(1, Ordering::AcqRel);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    metrics::PRODUCER_BACKPRESSURE
                        .with_label_values(&[&self.client])
                        .inc();
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => {
                    ack.outstanding.fetch_sub(1, Ordering::AcqRel);
                    return Err(e);
                }
            }
        }
    }

    fn events_out(&self, topic: &str) -> prometheus::IntCounter {
        metrics::EVENTS_OUT.with_label_values(&[&self.client, topic])
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

/// Waits for every delivery, in order ("enqueue all, then await every delivery"); the
/// first failure is returned. Returns how many were delivered.
pub async fn await_all(pending: impl IntoIterator<Item = Delivery>) -> Result<usize, ProduceError> {
    let mut delivered = 0;
    for delivery in pending {
        await_delivery(delivery).await?;
        delivered += 1;
    }
    Ok(delivered)
}

/// Waits for one delivery.
pub async fn await_delivery(delivery: Delivery) -> Result<Delivered, ProduceError> {
    let (_, last) = delivery.0.wait().await?;
    // A record's own Ack reports exactly one delivery.
    last.ok_or_else(|| ProduceError::Kafka(KafkaError::Canceled))
}
