#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The exactly-once and dead-letter guarantees of the transactional stage, against the
//! real Kafka broker, with the real `chorus router` process.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chorus_integration_tests::*;
use chorus_runtime::kafka::{EventProducer, await_all, await_delivery, cloudevents_headers};
use chorus_schemas::*;

fn chat(conversation: usize, n: usize) -> AnyEvent {
    AnyEvent::ChatMessage(Envelope::new(
        "test",
        ChatMessage {
            conversation_id: format!("conv-{conversation}"),
            author_kind: AuthorKind::Human,
            author_id: format!("0x{conversation:040x}"),
            content: format!("message {n}"),
            mentions: vec![],
            reply_to: None,
            hop: 0,
            job_id: None,
        },
    ))
}

async fn produce(producer: &EventProducer, topic: &str, events: &[AnyEvent]) {
    let mut pending = Vec::with_capacity(events.len());
    for event in events {
        pending.push(producer.enqueue_any_to(topic, event).await.unwrap());
    }
    await_all(pending).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_killed_mid_stream_outputs_every_input_exactly_once() {
    const EVENTS: usize = 100_000;
    let kafka = test_kafka("kill");
    create_topics(&kafka).await.unwrap();
    let intake = kafka.topic(Topic::Intake);
    let output = kafka.topic(Topic::ChatMessages);
    // Group and transactional ids are unique per run: two suites sharing a broker must
    // never join each other's group or fence each other's producer.
    let group_name = format!("{}chorus-router", kafka.topic_prefix);
    let group = group_name.as_str();

    let events: Vec<AnyEvent> = (0..EVENTS).map(|n| chat(n % 500, n)).collect();
    let expected: HashSet<uuid::Uuid> = events.iter().map(AnyEvent::id).collect();
    let producer = EventProducer::new(&kafka, "test-producer", 100_000).unwrap();
    produce(&producer, &intake, &events).await;

    let router_args = |port: u16| -> RoleCommand {
        RoleCommand::new(&["router"])
            .member(group, &format!("{}0", kafka.topic_prefix))
            .metrics_addr(&format!("127.0.0.1:{port}"))
            .session_timeout_ms(6000)
            // Small transactions, so that the run lasts long enough to be killed twice.
            .flag("--batch-max", "200")
    };
    let started = Instant::now();
    let mut kills = Vec::new();
    for (round, kill_at) in [(1, 20_000i64), (2, 55_000i64)] {
        let role = router_args(free_port());
        let mut router = spawn_role(&kafka, &format!("router-{round}"), &role).unwrap();
        wait_for("router progress", Duration::from_secs(120), || {
            committed_total(&kafka, group, &intake) >= kill_at
        })
        .unwrap();
        router.kill().unwrap(); // SIGKILL: no chance to commit or abort
        router.wait().unwrap();
        kills.push(committed_total(&kafka, group, &intake));
    }
    assert!(
        kills.iter().all(|k| *k < EVENTS as i64),
        "both kills landed mid-stream: {kills:?}"
    );
    let port = free_port();
    let role = router_args(port);
    let mut router = spawn_role(&kafka, "router-3", &role).unwrap();
    wait_for(
        "router to finish the backlog",
        Duration::from_secs(240),
        || committed_total(&kafka, group, &intake) >= EVENTS as i64,
    )
    .unwrap();
    let (status, metrics) = http_get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("chorus_transactions_total"), "{metrics}");
    let status = terminate(&mut router, Duration::from_secs(30)).unwrap();
    assert!(
        status.success(),
        "router exits cleanly on SIGTERM: {status}"
    );

    let records = read_all(&kafka, &output).unwrap();
    let mut seen = HashSet::with_capacity(records.len());
    let mut duplicates = 0;
    for record in &records {
        let event = AnyEvent::decode(None, &record.payload).unwrap();
        assert_eq!(record.key.as_deref(), Some(event.key().as_bytes()));
        if !seen.insert(event.id()) {
            duplicates += 1;
        }
    }
    let lost = expected.difference(&seen).count();
    eprintln!(
        "killed at committed offsets {kills:?}; {} outputs, {duplicates} duplicated, {lost} lost, {:.1}s",
        records.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(duplicates, 0, "no input is output twice");
    assert_eq!(lost, 0, "no input is lost");
    assert_eq!(records.len(), EVENTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_are_dead_lettered_and_the_partition_keeps_flowing() {
    let kafka = test_kafka("dlq");
    create_topics(&kafka).await.unwrap();
    let intake = kafka.topic(Topic::Intake);
    let producer = EventProducer::new(&kafka, "test-producer", 1_000).unwrap();

    // All on one key, so on one partition: the bad records sit between good ones.
    let good: Vec<AnyEvent> = (0..4).map(|n| chat(1, n)).collect();
    let good_json: Vec<Vec<u8>> = good.iter().map(|e| e.to_json().unwrap()).collect();
    let headers = |_: &AnyEvent| Some(cloudevents_headers());
    // A binary-mode header beside a structured event: two places that could disagree.
    let binary_mode = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
        key: "ce_type",
        value: Some(b"ai.chorus.feedback.v1".as_slice()),
    });
    // The same event in envelope 1, as a producer from before the migration writes it,
    // with its old headers: routed, and re-encoded as a CloudEvent.
    let legacy_json = chorus_schemas::samples::legacy_envelope_json(&good[3]).unwrap();
    let legacy_headers = rdkafka::message::OwnedHeaders::new()
        .insert(rdkafka::message::Header {
            key: chorus_schemas::LEGACY_HEADER_TYPE,
            value: Some(b"chat.message".as_slice()),
        })
        .insert(rdkafka::message::Header {
            key: chorus_schemas::LEGACY_HEADER_VERSION,
            value: Some(b"1".as_slice()),
        });
    let records: Vec<(&[u8], Option<rdkafka::message::OwnedHeaders>)> = vec![
        (&good_json[0], headers(&good[0])),
        (b"{not json at all", None),
        (&good_json[1], Some(binary_mode)),
        (&good_json[2], headers(&good[2])),
        (&legacy_json, Some(legacy_headers)),
    ];
    let mut offsets = Vec::new();
    for (payload, headers) in records {
        let delivery = producer
            .enqueue_raw(&intake, Some(b"conv-1"), payload, headers)
            .await
            .unwrap();
        offsets.push(await_delivery(delivery).await.unwrap());
    }

    let port = free_port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let group = format!("{}chorus-router", kafka.topic_prefix);
    let mut router = spawn_role(
        &kafka,
        "router",
        &RoleCommand::new(&["router"])
            .member(&group, &group)
            .metrics_addr(&metrics_addr)
            .session_timeout_ms(6000),
    )
    .unwrap();
    wait_for(
        "router to consume all five",
        Duration::from_secs(60),
        || committed_total(&kafka, &group, &intake) >= 5,
    )
    .unwrap();

    let (status, body) = http_get(port, "/readyz").unwrap();
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = http_get(port, "/metrics").unwrap();
    let dead_metric = metrics
        .lines()
        .find(|l| l.starts_with("chorus_dead_letters_total{") && l.contains(&intake))
        .unwrap_or_else(|| panic!("no dead-letter metric in\n{metrics}"));
    assert!(dead_metric.ends_with(" 2"), "{dead_metric}");
    terminate(&mut router, Duration::from_secs(30)).unwrap();

    let routed = read_all(&kafka, &kafka.topic(Topic::ChatMessages)).unwrap();
    let routed_ids: Vec<uuid::Uuid> = routed
        .iter()
        .map(|r| AnyEvent::decode(None, &r.payload).unwrap().id())
        .collect();
    assert_eq!(
        routed_ids,
        vec![good[0].id(), good[2].id(), good[3].id()],
        "good records routed in order, past the bad ones"
    );
    assert_eq!(
        routed[0].payload, good_json[0],
        "a CloudEvent passes as it came"
    );
    assert_eq!(
        routed[2].payload, good_json[3],
        "an envelope-1 record is re-encoded as the same CloudEvent"
    );

    let dead = read_all(&kafka, &kafka.topic(Topic::DeadLetters)).unwrap();
    assert_eq!(dead.len(), 2);
    let mut letters: Vec<DeadLetter> = dead
        .iter()
        .map(|r| Envelope::<DeadLetter>::from_json(&r.payload).unwrap().data)
        .collect();
    letters.sort_by_key(|d| d.source_offset);
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(letters[0].source_topic, intake);
    assert_eq!(letters[0].source_partition, offsets[1].partition);
    assert_eq!(letters[0].source_offset, offsets[1].offset);
    assert_eq!(
        b64.decode(&letters[0].payload_base64).unwrap(),
        b"{not json at all",
        "original bytes kept"
    );
    assert!(
        letters[0].reason.contains("not valid JSON"),
        "{}",
        letters[0].reason
    );
    assert_eq!(letters[0].stage, "router");
    assert_eq!(letters[1].source_offset, offsets[2].offset);
    assert_eq!(
        b64.decode(&letters[1].payload_base64).unwrap(),
        good_json[1]
    );
    assert!(
        letters[1]
            .reason
            .contains("binary-mode CloudEvents are not accepted"),
        "{}",
        letters[1].reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_waits_on_a_full_queue_instead_of_failing() {
    let kafka = test_kafka("backpressure");
    create_topics(&kafka).await.unwrap();
    // A queue of 10 records and 5,000 sends: most sends must wait, none may fail.
    let producer = EventProducer::new(&kafka, "tiny-queue", 10).unwrap();
    let before = chorus_runtime::metrics::PRODUCER_BACKPRESSURE
        .with_label_values(&["tiny-queue"])
        .get();
    let events: Vec<AnyEvent> = (0..5_000).map(|n| chat(n % 7, n)).collect();
    produce(&producer, &kafka.topic(Topic::Intake), &events).await;
    let waited = chorus_runtime::metrics::PRODUCER_BACKPRESSURE
        .with_label_values(&["tiny-queue"])
        .get()
        - before;
    assert!(waited > 0, "the full queue applied backpressure");
    let stored = read_all(&kafka, &kafka.topic(Topic::Intake)).unwrap();
    assert_eq!(stored.len(), 5_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_apply_is_idempotent_and_sets_compaction() {
    use chorus_runtime::kafka::{TopicChange, apply_topics, load_topic_specs};
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;

    let kafka = test_kafka("topics");
    let specs = load_topic_specs(&repo_root().join("infra/topics/topics.toml")).unwrap();
    for topic in Topic::ALL {
        assert!(
            specs.iter().any(|s| s.name == topic.base_name()),
            "{} has a definition",
            topic.base_name()
        );
    }
    let first = apply_topics(&kafka, &specs, chorus_runtime::kafka::Replication::SINGLE)
        .await
        .unwrap();
    assert!(first.iter().all(|t| t.change == TopicChange::Created));
    let second = apply_topics(&kafka, &specs, chorus_runtime::kafka::Replication::SINGLE)
        .await
        .unwrap();
    assert!(
        second.iter().all(|t| t.change == TopicChange::Unchanged),
        "{second:?}"
    );

    let admin: AdminClient<DefaultClientContext> =
        kafka.client_config("test-admin").create().unwrap();
    let registry = kafka.topic(Topic::Registry);
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(&registry)], &AdminOptions::new())
        .await
        .unwrap();
    let resource = described.into_iter().next().unwrap().unwrap();
    let policy = resource.get("cleanup.policy").and_then(|e| e.value.clone());
    assert_eq!(policy.as_deref(), Some("compact"));
}

/// Rebuilding state from a topic (the orchestrator's conversations, the registries)
/// finishes while the topic keeps receiving records: every record present at start is
/// applied. Under steady traffic the end of a partition is never reported, which once
/// kept the orchestrator from ever starting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_a_topic_catches_up_while_records_keep_arriving() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let kafka = test_kafka("follow");
    create_topics(&kafka).await.unwrap();
    let topic = kafka.topic(Topic::ChatMessages);
    let producer = EventProducer::new(&kafka, "test", 10_000).unwrap();
    let before: Vec<AnyEvent> = (0..500).map(|n| chat(n % 3, n)).collect();
    produce(&producer, &topic, &before).await;

    // One conversation keeps writing, a record every 50 ms, faster than a fetch waits.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (producer, topic, stop) = (producer.clone(), topic.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                produce(&producer, &topic, &[chat(0, 1_000 + n)]).await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    let applied = Arc::new(AtomicUsize::new(0));
    let counter = applied.clone();
    let shutdown = chorus_runtime::Shutdown::new();
    let followed = tokio::time::timeout(
        Duration::from_secs(25),
        chorus_runtime::kafka::follow::follow_topic(
            &kafka,
            &topic,
            "test-follow",
            Arc::new(move |_, _, _| {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
            shutdown.clone(),
        ),
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    traffic.await.unwrap();
    shutdown.trigger();
    let caught_up = followed
        .expect("caught up under steady traffic (before the fix it never returned)")
        .unwrap();
    assert!(
        caught_up >= before.len(),
        "every record present at start applied: {caught_up}"
    );
}
