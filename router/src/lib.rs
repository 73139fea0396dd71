//! `chorus router`: the transactional stage that validates raw events from the intake
//! topics and routes each to its typed topic ([`IntakeRouter`]), deciding ownership of
//! registry ids and conversations on the way ([`Ownership`]); invalid input is
//! dead-lettered. [`run`] runs it until shutdown.

mod intake;
mod ownership;

use std::time::Duration;

use chorus_runtime::Shutdown;
use std::sync::Arc;

use chorus_runtime::kafka::follow::follow_topic;
use chorus_runtime::kafka::{KafkaArgs, PipelineConfig, PipelineError, run_pipeline};
use chorus_runtime::metrics::Readiness;
use chorus_schemas::Topic;

pub use intake::{IntakeRouter, admission, decided_in_order};
pub use ownership::Ownership;

/// How a router instance runs.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Consumer group of the routers (all router instances share it).
    pub group: String,
    /// Stable identity of this instance; names its transactional id.
    pub instance_id: String,
    /// Most records per transaction.
    pub batch_max: usize,
    /// Longest a transaction collects records.
    pub batch_linger: Duration,
    /// Kafka transaction timeout.
    pub transaction_timeout: Duration,
    /// Consumer session timeout (how fast a dead instance's partitions move).
    pub session_timeout: Duration,
}

impl RouterConfig {
    fn pipeline(&self, kafka: &KafkaArgs) -> PipelineConfig {
        let mut config = PipelineConfig::new(
            "router",
            &self.group,
            vec![kafka.topic(Topic::Intake), kafka.topic(Topic::ApiIntake)],
            &self.instance_id,
        );
        config.batch_max = self.batch_max;
        config.batch_linger = self.batch_linger;
        config.transaction_timeout = self.transaction_timeout;
        config.session_timeout = self.session_timeout;
        config
    }
}

/// Routes the intake topic until `shutdown`, exactly once per record.
pub async fn run(
    kafka: &KafkaArgs,
    config: &RouterConfig,
    shutdown: Shutdown,
    readiness: Readiness,
) -> Result<(), PipelineError> {
    // What was decided before: every registration and conversation change, read
    // committed, then followed live (other instances decide other keys).
    let ownership = Arc::new(Ownership::default());
    for (topic, client) in [
        (Topic::Registry, "router-registry"),
        (Topic::ChatMessages, "router-conversations"),
    ] {
        let state = ownership.clone();
        follow_topic(
            kafka,
            &kafka.topic(topic),
            client,
            Arc::new(move |_, _, payload| state.apply_decided(payload)),
            shutdown.clone(),
        )
        .await
        .map_err(PipelineError::Setup)?;
    }
    let router = IntakeRouter::with_ownership(&kafka.topic_prefix, ownership);
    run_pipeline(kafka, &config.pipeline(kafka), router, shutdown, readiness).await
}
