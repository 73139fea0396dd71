#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Backend teams consume Chorus without Chorus code (issue 19): after the README's demo,
//! three consumers nobody here wrote in Rust (Python, TypeScript, Go; each with its
//! ecosystem's Kafka client and the CNCF CloudEvents SDK, `examples/consumers/`) read
//! every typed topic and the dead letters read-committed, parse each record as a strict
//! structured-mode CloudEvent and validate it against the schema they fetch from the
//! schema registry (Apicurio, started by infra/scripts). And the registry refuses an
//! incompatible schema change published through `chorus schemas publish`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use chorus_integration_tests::poi::run_chorus;
use chorus_integration_tests::{read_all, repo_root, service_port, test_kafka};
use chorus_runtime::kafka::{KafkaArgs, inspect};
use chorus_schema_registry::{Registry, subject};
use chorus_schemas::{EVENT_TYPES, Topic};

fn registry_url() -> String {
    format!("http://127.0.0.1:{}", service_port("REGISTRY_PORT", 8082))
}

/// The topics that hold Chorus events: all but the two intake topics (outsiders write
/// there, the demo malformed records on purpose) and the indexer's cursor (its state).
fn is_event_topic(topic: Topic) -> bool {
    !matches!(
        topic,
        Topic::Intake | Topic::ApiIntake | Topic::IndexerCursor
    )
}

/// The event topics under `prefix`, with the deployment prefix of each (the demo's live
/// part runs under a prefix of its own inside the given one).
fn event_topics(kafka: &KafkaArgs) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in inspect::topics_with_prefix(kafka, &kafka.topic_prefix).unwrap() {
        for topic in Topic::ALL.into_iter().filter(|t| is_event_topic(*t)) {
            if let Some(prefix) = name.strip_suffix(&topic.name(""))
                && (prefix.is_empty() || prefix.ends_with('.'))
            {
                out.push((prefix.to_owned(), name.clone()));
            }
        }
    }
    out
}

#[derive(Debug, serde::Deserialize)]
struct Counts {
    records: u64,
    parsed: u64,
    valid: u64,
}

#[derive(Debug, serde::Deserialize)]
struct ConsumerReport {
    consumer: String,
    records: u64,
    parsed: u64,
    valid: u64,
    duplicates: u64,
    by_topic: BTreeMap<String, Counts>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_in_three_languages_parse_and_validate_every_record_of_a_demo_run() {
    let kafka = test_kafka("consumers");
    // The README's first command, on a small workload, under this test's prefix (CI runs
    // it here rather than a second time after the tests).
    let (ok, output) = run_chorus(&kafka, &["demo", "--events", "3000", "--messages", "1"]);
    assert!(ok, "the demo failed:\n{output}");

    let topics = event_topics(&kafka);
    let prefixes: BTreeSet<&str> = topics.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        prefixes.len(),
        2,
        "the demo's topics and its live part's: {topics:?}"
    );
    for prefix in &prefixes {
        let mut deployment = kafka.clone();
        deployment.topic_prefix = (*prefix).to_owned();
        let (ok, output) = run_chorus(
            &deployment,
            &["schemas", "publish", "--registry", &registry_url()],
        );
        assert!(ok, "publishing the schemas under {prefix:?}:\n{output}");
    }

    // What Chorus itself reads back, read-committed: the count every consumer must match.
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for (_, topic) in &topics {
        expected.insert(topic.clone(), read_all(&kafka, topic).unwrap().len() as u64);
    }
    let total: u64 = expected.values().sum();
    let by_kind = |kind: Topic| -> u64 {
        expected
            .iter()
            .filter(|(name, _)| name.ends_with(&kind.name("")))
            .map(|(_, n)| n)
            .sum()
    };
    for kind in [
        Topic::ChatMessages,
        Topic::AgentCalls,
        Topic::InferenceJobs,
        Topic::InferenceResults,
        Topic::Feedback,
        Topic::Registry,
        Topic::ChainEvents,
        Topic::PoiScores,
        Topic::PoiCheckpoints,
        Topic::DeadLetters,
    ] {
        assert!(
            by_kind(kind) > 0,
            "the demo wrote nothing to {kind:?}: {expected:?}"
        );
    }

    let password_file = chorus_integration_tests::kafka_secrets_dir().join("reader.password");
    let topic_list = expected.keys().cloned().collect::<Vec<_>>().join(",");
    for language in ["python", "typescript", "go"] {
        let output = Command::new("bash")
            .arg(repo_root().join("examples/consumers/run.sh"))
            .arg(language)
            .args(["--bootstrap", &kafka.brokers])
            .args(["--username", "reader", "--password-file"])
            .arg(&password_file)
            .args(["--registry", &registry_url(), "--topic-prefix", ""])
            .args([
                "--group",
                &format!("{}chorus-reader-{language}", kafka.topic_prefix),
            ])
            .args(["--topics", &topic_list, "--until-end", "--quiet"])
            .args(["--timeout-seconds", "300"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let report: ConsumerReport = stdout
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str(line).ok())
            .unwrap_or_else(|| panic!("{language}: no report on stdout\n{stdout}\n{stderr}"));
        assert_eq!(report.consumer, language);
        assert_eq!(
            (
                report.records,
                report.parsed,
                report.valid,
                report.duplicates
            ),
            (total, total, total, 0),
            "{language}: records, parsed, valid, duplicates\n{stderr}"
        );
        for (topic, n) in &expected {
            let counts = report.by_topic.get(topic);
            let seen = counts.map_or((0, 0, 0), |c| (c.records, c.parsed, c.valid));
            assert_eq!(seen, (*n, *n, *n), "{language} on {topic}\n{stderr}");
        }
        assert!(
            output.status.success(),
            "{language} exited {}",
            output.status
        );
        eprintln!("{language}: {total} records, all parsed and valid");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_refuses_an_incompatible_schema_change() {
    let kafka = test_kafka("schemas");
    let publish = |from: Option<&std::path::Path>| {
        let mut args = vec![
            "schemas".to_owned(),
            "publish".into(),
            "--registry".into(),
            registry_url(),
        ];
        if let Some(dir) = from {
            args.push("--from".into());
            args.push(dir.to_string_lossy().into_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_chorus(&kafka, &args)
    };
    let (ok, output) = publish(None);
    assert!(ok, "{output}");
    assert_eq!(
        output.matches(" registered").count(),
        EVENT_TYPES.len(),
        "{output}"
    );
    let (ok, output) = publish(None);
    assert!(ok, "{output}");
    assert_eq!(
        output.matches(" unchanged").count(),
        EVENT_TYPES.len(),
        "publishing again changes nothing:\n{output}"
    );

    // A compatible change (feedback gains an optional field) and an incompatible one
    // (chat.message gains a required field: old messages lack it).
    let dir = repo_root().join(format!("target/test-logs/{}schemas", kafka.topic_prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let edit = |file: &str, change: &dyn Fn(&mut serde_json::Value)| {
        let mut schema: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(repo_root().join("schemas/json").join(file)).unwrap(),
        )
        .unwrap();
        change(&mut schema);
        std::fs::write(dir.join(file), schema.to_string()).unwrap();
    };
    edit("feedback.v1.json", &|s| {
        s["definitions"]["Feedback"]["properties"]["edited_at"] =
            serde_json::json!({ "type": ["string", "null"], "format": "date-time" });
    });
    edit("chat.message.v1.json", &|s| {
        s["definitions"]["ChatMessage"]["properties"]["thread_id"] =
            serde_json::json!({ "type": "string" });
        s["definitions"]["ChatMessage"]["required"]
            .as_array_mut()
            .unwrap()
            .push("thread_id".into());
    });
    let (ok, output) = publish(Some(&dir));
    assert!(
        !ok,
        "an incompatible change must fail the command:\n{output}"
    );
    let chat = subject(
        &kafka.topic_prefix,
        chorus_schemas::event_type("chat.message").unwrap(),
    );
    let feedback = subject(
        &kafka.topic_prefix,
        chorus_schemas::event_type("feedback").unwrap(),
    );
    assert!(
        output.contains(&format!(
            "{chat}  REFUSED: the registry refused the schema of {chat} as incompatible (BACKWARD)"
        )),
        "{output}"
    );
    assert!(
        output.contains("refused 1 incompatible schema(s)"),
        "{output}"
    );
    assert!(
        output.contains(&format!("{feedback}  version 2")),
        "{output}"
    );

    let registry = Registry::new(&registry_url()).unwrap();
    let latest = registry.latest(&chat).await.unwrap().unwrap();
    assert_eq!(latest.version, 1, "the refused schema was not registered");
    assert!(!latest.schema.contains("thread_id"));
    let latest = registry.latest(&feedback).await.unwrap().unwrap();
    assert_eq!(latest.version, 2);
    assert!(latest.schema.contains("edited_at"));
}
