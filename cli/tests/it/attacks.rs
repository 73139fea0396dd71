#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The attack suite: what someone holding one role's credentials (or only write access
//! to intake) tries, against the real broker with SASL/SCRAM and the StandardAuthorizer
//! on, and the real scorer, chain and SQL paths. docs/security.md lists each attack with
//! the test here that tries it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use alloy::primitives::{Address, B256};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, FutureProducer, FutureRecord, Producer};

use chorus_chain::contracts::PoiDistributor;
use chorus_chain::merkle::{Claim, ClaimTree};
use chorus_integration_tests::chain::{Anvil, deploy};
use chorus_integration_tests::poi::{
    create_topics_with, poi_flags, produce_events, run_chorus, synthetic_events,
};
use chorus_integration_tests::*;
use chorus_runtime::kafka::{EventProducer, KafkaArgs, Principal, await_delivery};
use chorus_schemas::*;
use chorus_scoring::synthetic::Workload;

/// The topics (base names) each principal may write, from the ACL matrix itself.
fn writable_topics() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(repo_root().join("infra/kafka/acls")).unwrap();
    let mut writable: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [principal, "WRITE", "TOPIC", "LITERAL", topic] = fields[..] {
            writable
                .entry(principal.to_owned())
                .or_default()
                .insert(topic.to_owned());
        }
    }
    writable
}

/// Produces one record to `topic` as `kafka`'s principal (a plain producer, so that the
/// answer is the topic's ACL, not the idempotent producer's id request); the broker's answer.
async fn try_write(kafka: &KafkaArgs, topic: &str) -> Result<(), String> {
    let producer: FutureProducer = kafka
        .client_config("attack")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "20000")
        .create()
        .map_err(|e| e.to_string())?;
    let record = FutureRecord::to(topic)
        .key("attack")
        .payload("{\"forged\":true}");
    producer
        .send(record, Duration::from_secs(20))
        .await
        .map(|_| ())
        .map_err(|(e, _)| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_principal_is_refused_every_topic_it_does_not_own() {
    let admin = test_kafka("authz");
    create_topics(&admin).await.unwrap();
    let writable = writable_topics();
    let mut refused = 0;
    for principal in Principal::ALL {
        if principal == Principal::Admin {
            continue;
        }
        let kafka = as_principal(&admin, principal);
        let own = writable.get(principal.user()).cloned().unwrap_or_default();
        for topic in Topic::ALL {
            let name = admin.topic(topic);
            let outcome = try_write(&kafka, &name).await;
            if own.contains(topic.base_name()) {
                // The control: what the matrix grants works, so the refusals are real.
                assert!(
                    outcome.is_ok(),
                    "{} may write {name}: {outcome:?}",
                    principal.user()
                );
            } else {
                let error = outcome.expect_err(&format!(
                    "{} wrote {name}, which it does not own",
                    principal.user()
                ));
                assert!(
                    error.to_lowercase().contains("authoriz"),
                    "{} writing {name}: not an authorization error: {error}",
                    principal.user()
                );
                refused += 1;
            }
        }
    }
    assert!(refused > 80, "only {refused} refusals");
    // Nothing the refused writes tried reached a topic: each topic holds exactly one
    // record per principal allowed to write it.
    for topic in Topic::ALL {
        let expected = writable
            .values()
            .filter(|topics| topics.contains(topic.base_name()))
            .count();
        let records = read_all(&admin, &admin.topic(topic)).unwrap();
        assert_eq!(records.len(), expected, "{}", admin.topic(topic));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_cannot_join_another_roles_group_or_take_its_transactional_id() {
    let admin = test_kafka("authz-ids");
    create_topics(&admin).await.unwrap();
    let router = as_principal(&admin, Principal::Router);
    let prefix = &admin.topic_prefix;

    // Joining the orchestrator's group (and committing for it) would make it skip input.
    let consumer: BaseConsumer = router
        .client_config("attack")
        .set("group.id", format!("{prefix}chorus-orchestrator"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[&admin.topic(Topic::Intake)]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let error = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the router joined the orchestrator's group unrefused"
        );
        if let Some(Err(e)) = consumer.poll(Duration::from_millis(500)) {
            break e;
        }
    };
    assert!(
        format!("{error}").to_lowercase().contains("authoriz"),
        "{error}"
    );

    // Fencing the scorer's producer would abort its transaction.
    let producer: BaseProducer = router
        .client_config("attack")
        .set("transactional.id", format!("{prefix}chorus-scorer-main"))
        .create()
        .unwrap();
    let error = producer
        .init_transactions(Duration::from_secs(20))
        .expect_err("the router took the scorer's transactional id");
    assert!(
        format!("{error}").to_lowercase().contains("authoriz"),
        "{error}"
    );

    // Its own prefix is granted.
    let own: BaseProducer = router
        .client_config("own")
        .set("transactional.id", format!("{prefix}chorus-router-x"))
        .create()
        .unwrap();
    own.init_transactions(Duration::from_secs(20)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_results_scores_checkpoints_and_chain_logs_through_intake_are_dead_lettered() {
    let admin = test_kafka("forge");
    create_topics(&admin).await.unwrap();
    let importer = as_principal(&admin, Principal::Importer);
    let producer = EventProducer::new(&importer, "outsider", 1_000).unwrap();
    let intake = admin.topic(Topic::Intake);
    let forged: Vec<AnyEvent> = samples::all()
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                AnyEvent::PoiScore(_)
                    | AnyEvent::PoiCheckpoint(_)
                    | AnyEvent::ChainLog(_)
                    | AnyEvent::InferenceResult(_)
            )
        })
        .collect();
    assert_eq!(forged.len(), 4);
    // The control: a person's message goes through.
    let person = AnyEvent::ChatMessage(Envelope::new(
        "outsider",
        ChatMessage {
            conversation_id: "conv-attack".into(),
            author_kind: AuthorKind::Human,
            author_id: format!("{:#x}", Address::repeat_byte(0x11)),
            content: "hello".into(),
            mentions: vec![],
            reply_to: None,
            hop: 0,
            job_id: None,
        },
    ));
    for event in forged.iter().chain([&person]) {
        let payload = event.to_json().unwrap();
        let delivery = producer
            .enqueue_raw(&intake, Some(event.key().as_bytes()), &payload, None)
            .await
            .unwrap();
        await_delivery(delivery).await.unwrap();
    }
    // A 1,000,000 CHR score written straight to the scores topic is refused by the broker.
    let scores = admin.topic(Topic::PoiScores);
    assert!(try_write(&importer, &scores).await.is_err());

    let group = format!("{}chorus-router", admin.topic_prefix);
    let mut router = spawn_role(
        &admin,
        "router",
        &RoleCommand::new(&["router"])
            .member(&group, &group)
            .metrics_addr("127.0.0.1:0"),
    )
    .unwrap();
    let dead_topic = admin.topic(Topic::DeadLetters);
    wait_for(
        "the router to route intake",
        Duration::from_secs(90),
        || {
            read_all(&admin, &dead_topic).unwrap().len() >= forged.len()
                && !read_all(&admin, &admin.topic(Topic::ChatMessages))
                    .unwrap()
                    .is_empty()
        },
    )
    .unwrap();
    terminate(&mut router, Duration::from_secs(30)).unwrap();

    let dead: Vec<DeadLetter> = read_all(&admin, &dead_topic)
        .unwrap()
        .iter()
        .map(|r| Envelope::<DeadLetter>::from_json(&r.payload).unwrap().data)
        .collect();
    assert_eq!(dead.len(), forged.len(), "{dead:?}");
    for letter in &dead {
        assert!(
            letter.reason.contains("cannot be submitted through intake"),
            "{letter:?}"
        );
    }
    for topic in [
        Topic::PoiScores,
        Topic::PoiCheckpoints,
        Topic::ChainEvents,
        Topic::InferenceResults,
    ] {
        assert!(
            read_all(&admin, &admin.topic(topic)).unwrap().is_empty(),
            "something reached {}",
            admin.topic(topic)
        );
    }
}

const MILLION_CHR: &str = "1000000000000000000000000";

/// A payout to the attacker alone: its claim root and the score that backs it.
fn forged_payout() -> (String, Envelope<PoiScore>) {
    let attacker = Address::repeat_byte(0x66);
    let amount = alloy::primitives::U256::from_str_radix(MILLION_CHR, 10).unwrap();
    let tree = ClaimTree::build(&[Claim {
        account: attacker,
        cumulative_amount: amount,
    }])
    .unwrap();
    let score = Envelope::new(
        "scoring",
        PoiScore {
            epoch: 0,
            account: format!("{attacker:#x}"),
            role: ContributorRole::Provider,
            points: 1,
            items: 1,
            amount_wei: MILLION_CHR.into(),
        },
    );
    (format!("{:#x}", tree.root()), score)
}

/// Records a forged epoch 0 (scores, then the checkpoint) with the scorer's credentials.
async fn record_forgery(kafka: &KafkaArgs, root: &str, manifest: String) {
    let (_, score) = forged_payout();
    let checkpoint = Envelope::new(
        "scoring",
        PoiCheckpoint {
            epoch: 0,
            merkle_root: root.to_owned(),
            manifest_hash: format!("{:#x}", B256::repeat_byte(0x01)),
            config_hash: String::new(),
            total_amount_wei: MILLION_CHR.into(),
            accounts: 1,
            chain_id: 56,
            distributor: String::new(),
            tx_hash: None,
            manifest_json: Some(manifest),
        },
    );
    let stolen = EventProducer::new(&as_principal(kafka, Principal::Scorer), "stolen", 10).unwrap();
    stolen.send(&score).await.unwrap();
    stolen.send(&checkpoint).await.unwrap();
}

/// A PoI workload in a fresh log, with anvil and the contracts.
async fn scored_log(name: &str) -> (KafkaArgs, Anvil, chorus_chain::Deployment, Vec<String>) {
    let kafka = test_kafka(name);
    create_topics_with(&kafka, 2).await.unwrap();
    let events = synthetic_events(Workload {
        events: 1_500,
        users: 30,
        agent_developers: 4,
        providers: 3,
        seed: 5,
    });
    produce_events(&kafka, &events).await.unwrap();
    let anvil = Anvil::start().unwrap();
    let (deployment, path) = deploy(&anvil.client(), &kafka.topic_prefix).await.unwrap();
    let flags = poi_flags(&kafka, &anvil.url(), &path);
    (kafka, anvil, deployment, flags)
}

async fn root_on_chain(anvil: &Anvil, deployment: &chorus_chain::Deployment) -> B256 {
    PoiDistributor::new(deployment.poi_distributor, anvil.client().provider())
        .rootOf(0)
        .call()
        .await
        .unwrap()
}

/// Runs `chorus score --epoch 0` on chain; (success, output, metrics file text).
fn score_on_chain(kafka: &KafkaArgs, flags: &[String]) -> (bool, String, String) {
    let metrics = repo_root().join(format!(
        "target/test-logs/{}score-metrics.prom",
        kafka.topic_prefix
    ));
    let metrics_arg = metrics.display().to_string();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (ok, out) = run_chorus(
        kafka,
        &[
            &["score", "--epoch", "0", "--allow-open"][..],
            &flags,
            &["--metrics-file", &metrics_arg],
        ]
        .concat(),
    );
    (
        ok,
        out,
        std::fs::read_to_string(&metrics).unwrap_or_default(),
    )
}

fn refusals(prom: &str, reason: &str) -> bool {
    prom.lines().any(|l| {
        l.starts_with("chorus_poi_checkpoint_refusals_total")
            && l.contains(reason)
            && l.ends_with(" 1")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_against_a_forged_checkpoint_with_its_own_window_sends_nothing() {
    let (kafka, anvil, deployment, flags) = scored_log("forged-window").await;
    let (root, _) = forged_payout();
    record_forgery(
        &kafka,
        &root,
        r#"{"manifest_version":1,"epoch":0,"window_start_ms":0,"window_end_ms":1,"config_version":"x","config_hash":"0x00","sources":[]}"#.into(),
    )
    .await;
    let (ok, out, prom) = score_on_chain(&kafka, &flags);
    assert!(!ok, "the scorer accepted a forged checkpoint: {out}");
    assert!(
        out.contains("epoch 0") && out.contains("nothing was sent"),
        "{out}"
    );
    assert!(refusals(&prom, "manifest_mismatch"), "{prom}");
    assert_eq!(
        root_on_chain(&anvil, &deployment).await,
        B256::ZERO,
        "a root was sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_against_a_forged_checkpoint_of_the_real_window_names_both_roots_and_sends_nothing() {
    let (kafka, anvil, deployment, flags) = scored_log("forged-root").await;
    // The forger plans the real window exactly as the scorer would, so only the root lies.
    let (_, config) =
        chorus_integration_tests::poi::scoring_config_file(&kafka.topic_prefix).unwrap();
    let (start, _) = config.window(0);
    let end = chrono::Utc::now().timestamp_millis();
    let lookback = i64::try_from(config.epoch.length_seconds * 1000).unwrap_or(i64::MAX);
    let sources = chorus_scoring::source::plan_sources(&kafka, start, end, lookback).unwrap();
    let manifest = chorus_scoring::Manifest {
        manifest_version: 1,
        epoch: 0,
        window_start_ms: start,
        window_end_ms: end,
        config_version: config.version.clone(),
        config_hash: format!("{:#x}", config.hash()),
        sources,
    };
    let (root, _) = forged_payout();
    record_forgery(&kafka, &root, serde_json::to_string(&manifest).unwrap()).await;
    let (ok, out, prom) = score_on_chain(&kafka, &flags);
    assert!(!ok, "the scorer accepted a forged root: {out}");
    assert!(
        out.contains(&root) && out.contains("recomputing the epoch from the log gives 0x"),
        "the error names both roots: {out}"
    );
    assert!(
        out.contains("epoch 0") && out.contains("nothing was sent"),
        "{out}"
    );
    assert!(refusals(&prom, "root_mismatch"), "{prom}");
    assert_eq!(
        root_on_chain(&anvil, &deployment).await,
        B256::ZERO,
        "a root was sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_score_added_after_the_checkpoint_stops_the_scorer() {
    let (kafka, anvil, deployment, flags) = scored_log("forged-score").await;
    let plain: Vec<&str> = flags.iter().map(String::as_str).collect();
    // An honest epoch 0, recorded but not yet on chain.
    let (ok, out) = run_chorus(
        &kafka,
        &[
            &["score", "--epoch", "0", "--allow-open", "--no-chain"][..],
            &plain,
        ]
        .concat(),
    );
    assert!(ok, "{out}");
    // Then a score slipped in for the attacker (later epochs pay cumulative amounts).
    let (_, score) = forged_payout();
    EventProducer::new(&as_principal(&kafka, Principal::Scorer), "stolen", 10)
        .unwrap()
        .send(&score)
        .await
        .unwrap();
    let (ok, out, prom) = score_on_chain(&kafka, &flags);
    assert!(!ok, "{out}");
    assert!(out.contains("the recorded scores give root"), "{out}");
    assert!(refusals(&prom, "scores_mismatch"), "{prom}");
    assert_eq!(
        root_on_chain(&anvil, &deployment).await,
        B256::ZERO,
        "a root was sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_key_is_refused_off_anvil_and_a_missing_key_is_an_error() {
    let kafka = test_kafka("dev-key");
    let deployment = repo_root().join(format!(
        "target/test-logs/{}deployment.json",
        kafka.topic_prefix
    ));
    let deployment = deployment.display().to_string();
    // `chorus chain deploy` against `url` with `key_flags`, and no key in the
    // environment: (success, stderr).
    let deploy = |url: &str, key_flags: &[&str]| {
        let output = std::process::Command::new(chorus_bin())
            .args(["--log", "warn", "chain", "deploy", "--rpc-url", url])
            .args(["--deployment", &deployment])
            .args(key_flags)
            .env_remove("CHORUS_CHAIN_KEY")
            .env_remove("CHORUS_CHAIN_KEY_FILE")
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    // Not anvil: a port where nothing answers, and a real service that is no chain node
    // (the Kafka broker).
    let closed = format!("http://127.0.0.1:{}", free_port());
    let broker = format!("http://{}", kafka.brokers);
    for url in [&closed, &broker] {
        let (ok, text) = deploy(url, &["--dev-key"]);
        assert!(!ok, "deployed with the dev key at {url}: {text}");
        assert!(text.contains("anvil"), "{text}");
    }
    // No key at all on a real anvil: an error, not the dev key.
    let anvil = Anvil::start().unwrap();
    let (ok, text) = deploy(&anvil.url(), &[]);
    assert!(!ok, "{text}");
    assert!(text.contains("no key"), "{text}");
    // A key file others can read: the error names the file and its mode.
    let key_file = repo_root().join(format!("target/test-logs/{}key", kafka.topic_prefix));
    std::fs::write(&key_file, chorus_integration_tests::chain::DEV_KEY_0).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let key_path = key_file.display().to_string();
    let (ok, text) = deploy(&anvil.url(), &["--key-file", &key_path]);
    assert!(!ok, "{text}");
    assert!(text.contains(&key_path) && text.contains("644"), "{text}");
    // The control: on anvil, asked for, the dev key deploys.
    let (ok, text) = deploy(&anvil.url(), &["--dev-key"]);
    assert!(ok, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chorus_sql_refuses_copy_create_and_set() {
    let kafka = test_kafka("sql-ro");
    create_topics(&kafka).await.unwrap();
    let archive = repo_root().join(format!("target/test-logs/{}archive", kafka.topic_prefix));
    let archive = archive.display().to_string();
    let stolen = repo_root().join(format!("target/test-logs/{}copied.csv", kafka.topic_prefix));
    let sql = |query: &str, refresh: bool| {
        let mut command = std::process::Command::new(chorus_bin());
        with_role_credentials(&mut command, &kafka);
        command.args([
            "--log",
            "warn",
            "--brokers",
            &kafka.brokers,
            "--topic-prefix",
            &kafka.topic_prefix,
            "sql",
            "--archive",
            &archive,
        ]);
        if refresh {
            command.arg("--refresh");
        }
        let output = command.arg(query).output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    // The control: a query runs (and --refresh reads as the read-only principal).
    let (ok, err) = sql("SELECT count(*) FROM chat_messages", true);
    assert!(ok, "{err}");
    let (ok, err) = sql(
        &format!(
            "COPY (SELECT 1 AS x) TO '{}' STORED AS CSV",
            stolen.display()
        ),
        false,
    );
    assert!(!ok && err.to_lowercase().contains("not supported"), "{err}");
    assert!(!stolen.exists(), "COPY wrote {}", stolen.display());
    let (ok, err) = sql(
        "CREATE EXTERNAL TABLE secrets STORED AS CSV LOCATION '/etc/passwd'",
        false,
    );
    assert!(!ok && err.to_lowercase().contains("not supported"), "{err}");
    let (ok, err) = sql("SET datafusion.execution.batch_size = 1", false);
    assert!(!ok && err.to_lowercase().contains("not supported"), "{err}");
}

/// The tests' own connection settings stay as the admin (a super user).
#[test]
fn test_clients_are_the_admin() {
    let kafka: KafkaArgs = test_kafka("who");
    assert_eq!(kafka.user.as_deref(), Some("admin"));
    assert!(kafka.password.is_some());
}

/// POSTs a signed chat message with an `Idempotency-Key`; (status, answer).
fn post_message(
    port: u16,
    path: &str,
    body: &serde_json::Value,
    idempotency_key: &str,
) -> (u16, serde_json::Value) {
    let (status, text) = http_request(
        port,
        "POST",
        path,
        &[
            ("Authorization", "Bearer replay-key"),
            ("Content-Type", "application/json"),
            ("Idempotency-Key", idempotency_key),
        ],
        body.to_string().as_bytes(),
    )
    .unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_message_in_any_spelling_to_any_replica_is_one_message() {
    use alloy::signers::local::PrivateKeySigner;
    use chorus_integration_tests::ingest::{sign, start_ingest, start_ingest_on};
    use serde_json::json;

    let kafka = test_kafka("replay");
    create_topics(&kafka).await.unwrap();
    let keys = "app:replay-key:chat:write";
    let person = PrivateKeySigner::random();
    let conversation = "replayed";
    chorus_integration_tests::ingest::seed_conversation(
        &kafka,
        conversation,
        person.address(),
        &[],
    )
    .await;
    let (mut first, first_port) = start_ingest(&kafka, "ingest-a", keys, &[], &[]);
    let (mut second, second_port) = start_ingest(&kafka, "ingest-b", keys, &[], &[]);
    let path = format!("/v1/conversations/{conversation}/messages");
    let mut body = sign(
        &person,
        "chat.message",
        json!({"author": person.address().to_string(), "content": "one message", "conversation_id": conversation}),
    );
    body.as_object_mut().unwrap().remove("conversation_id");
    let (status, answer) = post_message(first_port, &path, &body, "k-1");
    assert_eq!(status, 202, "{answer}");
    let id = answer["event_id"].clone();

    // The same signature respelled: upper-case hex, no 0x, v as 0/1 instead of 27/28.
    let text = body["signature"].as_str().unwrap().to_owned();
    let mut bytes = alloy::hex::decode(&text).unwrap();
    let mut spellings = vec![
        format!("0x{}", text.trim_start_matches("0x").to_uppercase()),
        text.trim_start_matches("0x").to_owned(),
    ];
    bytes[64] -= 27;
    spellings.push(alloy::hex::encode_prefixed(&bytes));
    for (n, spelling) in spellings.iter().enumerate() {
        let mut replay = body.clone();
        replay["signature"] = json!(spelling);
        // To the other replica, each with a fresh Idempotency-Key.
        let (status, answer) = post_message(second_port, &path, &replay, &format!("k-other-{n}"));
        assert_eq!(status, 202, "{spelling}: {answer}");
        assert_eq!(answer["event_id"], id, "{spelling} became another message");
    }
    // Byte-identical, to the first replica after it restarted (its cache is gone).
    terminate(&mut first, Duration::from_secs(30)).unwrap();
    let mut first = start_ingest_on(&kafka, "ingest-a2", keys, first_port, &[], &[]);
    let (status, answer) = post_message(first_port, &path, &body, "k-2");
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["event_id"], id);

    // Malleated (high s, v flipped): the same signer, refused.
    let signature: alloy::primitives::Signature = text.parse().unwrap();
    let order = alloy::primitives::U256::from_str_radix(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
        16,
    )
    .unwrap();
    let high =
        alloy::primitives::Signature::new(signature.r(), order - signature.s(), !signature.v());
    let mut malleated = body.clone();
    malleated["signature"] = json!(high.to_string());
    let (status, answer) = post_message(second_port, &path, &malleated, "k-3");
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "bad_signature");

    // An Idempotency-Key names one request: reused for another body, 422.
    let mut other = sign(
        &person,
        "chat.message",
        json!({"author": person.address().to_string(), "content": "another message", "conversation_id": conversation}),
    );
    other.as_object_mut().unwrap().remove("conversation_id");
    let (status, answer) = post_message(first_port, &path, &other, "k-2");
    assert_eq!(status, 422, "{answer}");
    let (status, answer) = post_message(first_port, &path, &other, "k-4");
    assert_eq!(status, 202, "{answer}");
    assert_ne!(answer["event_id"], id);

    terminate(&mut first, Duration::from_secs(30)).unwrap();
    terminate(&mut second, Duration::from_secs(30)).unwrap();
    // The log holds two messages: whatever was produced twice carries one id.
    let ids: BTreeSet<String> = read_all(&kafka, &kafka.topic(Topic::ChatMessages))
        .unwrap()
        .iter()
        .filter_map(|r| Envelope::<ChatMessage>::from_json(&r.payload).ok())
        .map(|m| m.id.to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(id.as_str().unwrap()));
}
