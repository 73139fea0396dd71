//! Kafka plumbing: connection settings, the idempotent producer, the transactional
//! consume-transform-produce loop and topic administration.

mod admin;
pub mod follow;
pub mod inspect;
mod pipeline;
mod producer;
mod transactional;

use std::path::{Path, PathBuf};

use clap::Args;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};

pub use admin::{
    AppliedTopic, Replication, TopicChange, apply_topics, load_replication, load_topic_specs,
};
pub use pipeline::{
    InputRecord, OutputRecord, PipelineConfig, PipelineError, ProcessError, StageContext,
    Transform, blocking, rewind, run_pipeline, stage_consumer,
};
pub use producer::{
    Delivered, Delivery, EventProducer, ProduceBatch, ProduceError, await_all, await_delivery,
};
pub use transactional::{TransactionError, TransactionalWriter};

use chorus_schemas::{CLOUDEVENTS_JSON, HEADER_CONTENT_TYPE};

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
    /// SASL/SCRAM-SHA-512 user to authenticate as. Default: the role's own principal
    /// (router, orchestrator, inference-worker, indexer, scorer, sink, ingest, reader,
    /// admin), once a password source is configured; without one the connection is
    /// unauthenticated.
    #[arg(long = "kafka-user", env = "CHORUS_KAFKA_USER", global = true)]
    pub user: Option<String>,
    /// File holding the user's password (mode 600). Read once at start; never logged.
    #[arg(
        long = "kafka-password-file",
        env = "CHORUS_KAFKA_PASSWORD_FILE",
        global = true
    )]
    pub password_file: Option<PathBuf>,
    /// Directory of `<user>.password` files (what `infra/scripts/kafka-auth.sh secrets`
    /// writes): the password of the user when no --kafka-password-file is given.
    #[arg(
        long = "kafka-secrets-dir",
        env = "CHORUS_KAFKA_SECRETS_DIR",
        global = true
    )]
    pub secrets_dir: Option<PathBuf>,
    /// The password, once [`KafkaArgs::authenticate_as`] has read it.
    #[arg(skip)]
    pub password: Option<Password>,
}

/// A Kafka password: never printed, not even by `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// The secret itself, for a client that needs it in its own configuration.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// The Kafka principals of a deployment, one per role (`infra/kafka/principals`; the
/// broker's ACLs in `infra/kafka/acls` say what each may do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Principal {
    /// Topic administration; a super user.
    Admin,
    /// The HTTP ingest API.
    Ingest,
    /// Outside batch importers: the intake topic only.
    Importer,
    Router,
    Orchestrator,
    InferenceWorker,
    Indexer,
    Scorer,
    Sink,
    /// Analysts and outside teams: reads only.
    Reader,
}

impl Principal {
    pub const ALL: [Principal; 10] = [
        Principal::Admin,
        Principal::Ingest,
        Principal::Importer,
        Principal::Router,
        Principal::Orchestrator,
        Principal::InferenceWorker,
        Principal::Indexer,
        Principal::Scorer,
        Principal::Sink,
        Principal::Reader,
    ];

    /// The SCRAM user name.
    pub const fn user(self) -> &'static str {
        match self {
            Principal::Admin => "admin",
            Principal::Ingest => "ingest",
            Principal::Importer => "importer",
            Principal::Router => "router",
            Principal::Orchestrator => "orchestrator",
            Principal::InferenceWorker => "inference-worker",
            Principal::Indexer => "indexer",
            Principal::Scorer => "scorer",
            Principal::Sink => "sink",
            Principal::Reader => "reader",
        }
    }

    /// What the role's consumer groups and transactional ids start with, after the topic
    /// prefix (the ACLs grant these as PREFIXED patterns).
    pub fn id_prefix(self, topic_prefix: &str) -> String {
        format!("{topic_prefix}chorus-{}", self.user())
    }
}

/// Why Kafka credentials could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("Kafka password file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "Kafka password file {path} has mode {mode:03o}, readable by group or others; chmod 600 it"
    )]
    Mode { path: PathBuf, mode: u32 },
    #[error("Kafka password file {0} is empty")]
    Empty(PathBuf),
}

fn read_password(path: &Path) -> Result<Password, CredentialError> {
    let read = |source| CredentialError::Read {
        path: path.to_path_buf(),
        source,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CredentialError::Mode {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    let text = text.trim();
    if text.is_empty() {
        return Err(CredentialError::Empty(path.to_path_buf()));
    }
    Ok(Password(text.to_owned()))
}

impl Default for KafkaArgs {
    fn default() -> Self {
        KafkaArgs {
            brokers: "127.0.0.1:9092".into(),
            topic_prefix: String::new(),
            properties: Vec::new(),
            user: None,
            password_file: None,
            secrets_dir: None,
            password: None,
        }
    }
}

impl KafkaArgs {
    /// These settings, authenticating as `role` unless `--kafka-user` names another user,
    /// with the password from `CHORUS_KAFKA_PASSWORD` (the environment only, never a flag:
    /// how a Kubernetes Secret reaches a pod), else `--kafka-password-file`, else
    /// `<secrets dir>/<user>.password`. Without any password source, unchanged: the
    /// connection is unauthenticated.
    pub fn authenticate_as(&self, role: Principal) -> Result<KafkaArgs, CredentialError> {
        let from_env = std::env::var("CHORUS_KAFKA_PASSWORD")
            .ok()
            .filter(|p| !p.trim().is_empty())
            .map(|p| Password(p.trim().to_owned()));
        self.authenticate_with(role, from_env)
    }

    fn authenticate_with(
        &self,
        role: Principal,
        from_env: Option<Password>,
    ) -> Result<KafkaArgs, CredentialError> {
        let mut args = self.clone();
        let user = args.user.clone().unwrap_or_else(|| role.user().to_owned());
        let password = match (from_env, &args.password_file, &args.secrets_dir) {
            (Some(password), _, _) => password,
            (None, Some(file), _) => read_password(file)?,
            (None, None, Some(dir)) => read_password(&dir.join(format!("{user}.password")))?,
            (None, None, None) => return Ok(args),
        };
        args.password = Some(password);
        args.user = Some(user);
        Ok(args)
    }

    /// These settings as another principal of the same deployment (its password from the
    /// secrets directory, never this process's own): how one process (the demo) runs
    /// several roles, each with its own rights.
    pub fn as_principal(&self, role: Principal) -> Result<KafkaArgs, CredentialError> {
        KafkaArgs {
            user: None,
            password_file: None,
            password: None,
            ..self.clone()
        }
        .authenticate_with(role, None)
    }

    /// Base client settings: bootstrap servers, client id, the SASL credentials and the
    /// extra properties (which may override the security protocol, e.g. SASL_SSL).
    pub fn client_config(&self, client_id: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", client_id);
        if let (Some(user), Some(Password(password))) = (&self.user, &self.password) {
            config
                .set("security.protocol", "SASL_PLAINTEXT")
                .set("sasl.mechanism", "SCRAM-SHA-512")
                .set("sasl.username", user)
                .set("sasl.password", password);
        }
        self.apply_properties(&mut config);
        config
    }

    /// Sets the extra properties (`--kafka-property`) on `config`, last, so that they
    /// override the defaults a client was given.
    fn apply_properties(&self, config: &mut ClientConfig) {
        for property in &self.properties {
            if let Some((key, value)) = property.split_once('=') {
                config.set(key.trim(), value.trim());
            } else {
                tracing::warn!(property = %property.split('=').next().unwrap_or_default(), "ignoring kafka property without '='");
            }
        }
    }

    /// A consumer group id for a consumer that only assigns partitions and never commits
    /// (librdkafka needs one): `<topic prefix>chorus-<user>-<purpose>`, under the
    /// principal's own prefix, which its ACLs cover.
    pub fn assign_only_group(&self, purpose: &str) -> String {
        match &self.user {
            Some(user) => format!("{}chorus-{user}-{purpose}", self.topic_prefix),
            None => format!("{}chorus-{purpose}", self.topic_prefix),
        }
    }

    /// A transactional producer's settings: idempotent, `acks=all`, a 5 ms linger, lz4,
    /// and a short first retry backoff. The backoff matters for latency: a transaction
    /// that begins right after the previous commit returned finds the coordinator still
    /// writing that commit's markers, and its `AddOffsetsToTxn` is refused with
    /// `CONCURRENT_TRANSACTIONS`; librdkafka retries that after `retry.backoff.ms`
    /// (default 100 ms), which every back-to-back transaction of a live stage paid (the
    /// orchestrator's ~100 ms batch cycle, docs/decisions.md). The backoff still grows
    /// exponentially to `retry.backoff.max.ms` for a broker that stays away.
    pub fn transactional_producer_config(
        &self,
        client_id: &str,
        transactional_id: &str,
        transaction_timeout: std::time::Duration,
    ) -> ClientConfig {
        let mut config = self.client_config(client_id);
        config
            .set("transactional.id", transactional_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("retry.backoff.ms", "2")
            .set("retry.backoff.max.ms", "1000")
            .set(
                "transaction.timeout.ms",
                transaction_timeout.as_millis().to_string(),
            );
        // The operator's extra properties still win (e.g. a longer linger for a bulk stage).
        self.apply_properties(&mut config);
        config
    }

    /// The full name of a topic under this deployment's prefix.
    pub fn topic(&self, topic: chorus_schemas::Topic) -> String {
        topic.name(&self.topic_prefix)
    }
}

/// The context of the assign-only consumers that read to the end of their partitions
/// (`enable.partition.eof`: `follow_topic`, `inspect`, the scorer's source). rust-rdkafka
/// hands every error event to the code polling the consumer *and* to the context, whose
/// default logs it at `error`: the end of a partition (their normal signal) and the
/// FindCoordinator refusal for the group they never join would be logged as errors after a
/// command's report. The pollers decide what an error means; the context logs at debug.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadToEndContext;

impl rdkafka::ClientContext for ReadToEndContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "librdkafka error event (returned to the poller)");
    }
}

impl rdkafka::consumer::ConsumerContext for ReadToEndContext {}

/// A consumer reading to the end of its partitions, with [`ReadToEndContext`].
pub type ReadToEndConsumer = rdkafka::consumer::BaseConsumer<ReadToEndContext>;

/// The Kafka headers of a Chorus record: CloudEvents structured mode has one,
/// `content-type: application/cloudevents+json`; every attribute is in the value.
pub fn cloudevents_headers() -> OwnedHeaders {
    OwnedHeaders::new_with_capacity(1).insert(Header {
        key: HEADER_CONTENT_TYPE,
        value: Some(CLOUDEVENTS_JSON.as_bytes()),
    })
}
