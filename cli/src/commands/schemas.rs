//! `chorus schemas`: the JSON Schema of every event type, written to files or published
//! to a schema registry.

use std::path::PathBuf;

use anyhow::Context;
use chorus_runtime::kafka::KafkaArgs;
use chorus_schema_registry::{Registry, SchemaDocument, builtin_documents, subject};
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct SchemasArgs {
    #[command(subcommand)]
    command: SchemasCommand,
}

#[derive(Debug, Subcommand)]
enum SchemasCommand {
    /// Write the CloudEvents JSON Schema of every event type (`<type>.v<version>.json`,
    /// what `schemas/json/` holds).
    Export {
        /// Directory to write into.
        #[arg(long, default_value = "schemas/json")]
        dir: PathBuf,
    },
    /// Register every event type's schema in a Confluent-compatible schema registry
    /// (Apicurio Registry's /apis/ccompat/v7), one subject per type under the
    /// TopicRecordNameStrategy (`<topic>-<CloudEvents type>`, topics under
    /// --topic-prefix), each set to BACKWARD compatibility. Registering the same schema
    /// again changes nothing; a schema the registry finds incompatible with the
    /// subject's latest version is refused, and the command fails naming the subject
    /// and the registry's reason.
    Publish {
        /// The registry's URL (its root, or the .../apis/ccompat/v7 API root).
        #[arg(
            long,
            env = "CHORUS_SCHEMA_REGISTRY_URL",
            default_value = "http://127.0.0.1:8082"
        )]
        registry: String,
        /// Publish the schema files of this directory (`<type>.v<version>.json`, as
        /// `export` writes them) instead of the ones built into this binary: how a
        /// schema change is checked before it ships.
        #[arg(long)]
        from: Option<PathBuf>,
    },
}

pub async fn run(kafka: &KafkaArgs, args: SchemasArgs) -> anyhow::Result<()> {
    match args.command {
        SchemasCommand::Export { dir } => export(&dir),
        SchemasCommand::Publish { registry, from } => {
            let documents = match from {
                Some(dir) => documents_from(&dir, &kafka.topic_prefix)?,
                None => builtin_documents(&kafka.topic_prefix)?,
            };
            publish(&registry, &documents).await
        }
    }
}

fn export(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for file in chorus_schemas::json_schema::render_all()? {
        let path = dir.join(&file.file_name);
        std::fs::write(&path, &file.content)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

/// The schema files of `dir`, one per event type this binary knows.
fn documents_from(
    dir: &std::path::Path,
    topic_prefix: &str,
) -> anyhow::Result<Vec<SchemaDocument>> {
    let mut documents = Vec::new();
    for info in chorus_schemas::EVENT_TYPES {
        let path = dir.join(format!("{}.v{}.json", info.type_name, info.version));
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        documents.push(SchemaDocument {
            subject: subject(topic_prefix, info),
            schema: value.to_string(),
        });
    }
    anyhow::ensure!(
        !documents.is_empty(),
        "no schema files (<type>.v<version>.json) in {}",
        dir.display()
    );
    Ok(documents)
}

async fn publish(url: &str, documents: &[SchemaDocument]) -> anyhow::Result<()> {
    let registry = Registry::new(url)?;
    let mut refused = Vec::new();
    for document in documents {
        match registry.publish(document).await {
            Ok(published) => println!(
                "{}  version {}  id {}  {}",
                published.subject,
                published.version,
                published.id,
                if published.new_version {
                    "registered"
                } else {
                    "unchanged"
                }
            ),
            Err(error @ chorus_schema_registry::RegistryError::Incompatible { .. }) => {
                println!("{}  REFUSED: {error}", document.subject);
                refused.push(document.subject.clone());
            }
            Err(error) => return Err(error.into()),
        }
    }
    anyhow::ensure!(
        refused.is_empty(),
        "the schema registry refused {} incompatible schema(s): {}",
        refused.len(),
        refused.join(", ")
    );
    Ok(())
}
