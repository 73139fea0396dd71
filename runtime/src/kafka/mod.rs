//! Kafka plumbing: connection settings, the idempotent producer, the transactional
//! consume-transform-produce loop and topic administration.

mod admin;
pub mod follow;
pub mod inspect;
mod pipeline;
mod producer;
mod transactional;

use clap::Args;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};

pub use admin::{AppliedTopic, TopicChange, apply_topics, load_topic_specs};
pub use pipeline::{
    InputRecord, OutputRecord, PipelineConfig, PipelineError, ProcessError, StageContext,
    Transform, blocking, rewind, run_pipeline, stage_consumer,
};
pub use producer::{Delivered, EventProducer, ProduceError, await_all, await_delivery};
pub use transactional::{TransactionError, TransactionalWriter};

use chorus_schemas::{Envelope, EventData, HEADER_ID, HEADER_TYPE, HEADER_VERSION};

/// How to reach Kafka. Every service takes these flags.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated.
    #[arg(
        long,
        env = "CHORUS_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub brokers: String,
    /// Prefix prepended to every topic name (tests and shared clusters use it to keep
    /// deployments apart; empty in a dedicated cluster).
    #[arg(long, env = "CHORUS_TOPIC_PREFIX", default_value = "", global = true)]
    pub topic_prefix: String,
    /// Extra librdkafka client property as KEY=VALUE, repeatable (e.g.
    /// `security.protocol=SASL_SSL`, `sasl.mechanism=SCRAM-SHA-512`). Values are never
    /// logged; put secrets in the environment or the config file, not on the command line.
    #[arg(
        long = "kafka-property",
        env = "CHORUS_KAFKA_PROPERTIES",
        value_delimiter = ',',
        global = true
    )]
    pub properties: Vec<String>,
}

impl Default for KafkaArgs {
    fn default() -> Self {
        KafkaArgs {
            brokers: "127.0.0.1:9092".into(),
            topic_prefix: String::new(),
            properties: Vec::new(),
        }
    }
}

impl KafkaArgs {
    /// Base client settings: bootstrap servers, client id and the extra properties.
    pub fn client_config(&self, client_id: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", client_id);
        for property in &self.properties {
            if let Some((key, value)) = property.split_once('=') {
                config.set(key.trim(), value.trim());
            } else {
                tracing::warn!(property = %property.split('=').next().unwrap_or_default(), "ignoring kafka property without '='");
            }
        }
        config
    }

    /// The full name of a topic under this deployment's prefix.
    pub fn topic(&self, topic: chorus_schemas::Topic) -> String {
        topic.name(&self.topic_prefix)
    }
}

/// The Kafka headers of an event: type, version and id.
pub fn event_headers(event_type: &str, version: u16, id: &uuid::Uuid) -> OwnedHeaders {
    let version = version.to_string();
    let id = id.to_string();
    OwnedHeaders::new_with_capacity(3)
        .insert(Header {
            key: HEADER_TYPE,
            value: Some(event_type.as_bytes()),
        })
        .insert(Header {
            key: HEADER_VERSION,
            value: Some(version.as_bytes()),
        })
        .insert(Header {
            key: HEADER_ID,
            value: Some(id.as_bytes()),
        })
}

/// Headers of a typed envelope.
pub fn envelope_headers<T: EventData>(event: &Envelope<T>) -> OwnedHeaders {
    event_headers(&event.event_type, event.version, &event.id)
}
