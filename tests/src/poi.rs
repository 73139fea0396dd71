//! PoI test helpers: topics with a chosen partition count, producing events to their
//! topics (or a chosen partition), a scoring config whose epoch 0 spans everything.

use std::path::PathBuf;

use chorus_runtime::kafka::{EventProducer, KafkaArgs, apply_topics, load_topic_specs};
use chorus_schemas::AnyEvent;

/// Creates every topic under the prefix with `partitions` partitions each.
pub async fn create_topics_with(kafka: &KafkaArgs, partitions: i32) -> anyhow::Result<()> {
    let mut specs = load_topic_specs(&crate::repo_root().join("infra/topics/topics.toml"))?;
    for spec in &mut specs {
        spec.partitions = partitions;
    }
    apply_topics(kafka, &specs, chorus_runtime::kafka::Replication::SINGLE).await?;
    crate::grant_acls(kafka).await
}

/// Produces events to their topics (keyed as usual).
pub async fn produce_events(kafka: &KafkaArgs, events: &[AnyEvent]) -> anyhow::Result<()> {
    let producer = EventProducer::new(kafka, "test-poi-producer", 100_000)?;
    for chunk in events.chunks(50_000) {
        let mut batch = producer.batch();
        for event in chunk {
            batch.enqueue_any(event).await?;
        }
        batch.finish().await?;
    }
    Ok(())
}

/// The shipped scoring config with epoch 0 starting at the Unix epoch and lasting 100
/// years, written to a file under target/test-logs.
pub fn scoring_config_file(name: &str) -> anyhow::Result<(PathBuf, chorus_scoring::ScoringConfig)> {
    scoring_config_file_of(name, "scoring-v3.toml")
}

/// [`scoring_config_file`] from another shipped config (`scoring-v2.toml`, ...).
pub fn scoring_config_file_of(
    name: &str,
    shipped: &str,
) -> anyhow::Result<(PathBuf, chorus_scoring::ScoringConfig)> {
    let text = std::fs::read_to_string(crate::repo_root().join("infra/poi").join(shipped))?;
    let text = text
        .replace("genesis_ms = 1764547200000", "genesis_ms = 0")
        .replace("length_seconds = 86400", "length_seconds = 3153600000");
    let config = chorus_scoring::ScoringConfig::parse(&text)?;
    let path = crate::repo_root().join(format!("target/test-logs/{name}scoring.toml"));
    std::fs::create_dir_all(path.parent().unwrap_or(&crate::repo_root()))?;
    std::fs::write(&path, text)?;
    Ok((path, config))
}

/// The flags `chorus score`, `verify` and `proof` need for a test's epochs: a scoring
/// config whose epoch 0 spans everything, a work dir under target/test-logs, the anvil
/// RPC URL and the contracts' deployment file.
pub fn poi_flags(kafka: &KafkaArgs, rpc_url: &str, deployment: &std::path::Path) -> Vec<String> {
    let (config, _) = scoring_config_file(&kafka.topic_prefix).expect("scoring config");
    let work = crate::repo_root().join(format!("target/test-logs/{}poi", kafka.topic_prefix));
    vec![
        "--scoring-config".into(),
        config.to_string_lossy().into_owned(),
        "--work-dir".into(),
        work.to_string_lossy().into_owned(),
        "--rpc-url".into(),
        rpc_url.to_owned(),
        "--deployment".into(),
        deployment.to_string_lossy().into_owned(),
    ]
}

/// Runs `chorus <args>` to completion with the test's Kafka settings and anvil's dev key
/// The first JSON object in a command's output ([`run_chorus`] gives stdout then stderr,
/// so log lines may follow it).
pub fn first_json(out: &str) -> serde_json::Value {
    let start = out.find('{').expect("no JSON object in the output");
    serde_json::Deserializer::from_str(&out[start..])
        .into_iter::<serde_json::Value>()
        .next()
        .expect("no JSON object in the output")
        .expect("the output's JSON object parses")
}

/// as the chain key; returns (success, stdout + stderr).
pub fn run_chorus(kafka: &KafkaArgs, args: &[&str]) -> (bool, String) {
    let mut command = std::process::Command::new(crate::chorus_bin());
    crate::with_role_credentials(&mut command, kafka);
    let output = command
        .args([
            "--log",
            "warn",
            "--brokers",
            &kafka.brokers,
            "--topic-prefix",
            &kafka.topic_prefix,
        ])
        .args(args)
        .env("CHORUS_CHAIN_KEY", crate::chain::DEV_KEY_0)
        .output();
    match output {
        Ok(output) => (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        ),
        Err(e) => (false, format!("could not run chorus: {e}")),
    }
}

/// Every event of a synthetic PoI workload, in order, duplicates included.
pub fn synthetic_events(workload: chorus_scoring::synthetic::Workload) -> Vec<AnyEvent> {
    synthetic_events_with(workload, &chorus_scoring::synthetic::Adversaries::default())
}

/// The synthetic workload with adversaries added.
pub fn synthetic_events_with(
    workload: chorus_scoring::synthetic::Workload,
    adversaries: &chorus_scoring::synthetic::Adversaries,
) -> Vec<AnyEvent> {
    let mut events = Vec::with_capacity(usize::try_from(workload.events).unwrap_or(0));
    chorus_scoring::synthetic::generate_with(workload, adversaries, |e| {
        events.push(e.clone());
        Ok(())
    })
    .unwrap();
    events
}

/// Gives accounts standing on a test chain (poi-v3): `owner` bonds each amount for its
/// account, then `chorus indexer` indexes the chain up to its head into the test's
/// topics, so a scored epoch sees the bonds.
pub async fn bond_and_index(
    kafka: &KafkaArgs,
    owner: &chorus_chain::ChainClient,
    rpc_url: &str,
    deployment: &chorus_chain::Deployment,
    deployment_file: &std::path::Path,
    bonds: &[(alloy::primitives::Address, alloy::primitives::U256)],
) -> anyhow::Result<()> {
    use alloy::providers::Provider;
    chorus_chain::sponsor_bonds(owner, deployment, bonds).await?;
    let head = owner.provider().get_block_number().await?.to_string();
    let name = format!("{}indexer", kafka.topic_prefix);
    let file = deployment_file.to_string_lossy().to_string();
    let indexer = crate::RoleCommand::new(&["indexer"])
        .metrics_addr("127.0.0.1:0")
        .args([
            "--rpc-url",
            rpc_url,
            "--deployment",
            &file,
            "--name",
            &name,
            "--confirmations",
            "0",
            "--stop-at-block",
            &head,
            "--no-progress",
        ]);
    let (ok, out) = run_chorus(kafka, &indexer.argv());
    anyhow::ensure!(ok, "indexer: {out}");
    Ok(())
}
