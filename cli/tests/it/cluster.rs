#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Beyond one broker: a three-broker KRaft cluster (replication 3, `min.insync.replicas`
//! 2, unclean leader election off, the SASL principals and ACLs of every other test)
//! under steady load through the intake routers (two instances), the inference path
//! (jobs, a worker on the real embedding model, results) and the ClickHouse sink, while
//! brokers are SIGKILLed and restarted one at a time: the coordinator of a router's
//! transactions, the leader of a partition the routers are writing mid-transaction, and
//! the coordinator of the worker's transactions. Then the reconciliation of `faults.rs`
//! on the log and ClickHouse: nothing lost, nothing duplicated, each malformed record
//! dead-lettered once. A transaction partly visible to read-committed consumers would
//! show as a loss (its missing half) or a duplicate (its visible half written again).
//!
//! Three JVMs beside the roles and the load share 2 cores here, and the run takes
//! minutes: `infra/scripts/faults.sh --long` runs it, CI does not (docs/decisions.md).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use chorus_analytics::migrate::migrate;
use chorus_integration_tests::clickhouse::{
    expected_counts, final_counts, shared_clickhouse, spawn_sink,
};
use chorus_integration_tests::faults::{
    IntakeLoad, print_table_header, print_table_row, reconcile_routed, spawn_intake_load,
};
use chorus_integration_tests::ingest::start_router;
use chorus_integration_tests::kafka::{
    PrivateCluster, leader_of, transaction_coordinator, transaction_state_partition,
    wait_fully_replicated,
};
use chorus_integration_tests::poi::synthetic_events;
use chorus_integration_tests::*;
use chorus_runtime::kafka::{KafkaArgs, inspect};
use chorus_schemas::*;
use chorus_scoring::synthetic::Workload;

const MALFORMED: usize = 40;
/// The load runs for about SLICES seconds (a slice a second), long enough that every
/// fault (each waits for the replicas to catch up after the last) meets it.
const SLICES: usize = 150;
const JOBS_PER_SLICE: usize = 2;
const EMBED_MODEL: &str = "multilingual-e5-small";

/// Offsets a group committed on some topics, or None while the coordinator moves.
fn committed(kafka: &KafkaArgs, group: &str, topics: &[&str]) -> Option<i64> {
    let mut total = 0;
    for topic in topics {
        total += inspect::committed_offsets(kafka, group, topic)
            .ok()?
            .values()
            .sum::<i64>();
    }
    Some(total)
}

fn embedding_job(n: usize) -> Envelope<InferenceJob> {
    Envelope::new(
        "cluster-load",
        InferenceJob {
            job_id: uuid::Uuid::now_v7(),
            kind: JobKind::Embedding,
            model: EMBED_MODEL.into(),
            messages: vec![ChatTurn {
                role: "user".into(),
                content: format!("query: replicated record {n}"),
            }],
            max_tokens: None,
            temperature: None,
            stream: false,
            provider_ids: vec![],
            call_id: None,
            conversation_id: None,
            agent_id: None,
            deadline_ms: Some(300_000),
            reply_to: None,
            hop: 0,
        },
    )
}

/// Which broker a fault kills, found when it is injected.
enum Victim {
    /// The leader of the `__transaction_state` partition of this transactional id.
    Coordinator(&'static str, String),
    /// The leader of this partition.
    Leader(String, i32),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "three broker JVMs beside the load on 2 cores: infra/scripts/faults.sh --long runs it"]
async fn a_three_broker_cluster_losing_one_broker_at_a_time_loses_and_duplicates_nothing() {
    let total: u64 = std::env::var("CHORUS_CLUSTER_FAULT_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000);
    let mut cluster = PrivateCluster::start("cluster", 3).unwrap();
    let kafka = cluster.args("cluster");
    create_topics_in(&kafka, "cluster").await.unwrap();
    let ch = shared_clickhouse("cluster");
    migrate(&ch, None).await.unwrap();
    let client = ch.client().unwrap();

    let mut events = synthetic_events(Workload {
        events: total,
        users: 2_000,
        agent_developers: 50,
        providers: 8,
        seed: 31,
    });
    // The jobs are the real ones below (the worker would answer synthetic ones too).
    events.retain(|e| !matches!(e, AnyEvent::InferenceJob(_)));
    let jobs: Vec<Envelope<InferenceJob>> =
        (0..SLICES * JOBS_PER_SLICE).map(embedding_job).collect();
    let job_ids: HashSet<uuid::Uuid> = jobs.iter().map(|j| j.data.job_id).collect();
    let job_events: HashSet<uuid::Uuid> = jobs.iter().map(|j| j.id).collect();
    let mut expected = {
        let mut all = events.clone();
        all.extend(jobs.iter().cloned().map(AnyEvent::InferenceJob));
        expected_counts(&all)
    };
    // Each job's one result, written by the worker.
    *expected.entry("inference_results".into()).or_insert(0) += jobs.len() as u64;
    *expected.entry("dead_letters".into()).or_insert(0) += MALFORMED as u64;
    let distinct: u64 = expected.values().sum();
    let valid_records = events.len();
    let submitted = events
        .iter()
        .filter(|e| chorus_router::admission(e).is_ok())
        .count();
    let intake_records = (submitted + MALFORMED) as i64;
    let expected_ids: HashSet<uuid::Uuid> = events.iter().map(AnyEvent::id).collect();
    let topics: HashSet<Topic> = events.iter().map(AnyEvent::topic).collect();

    let intake = kafka.topic(Topic::Intake);
    let api_intake = kafka.topic(Topic::ApiIntake);
    let load = spawn_intake_load(
        &kafka,
        events,
        IntakeLoad {
            slices: SLICES,
            gap: Duration::from_secs(1),
            malformed: MALFORMED,
        },
        jobs.clone(),
        JOBS_PER_SLICE,
    );

    let router_group = format!("{}chorus-router", kafka.topic_prefix);
    let mut routers = [
        start_router(&kafka, "router-a"),
        start_router(&kafka, "router-b"),
    ];
    let mut sink = spawn_sink(&kafka, &ch, "sink", &["--batch-rows", "5000"]);
    let embed = service_port("EMBED_PORT", 8081);
    let worker_group = format!("{}chorus-inference-workers", kafka.topic_prefix);
    let worker_instance = format!("{}worker", kafka.topic_prefix);
    let mut worker = spawn_role(
        &kafka,
        "worker",
        &RoleCommand::new(&["inference-worker"])
            .member(&worker_group, &worker_instance)
            .metrics_addr("127.0.0.1:0")
            .session_timeout_ms(6000)
            .flag(
                "--provider",
                &format!("id=e5,endpoint=http://127.0.0.1:{embed}/v1,models={EMBED_MODEL},price=1"),
            ),
    )
    .unwrap();

    // The faults, one broker at a time, each once the routers have routed a share of
    // the intake; the next only once every partition has all its replicas in sync.
    let router_txn = format!("{router_group}-{}router-a", kafka.topic_prefix);
    let worker_txn = format!("{worker_group}-{worker_instance}");
    let plan = [
        (
            0.2,
            Victim::Coordinator("router a's transaction coordinator", router_txn),
        ),
        (0.45, Victim::Leader(kafka.topic(Topic::ChatMessages), 0)),
        (
            0.7,
            Victim::Coordinator("the worker's transaction coordinator", worker_txn),
        ),
    ];
    let mut watched: Vec<String> = kafka_topics(&kafka);
    watched.extend(["__consumer_offsets".into(), "__transaction_state".into()]);
    let started = Instant::now();
    let mut faults: Vec<(String, String)> = Vec::new();
    let mut routed = 0;
    for (share, victim) in &plan {
        let at = (intake_records as f64 * share) as i64;
        wait_for(
            "the load to reach the next fault",
            Duration::from_secs(600),
            || {
                if let Some(now) = committed(&kafka, &router_group, &[&intake, &api_intake]) {
                    routed = now;
                }
                routed >= at
            },
        )
        .with_role_logs(&kafka)
        .unwrap();
        let (what, node) = match victim {
            Victim::Coordinator(what, id) => (
                (*what).to_owned(),
                transaction_coordinator(&kafka, id).unwrap(),
            ),
            Victim::Leader(topic, partition) => (
                format!(
                    "the leader of {}/{partition} (routers mid-transaction)",
                    topic.trim_start_matches(&kafka.topic_prefix)
                ),
                leader_of(&kafka, topic, *partition).unwrap(),
            ),
        };
        assert!(node > 0, "{what}: no leader");
        let when = started.elapsed().as_secs_f64();
        cluster.kill(node).unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        cluster.restart(node).unwrap();
        wait_fully_replicated(&kafka, &watched, Duration::from_secs(300)).unwrap();
        faults.push((
            format!("SIGKILL broker {node}, {what}; restart after 5 s"),
            format!(
                "at {when:.1}s ({routed} of {intake_records} routed), all replicas in sync at {:.1}s",
                started.elapsed().as_secs_f64()
            ),
        ));
    }

    // Settle: every record routed, every job answered, ClickHouse complete.
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let routed = committed(&kafka, &router_group, &[&intake, &api_intake]).unwrap_or(0);
        if load.is_finished() && routed >= intake_records && final_counts(&client).await == expected
        {
            break;
        }
        if Instant::now() > deadline {
            panic!(
                "not reconciled in time: routed {routed} of {intake_records}, ClickHouse {:?} of {expected:?}{}",
                final_counts(&client).await,
                role_log_tails(&kafka, 25)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    load.await.unwrap();
    let seconds = started.elapsed().as_secs_f64();
    for child in routers.iter_mut().chain([&mut sink, &mut worker]) {
        child.kill().ok();
        child.wait().ok();
    }

    // Reconciliation from the log (read committed), the inference load counted below.
    let routed = reconcile_routed(&kafka, &topics, &expected_ids, valid_records, |event| {
        matches!(event, AnyEvent::InferenceJob(job) if job_events.contains(&job.id))
            || matches!(event, AnyEvent::InferenceResult(_) if !expected_ids.contains(&event.id()))
    });
    let mut results: HashMap<uuid::Uuid, usize> = HashMap::new();
    let mut failed = 0;
    for record in read_all(&kafka, &kafka.topic(Topic::InferenceResults)).unwrap() {
        let result = Envelope::<InferenceResult>::from_json(&record.payload).unwrap();
        if job_ids.contains(&result.data.job_id) {
            *results.entry(result.data.job_id).or_default() += 1;
            failed += usize::from(result.data.status != JobStatus::Succeeded);
        }
    }
    let jobs_lost = job_ids
        .iter()
        .filter(|id| !results.contains_key(id))
        .count();
    let jobs_duplicated: usize = results.values().map(|n| n - 1).sum();
    let loaded: BTreeMap<String, u64> = final_counts(&client).await;
    let loaded_total: u64 = loaded.values().sum();

    println!(
        "\ncluster fault injection: 3 brokers (replication 3, min.insync.replicas 2), {total} events and {} inference jobs, {seconds:.1}s",
        jobs.len()
    );
    println!("{:<90} when", "fault");
    for (fault, when) in &faults {
        println!("{fault:<90} {when}");
    }
    print_table_header();
    print_table_row(
        "routers",
        [
            intake_records as u64,
            routed.records as u64,
            routed.lost as u64,
            routed.duplicated as u64,
            routed.dead.len() as u64,
            routed.wrongly_dead as u64,
        ],
    );
    print_table_row(
        "inference",
        [
            jobs.len() as u64,
            results.values().sum::<usize>() as u64,
            jobs_lost as u64,
            jobs_duplicated as u64,
            0,
            0,
        ],
    );
    print_table_row(
        "sink (FINAL)",
        [
            distinct,
            loaded_total,
            distinct.saturating_sub(loaded_total),
            loaded_total.saturating_sub(distinct),
            loaded.get("dead_letters").copied().unwrap_or(0),
            0,
        ],
    );

    assert_eq!(
        faults.len(),
        plan.len(),
        "every fault was injected: {faults:?}"
    );
    assert_eq!(routed.lost, 0, "no valid record lost");
    assert_eq!(
        routed.records, valid_records,
        "each valid record routed exactly once"
    );
    assert_eq!(
        routed.dead.len(),
        MALFORMED,
        "each malformed record dead-lettered once"
    );
    assert_eq!(routed.wrongly_dead, 0, "{:?}", routed.dead);
    assert_eq!(jobs_lost, 0, "every job answered");
    assert_eq!(jobs_duplicated, 0, "no job answered twice");
    assert_eq!(failed, 0, "every job succeeded");
    assert_eq!(loaded, expected, "ClickHouse holds each event exactly once");
}

/// Every Chorus topic of this test.
fn kafka_topics(kafka: &KafkaArgs) -> Vec<String> {
    inspect::topics_with_prefix(kafka, &kafka.topic_prefix).unwrap()
}

/// The fault test kills the broker it computes as a transactional id's coordinator: the
/// partition must be the one Kafka picks, `abs(String.hashCode) % partitions`.
#[test]
fn the_transaction_partition_is_javas_string_hash() {
    // What Java prints for "chorus".hashCode() (-1361215066) and a router's id
    // (-355490378), each abs % 50.
    assert_eq!(transaction_state_partition("chorus", 50), 16);
    let router = "test-faults-1.chorus-router-test-faults-1.router-a";
    assert_eq!(transaction_state_partition(router, 50), 28);
    assert_eq!(transaction_state_partition("", 8), 0);
}
