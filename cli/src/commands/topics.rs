use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use chorus_runtime::kafka::{
    KafkaArgs, TopicChange, apply_topics, load_replication, load_topic_specs,
};

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
        /// The environment whose replication applies (`[environment.<name>]` in the file):
        /// `local` is one broker (1 replica), `cluster` three or more brokers (3 replicas,
        /// `min.insync.replicas` 2). Unclean leader election is off everywhere.
        #[arg(long, env = "CHORUS_TOPICS_ENVIRONMENT", default_value = "local")]
        environment: String,
    },
}

pub async fn run(kafka: &KafkaArgs, args: TopicsArgs) -> anyhow::Result<()> {
    match args.action {
        TopicsAction::Apply { file, environment } => {
            let specs = load_topic_specs(&file)?;
            let replication = load_replication(&file, &environment)?;
            let report = apply_topics(kafka, &specs, replication)
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
