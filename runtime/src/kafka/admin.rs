//! Topic administration: create the topics of `infra/topics/topics.toml`, align their
//! configs, and grow partitions when the file asks for more.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;

use chorus_schemas::{CleanupPolicy, TopicSpec};

use super::KafkaArgs;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicFile {
    topic: Vec<TopicSpec>,
    /// Replication per environment (`[environment.<name>]`).
    #[serde(default)]
    environment: BTreeMap<String, Replication>,
}

/// How the topics of one environment are replicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replication {
    /// Replicas of each partition (the created topics' replication factor).
    pub factor: i32,
    /// `min.insync.replicas`: a write with acks=all (every Chorus producer) succeeds only
    /// once this many replicas have it, so an acknowledged record survives the loss of
    /// `factor - min_insync_replicas` brokers.
    pub min_insync_replicas: i32,
}

impl Replication {
    /// One broker: one replica, which must be in sync.
    pub const SINGLE: Replication = Replication {
        factor: 1,
        min_insync_replicas: 1,
    };
}

/// Errors of topic administration.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("topic {topic}: {reason}")]
    Invalid { topic: String, reason: String },
    #[error("kafka admin: {0}")]
    Kafka(#[from] KafkaError),
    #[error("topic {topic}: {code}")]
    Topic {
        topic: String,
        code: RDKafkaErrorCode,
    },
}

/// Reads and checks a topics file.
pub fn load_topic_specs(path: &Path) -> Result<Vec<TopicSpec>, AdminError> {
    Ok(load_topic_file(path)?.topic)
}

/// The replication of environment `name` in a topics file (`[environment.<name>]`).
pub fn load_replication(path: &Path, name: &str) -> Result<Replication, AdminError> {
    let file = load_topic_file(path)?;
    file.environment
        .get(name)
        .copied()
        .ok_or_else(|| AdminError::Invalid {
            topic: format!("[environment.{name}]"),
            reason: format!(
                "no such environment in {} (it has: {})",
                path.display(),
                file.environment
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

fn load_topic_file(path: &Path) -> Result<TopicFile, AdminError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| AdminError::Read {
        path: display.clone(),
        source,
    })?;
    let file: TopicFile = toml::from_str(&text).map_err(|source| AdminError::Parse {
        path: display,
        source,
    })?;
    for spec in &file.topic {
        if spec.partitions < 1 {
            return Err(AdminError::Invalid {
                topic: spec.name.clone(),
                reason: "partitions must be at least 1".into(),
            });
        }
        if spec.retention_ms < -1 || spec.retention_ms == 0 {
            return Err(AdminError::Invalid {
                topic: spec.name.clone(),
                reason: "retention_ms must be -1 or positive".into(),
            });
        }
    }
    for (name, replication) in &file.environment {
        if replication.factor < 1
            || replication.min_insync_replicas < 1
            || replication.min_insync_replicas > replication.factor
        {
            return Err(AdminError::Invalid {
                topic: format!("[environment.{name}]"),
                reason: format!(
                    "need 1 <= min_insync_replicas <= factor, got {} and {}",
                    replication.min_insync_replicas, replication.factor
                ),
            });
        }
    }
    Ok(file)
}

/// What `apply_topics` did to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicChange {
    Created,
    Updated { partitions_from: i32 },
    Unchanged,
}

/// One line of the apply report.
#[derive(Debug, Clone)]
pub struct AppliedTopic {
    pub name: String,
    pub partitions: i32,
    pub change: TopicChange,
}

fn configs(spec: &TopicSpec, replication: Replication) -> Vec<(&'static str, String)> {
    let policy = match spec.cleanup_policy {
        CleanupPolicy::Delete => "delete",
        CleanupPolicy::Compact => "compact",
    };
    vec![
        ("cleanup.policy", policy.to_owned()),
        ("retention.ms", spec.retention_ms.to_string()),
        (
            "min.insync.replicas",
            replication.min_insync_replicas.to_string(),
        ),
        // A replica that missed acknowledged writes never becomes leader.
        ("unclean.leader.election.enable", "false".to_owned()),
    ]
}

/// Creates missing topics (under the prefix) with `replication`, sets their configs and
/// grows partitions. Idempotent: running it twice changes nothing the second time. (The
/// replication factor of an existing topic is left as it is: changing it is a partition
/// reassignment, an operator's decision.)
pub async fn apply_topics(
    kafka: &KafkaArgs,
    specs: &[TopicSpec],
    replication: Replication,
) -> Result<Vec<AppliedTopic>, AdminError> {
    let admin: AdminClient<DefaultClientContext> = kafka.client_config("chorus-admin").create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(15))?;
    let existing: HashMap<String, i32> = metadata
        .topics()
        .iter()
        .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
        .collect();

    let mut report = Vec::new();
    let names: Vec<String> = specs
        .iter()
        .map(|s| format!("{}{}", kafka.topic_prefix, s.name))
        .collect();
    let mut to_create = Vec::new();
    let mut config_values = Vec::new();
    for (spec, name) in specs.iter().zip(&names) {
        config_values.push(configs(spec, replication));
        if !existing.contains_key(name) {
            to_create.push((spec, name));
        }
    }
    let new_topics: Vec<NewTopic<'_>> = to_create
        .iter()
        .map(|(spec, name)| {
            let index = specs
                .iter()
                .position(|s| std::ptr::eq(s, *spec))
                .unwrap_or(0);
            let mut topic = NewTopic::new(
                name,
                spec.partitions,
                TopicReplication::Fixed(replication.factor),
            );
            for (key, value) in &config_values[index] {
                topic = topic.set(key, value);
            }
            topic
        })
        .collect();
    if !new_topics.is_empty() {
        for result in admin.create_topics(&new_topics, &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(AdminError::Topic { topic, code }),
            }
        }
        let created: Vec<&str> = to_create.iter().map(|(_, name)| name.as_str()).collect();
        wait_for_leaders(&admin, &created).await?;
    }

    for ((spec, name), values) in specs.iter().zip(&names).zip(&config_values) {
        match existing.get(name) {
            None => report.push(AppliedTopic {
                name: name.clone(),
                partitions: spec.partitions,
                change: TopicChange::Created,
            }),
            Some(&current) => {
                let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
                for (key, value) in values {
                    alter = alter.set(key, value);
                }
                for result in admin.alter_configs(&[alter], &options).await? {
                    if let Err((_, code)) = result {
                        return Err(AdminError::Topic {
                            topic: name.clone(),
                            code,
                        });
                    }
                }
                if spec.partitions > current {
                    let grow = NewPartitions::new(name, spec.partitions as usize);
                    for result in admin.create_partitions(&[grow], &options).await? {
                        if let Err((topic, code)) = result {
                            return Err(AdminError::Topic { topic, code });
                        }
                    }
                    report.push(AppliedTopic {
                        name: name.clone(),
                        partitions: spec.partitions,
                        change: TopicChange::Updated {
                            partitions_from: current,
                        },
                    });
                } else {
                    if spec.partitions < current {
                        tracing::warn!(topic = %name, current, wanted = spec.partitions, "Kafka cannot shrink partitions; keeping the current count");
                    }
                    report.push(AppliedTopic {
                        name: name.clone(),
                        partitions: current,
                        change: TopicChange::Unchanged,
                    });
                }
            }
        }
    }
    Ok(report)
}

/// Waits until every partition of `topics` has a leader (new topics take a moment).
async fn wait_for_leaders(
    admin: &AdminClient<DefaultClientContext>,
    topics: &[&str],
) -> Result<(), AdminError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let metadata = admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))?;
        let ready = topics.iter().all(|name| {
            metadata.topics().iter().any(|t| {
                t.name() == *name
                    && t.error().is_none()
                    && !t.partitions().is_empty()
                    && t.partitions()
                        .iter()
                        .all(|p| p.leader() >= 0 && p.error().is_none())
            })
        });
        if ready {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(AdminError::Invalid {
                topic: topics.join(","),
                reason: "partitions have no leader after 30s".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
