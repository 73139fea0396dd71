use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use chorus_runtime::kafka::{KafkaArgs, TopicChange, apply_topics, load_topic_specs};

#[derive(Debug, Args)]
pub struct TopicsArgs {
    #[command(subcommand)]
    action: TopicsAction,
}

#[derive(Debug, Subcommand)]
enum TopicsAction {
    /// Create missing topics, align configs, grow partitions (idempotent).
    Apply {
        /// The topic definitions.
        #[arg(long, env = "CHORUS_TOPICS_FILE", default_value_os_t = super::repo_path("infra/topics/topics.toml"))]
        file: PathBuf,
        /// Replication factor of created topics (1 on a single local broker; 3 in production).
        #[arg(long, env = "CHORUS_REPLICATION_FACTOR", default_value_t = 1)]
        replication_factor: i32,
    },
}

pub async fn run(kafka: &KafkaArgs, args: TopicsArgs) -> anyhow::Result<()> {
    match args.action {
        TopicsAction::Apply {
            file,
            replication_factor,
        } => {
            let specs = load_topic_specs(&file)?;
            let report = apply_topics(kafka, &specs, replication_factor)
                .await
                .with_context(|| format!("applying {} to {}", file.display(), kafka.brokers))?;
            for topic in report {
                let change = match topic.change {
                    TopicChange::Created => "created".to_owned(),
                    TopicChange::Updated { partitions_from } => {
                        format!("partitions {partitions_from} -> {}", topic.partitions)
                    }
                    TopicChange::Unchanged => "up to date".to_owned(),
                };
                println!(
                    "{:<40} {:>3} partitions  {change}",
                    topic.name, topic.partitions
                );
            }
            Ok(())
        }
    }
}
