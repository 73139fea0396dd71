#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The fault-injection suite over the live path, short form (it runs in CI): signed chat
//! messages arrive through the ingest API at a steady rate and go through the
//! orchestrator, an inference worker and the real llama-server (behind a fault
//! injector) back into the conversation, on a private Kafka broker. While they flow,
//! the ingest API, the orchestrator and the worker are each SIGKILLed and restarted,
//! the provider answers 500s, then garbage, then nothing, and the broker is stopped and
//! started again. The client retries every request it was not answered 202 with the
//! same signed body, as a client should.
//!
//! Then a reconciliation over the topics: every accepted message is in the log once (as
//! an event id), triggered exactly one agent call, one job and one result, and a reply
//! when the result succeeded; nothing is dead-lettered; and the epoch's scores,
//! computed from the log, checkpointed on anvil and recomputed by `chorus verify`, match.
//! It prints the fault table.
//!
//! The faults come one after another, each after `CHORUS_LIVE_FAULT_GAP` (default 4)
//! more messages were accepted, and the load goes on until the last fault is over. A
//! longer run: `CHORUS_LIVE_FAULT_GAP=40 cargo nextest run --workspace -E 'binary(faults_live)'`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use alloy::signers::local::PrivateKeySigner;
use serde_json::json;

use chorus_integration_tests::chain::{Anvil, DEV_KEY_0, DEV_KEY_1, deploy};
use chorus_integration_tests::faulty_provider::{FaultyProvider, ProviderFault};
use chorus_integration_tests::ingest::{post, sign, start_ingest_on, start_router, try_post};
use chorus_integration_tests::kafka::PrivateKafka;
use chorus_integration_tests::poi::{poi_flags, run_chorus};
use chorus_integration_tests::*;
use chorus_runtime::kafka::KafkaArgs;
use chorus_schemas::*;

const MODEL: &str = "SmolLM2-135M-Instruct";
const WRITER_KEY: &str = "fault-writer-secret";
const AGENT: &str = "echo";
const CONVERSATION: &str = "faults";

fn spawn_orchestrator(kafka: &KafkaArgs, restart: usize) -> KillOnDrop {
    let group = format!("{}chorus-orchestrator", kafka.topic_prefix);
    KillOnDrop(
        spawn_role(
            kafka,
            &format!("orchestrator-{restart}"),
            &RoleCommand::new(&["orchestrator"])
                .member(&group, &group)
                .metrics_addr("127.0.0.1:0")
                .session_timeout_ms(6000)
                .flag("--max-tokens", "8")
                // One conversation carries the whole load: no reply budget in the way.
                .flag("--reply-budget", "1000000"),
        )
        .unwrap(),
    )
}

fn spawn_worker(kafka: &KafkaArgs, restart: usize) -> KillOnDrop {
    let group = format!("{}chorus-inference-workers", kafka.topic_prefix);
    KillOnDrop(
        spawn_role(
            kafka,
            &format!("worker-{restart}"),
            &RoleCommand::new(&["inference-worker"])
                .member(&group, &group)
                .metrics_addr("127.0.0.1:0")
                .session_timeout_ms(6000)
                .args([
                    "--concurrency",
                    "2",
                    "--attempt-timeout-ms",
                    "8000",
                    "--max-attempts",
                    "3",
                    "--backoff-ms",
                    "100",
                    "--breaker-cool-down-ms",
                    "1000",
                ]),
        )
        .unwrap(),
    )
}

/// Every record of type `T` in its topic (other types share some topics).
fn events<T: EventData>(kafka: &KafkaArgs) -> Vec<Envelope<T>> {
    read_all(kafka, &kafka.topic(T::TOPIC))
        .unwrap()
        .iter()
        .filter(|r| r.event_type.as_deref() == Some(T::TYPE))
        .map(|r| Envelope::<T>::from_json(&r.payload).unwrap())
        .collect()
}

/// Records per event id beyond the first (a redelivery that consumers absorb by id).
fn redelivered<T>(records: &[Envelope<T>]) -> usize {
    let distinct: HashSet<uuid::Uuid> = records.iter().map(|e| e.id).collect();
    records.len() - distinct.len()
}

/// How many records there are of each key.
fn count_by(keys: impl Iterator<Item = uuid::Uuid>) -> HashMap<uuid::Uuid, usize> {
    let mut counts = HashMap::new();
    for key in keys {
        *counts.entry(key).or_default() += 1;
    }
    counts
}

/// (expected keys with no record, records beyond the first per key).
fn lost_and_duplicated(
    expected: &HashSet<uuid::Uuid>,
    records: &HashMap<uuid::Uuid, usize>,
) -> (usize, usize) {
    let lost = expected.iter().filter(|k| !records.contains_key(k)).count();
    let duplicated = records.values().map(|n| n.saturating_sub(1)).sum();
    (lost, duplicated)
}

/// The faults, in the order they are injected.
#[derive(Debug, Clone, Copy)]
enum Fault {
    KillIngest,
    Provider(ProviderFault),
    KillOrchestrator,
    KillWorker,
    RestartBroker,
}

const PLAN: [Fault; 7] = [
    Fault::KillIngest,
    Fault::Provider(ProviderFault::ServerError),
    Fault::KillOrchestrator,
    Fault::Provider(ProviderFault::Garbage),
    Fault::KillWorker,
    Fault::Provider(ProviderFault::Hang),
    Fault::RestartBroker,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_path_under_kills_a_broker_restart_and_a_failing_provider_loses_and_duplicates_nothing()
 {
    let gap: usize = std::env::var("CHORUS_LIVE_FAULT_GAP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let mut broker = PrivateKafka::start("live-faults").unwrap();
    let kafka = broker.args("lfaults");
    create_topics(&kafka).await.unwrap();
    let provider = FaultyProvider::start(service_port("LLAMA_PORT", 8080))
        .await
        .unwrap();

    let keys = format!(
        "writer:{WRITER_KEY}:chat:write+feedback:write+agents:write+providers:write+events:read"
    );
    let api_port = free_port();
    // The router decides the registrations and the conversation (it is not under faults here).
    let _router = KillOnDrop(start_router(&kafka, "router"));
    let mut ingest = KillOnDrop(start_ingest_on(
        &kafka,
        "ingest-0",
        &keys,
        api_port,
        &[],
        &[],
    ));
    let human: PrivateKeySigner = DEV_KEY_0.parse().unwrap();
    let developer: PrivateKeySigner = DEV_KEY_1.parse().unwrap();
    for (path, action, body) in [
        (
            "/v1/agents",
            "agent.register",
            json!({
                "agent_id": AGENT, "owner": developer.address().to_string(), "name": AGENT,
                "system_prompt": "You are Echo. Answer in a few words.", "model": MODEL,
                "price_per_call_micros": 1000
            }),
        ),
        (
            "/v1/providers",
            "provider.register",
            json!({
                "provider_id": "llama-behind-faults", "owner": developer.address().to_string(),
                "endpoint": provider.url(), "models": [MODEL], "price_per_1k_tokens_micros": 20
            }),
        ),
    ] {
        let (status, answer) = post(api_port, path, WRITER_KEY, &sign(&developer, action, body));
        assert_eq!(status, 202, "{path}: {answer}");
    }
    let body = sign(
        &human,
        "conversation.create",
        json!({
            "conversation_id": CONVERSATION, "title": "Under faults", "actor": human.address().to_string(),
            "members": [{"kind": "agent", "id": AGENT}]
        }),
    );
    assert_eq!(
        post(api_port, "/v1/conversations", WRITER_KEY, &body).0,
        202
    );

    let mut orchestrator = spawn_orchestrator(&kafka, 0);
    let mut worker = spawn_worker(&kafka, 0);

    // The client: one signed message every 700 ms (about what one worker and the small
    // model on 2 cores answer, so no backlog builds up) until told to stop; each is retried,
    // same body, until answered 202. Every 202 is recorded (a retry must get the same
    // event id).
    let accepted = Arc::new(AtomicUsize::new(0));
    let answers: Arc<Mutex<BTreeMap<usize, Vec<String>>>> = Arc::default();
    let retries = Arc::new(AtomicUsize::new(0));
    let stop_client = Arc::new(AtomicBool::new(false));
    let client = {
        let (accepted, answers, retries, stop) = (
            accepted.clone(),
            answers.clone(),
            retries.clone(),
            stop_client.clone(),
        );
        let human = human.clone();
        std::thread::spawn(move || {
            let path = format!("/v1/conversations/{CONVERSATION}/messages");
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let mut body = sign(
                    &human,
                    "chat.message",
                    json!({
                        "author": human.address().to_string(),
                        "content": format!("@{AGENT} say the number {n}"),
                        "conversation_id": CONVERSATION
                    }),
                );
                body.as_object_mut().unwrap().remove("conversation_id");
                let started = Instant::now();
                loop {
                    match try_post(api_port, &path, WRITER_KEY, &body) {
                        Ok((202, answer)) => {
                            answers
                                .lock()
                                .unwrap()
                                .entry(n)
                                .or_default()
                                .push(answer["event_id"].as_str().unwrap().to_owned());
                            break;
                        }
                        Ok((status, answer)) => {
                            assert!(
                                status == 0 || status == 503,
                                "only an unavailable API is retried, not {status}: {answer}"
                            );
                        }
                        Err(_) => {} // the API is down (killed): retry
                    }
                    retries.fetch_add(1, Ordering::SeqCst);
                    assert!(
                        started.elapsed() < Duration::from_secs(240),
                        "message {n} never accepted"
                    );
                    std::thread::sleep(Duration::from_millis(250));
                }
                // Every tenth message is sent once more after its 202, like a client
                // that lost the answer: the same event id must come back.
                if n % 10 == 9
                    && let Ok((202, answer)) = try_post(api_port, &path, WRITER_KEY, &body)
                {
                    answers
                        .lock()
                        .unwrap()
                        .entry(n)
                        .or_default()
                        .push(answer["event_id"].as_str().unwrap().to_owned());
                }
                accepted.fetch_add(1, Ordering::SeqCst);
                n += 1;
                std::thread::sleep(Duration::from_millis(700));
            }
        })
    };

    // Inject the faults one by one, each after `gap` more accepted messages.
    let started = Instant::now();
    let mut injected: Vec<(String, String)> = Vec::new();
    let (mut ingest_restarts, mut orchestrator_restarts, mut worker_restarts) = (0, 0, 0);
    for fault in PLAN {
        let at = accepted.load(Ordering::SeqCst) + gap;
        wait_for(
            "the load to reach the next fault",
            Duration::from_secs(600),
            || {
                assert!(!client.is_finished(), "the client stopped early");
                accepted.load(Ordering::SeqCst) >= at
            },
        )
        .unwrap();
        let when = format!(
            "after {} messages, {:.1}s",
            accepted.load(Ordering::SeqCst),
            started.elapsed().as_secs_f64()
        );
        let what = match fault {
            Fault::KillIngest => {
                ingest.kill().unwrap();
                ingest.wait().unwrap();
                ingest_restarts += 1;
                ingest = KillOnDrop(start_ingest_on(
                    &kafka,
                    &format!("ingest-{ingest_restarts}"),
                    &keys,
                    api_port,
                    &[],
                    &[],
                ));
                "SIGKILL ingest API, restart".to_owned()
            }
            Fault::KillOrchestrator => {
                orchestrator.kill().unwrap();
                orchestrator.wait().unwrap();
                orchestrator_restarts += 1;
                orchestrator = spawn_orchestrator(&kafka, orchestrator_restarts);
                "SIGKILL orchestrator, restart".to_owned()
            }
            Fault::KillWorker => {
                worker.kill().unwrap();
                worker.wait().unwrap();
                worker_restarts += 1;
                worker = spawn_worker(&kafka, worker_restarts);
                "SIGKILL inference worker, restart".to_owned()
            }
            Fault::Provider(kind) => {
                // On for at least 4 s and until it has met at least two requests.
                let before = provider.served(kind);
                provider.set(kind);
                let on = Instant::now();
                while on.elapsed() < Duration::from_secs(4) || provider.served(kind) < before + 2 {
                    assert!(
                        on.elapsed() < Duration::from_secs(120),
                        "no request met the provider fault {kind:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                provider.set(ProviderFault::None);
                format!(
                    "provider {} x{}",
                    match kind {
                        ProviderFault::ServerError => "HTTP 500",
                        ProviderFault::Garbage => "garbage body",
                        ProviderFault::Hang => "no answer (timeout)",
                        ProviderFault::InflatedUsage => "inflated usage",
                        ProviderFault::None => "ok",
                    },
                    provider.served(kind) - before
                )
            }
            Fault::RestartBroker => {
                broker.stop().unwrap();
                tokio::time::sleep(Duration::from_secs(5)).await;
                broker.start_again().unwrap();
                "Kafka broker stopped 5 s, restarted".to_owned()
            }
        };
        injected.push((what, when));
    }
    let at = accepted.load(Ordering::SeqCst) + gap;
    wait_for(
        "the load after the last fault",
        Duration::from_secs(600),
        || accepted.load(Ordering::SeqCst) >= at,
    )
    .unwrap();
    stop_client.store(true, Ordering::SeqCst);
    client.join().unwrap();
    let messages = accepted.load(Ordering::SeqCst);

    // The accepted messages and the ids their answers carried.
    let answers = answers.lock().unwrap().clone();
    assert_eq!(answers.len(), messages, "every message was accepted");
    let mut accepted_ids: HashSet<uuid::Uuid> = HashSet::new();
    for (n, ids) in &answers {
        assert!(
            ids.iter().all(|id| id == &ids[0]),
            "message {n} answered with different event ids: {ids:?}"
        );
        accepted_ids.insert(ids[0].parse().unwrap());
    }

    // Wait until every accepted message has gone the whole way: a call, a job, a
    // result, and a reply for a successful result.
    let settled = |kafka: &KafkaArgs| -> bool {
        let calls = events::<AgentCall>(kafka);
        let results: HashMap<uuid::Uuid, JobStatus> = events::<InferenceResult>(kafka)
            .into_iter()
            .map(|r| (r.data.job_id, r.data.status))
            .collect();
        let replies: HashSet<uuid::Uuid> = events::<ChatMessage>(kafka)
            .into_iter()
            .filter(|m| m.data.author_kind == AuthorKind::Agent)
            .filter_map(|m| m.data.job_id)
            .collect();
        // Every call (agents may answer each other, within the hop limit) done.
        let mut triggered = HashSet::new();
        for call in &calls {
            match results.get(&call.data.job_id) {
                Some(JobStatus::Succeeded) if !replies.contains(&call.data.job_id) => return false,
                Some(_) => {}
                None => return false,
            }
            triggered.insert(call.data.trigger_message_id);
        }
        accepted_ids.iter().all(|id| triggered.contains(id))
    };
    let kafka_ref = &kafka;
    wait_for(
        "every accepted message to be answered",
        Duration::from_secs(600),
        || settled(kafka_ref),
    )
    .with_role_logs(&kafka)
    .unwrap();
    // A moment more, so that a late duplicate would show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seconds = started.elapsed().as_secs_f64();

    // Reconciliation.
    let chat = events::<ChatMessage>(&kafka);
    let calls = events::<AgentCall>(&kafka);
    let jobs = events::<InferenceJob>(&kafka);
    let results = events::<InferenceResult>(&kafka);
    let dead_letters = read_all(&kafka, &kafka.topic(Topic::DeadLetters)).unwrap();

    let human_ids: HashSet<uuid::Uuid> = chat
        .iter()
        .filter(|m| m.data.author_kind == AuthorKind::Human)
        .map(|m| m.id)
        .collect();
    let lost_messages = accepted_ids.difference(&human_ids).count();
    let stray_messages = human_ids.difference(&accepted_ids).count();

    // Effects counted by what they are about, not by event id: two calls for one
    // message, two jobs or results for one job, two replies for one job are duplicates
    // even under different ids.
    let mut calls_per_message: HashMap<uuid::Uuid, HashSet<uuid::Uuid>> = HashMap::new();
    for c in &calls {
        calls_per_message
            .entry(c.data.trigger_message_id)
            .or_default()
            .insert(c.data.call_id);
    }
    let call_counts: HashMap<uuid::Uuid, usize> = calls_per_message
        .iter()
        .map(|(message, calls)| (*message, calls.len()))
        .collect();
    let call_jobs: HashSet<uuid::Uuid> = calls.iter().map(|c| c.data.job_id).collect();
    let job_records = count_by(jobs.iter().map(|j| j.data.job_id));
    let result_records = count_by(results.iter().map(|r| r.data.job_id));
    let succeeded: HashSet<uuid::Uuid> = results
        .iter()
        .filter(|r| r.data.status == JobStatus::Succeeded)
        .map(|r| r.data.job_id)
        .collect();
    // Agent developers are paid only for calls served: with no successful result (a model
    // too slow for the jobs' deadlines, or down) the score below cannot pay one. Say so.
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for kind in results.iter().filter_map(|r| r.data.failure_kind) {
        *failures.entry(format!("{kind:?}")).or_default() += 1;
    }
    assert!(
        !succeeded.is_empty(),
        "no inference job succeeded, so no agent developer can be paid: the model was too slow \
         or down for the jobs' deadlines (failed results by kind: {failures:?}; llama.log says \
         its tokens/s)"
    );
    let reply_records = count_by(
        chat.iter()
            .filter(|m| m.data.author_kind == AuthorKind::Agent)
            .map(|m| m.data.job_id.unwrap()),
    );
    let (calls_lost, calls_duplicated) = lost_and_duplicated(&accepted_ids, &call_counts);
    let (jobs_lost, jobs_duplicated) = lost_and_duplicated(&call_jobs, &job_records);
    let job_ids: HashSet<uuid::Uuid> = job_records.keys().copied().collect();
    let (results_lost, results_duplicated) = lost_and_duplicated(&job_ids, &result_records);
    let (replies_lost, replies_duplicated) = lost_and_duplicated(&succeeded, &reply_records);
    let replies_to_failed = reply_records
        .keys()
        .filter(|j| !succeeded.contains(j))
        .count();

    // Scores: computed from the log, checkpointed on anvil, recomputed by `verify`.
    let anvil = Anvil::start().unwrap();
    let (contracts, deployment) = deploy(&anvil.client(), &kafka.topic_prefix).await.unwrap();
    // Standing (poi-v3): the human and the developer are bonded on chain.
    let chr = alloy::primitives::U256::from(10u64).pow(alloy::primitives::U256::from(18u64));
    chorus_integration_tests::poi::bond_and_index(
        &kafka,
        &anvil.client(),
        &anvil.url(),
        &contracts,
        &deployment,
        &[
            (human.address(), alloy::primitives::U256::from(10u64) * chr),
            (
                developer.address(),
                alloy::primitives::U256::from(100u64) * chr,
            ),
        ],
    )
    .await
    .unwrap();
    let flags = poi_flags(&kafka, &anvil.url(), &deployment);
    let common: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (ok, scored) = run_chorus(
        &kafka,
        &[&["score", "--epoch", "0", "--allow-open"][..], &common[..]].concat(),
    );
    assert!(ok && scored.contains("checkpoint tx 0x"), "{scored}");
    for role in ["User", "AgentDeveloper"] {
        assert!(
            scored.contains(role),
            "the load's users and developer are paid: {scored}"
        );
    }
    let (verified, verify_out) = run_chorus(
        &kafka,
        &[&["verify", "--epoch", "0"][..], &common[..]].concat(),
    );

    println!(
        "\nlive path under faults: {messages} messages, {} client retries, {seconds:.1}s",
        retries.load(Ordering::SeqCst)
    );
    println!("{:<40} when", "fault");
    for (what, when) in &injected {
        println!("{what:<40} {when}");
    }
    println!(
        "\n{:<34} {:>6} {:>6} {:>6} {:>11} {:>22}",
        "stage", "in", "out", "lost", "duplicated", "redelivered (same id)"
    );
    let row = |stage: &str, input: usize, output: usize, lost: usize, dup: usize, again: usize| {
        println!("{stage:<34} {input:>6} {output:>6} {lost:>6} {dup:>11} {again:>22}");
    };
    row(
        "ingest: accepted -> chat.messages",
        accepted_ids.len(),
        human_ids.len(),
        lost_messages,
        stray_messages,
        redelivered(&chat),
    );
    row(
        "orchestrator: message -> call",
        accepted_ids.len(),
        calls_per_message
            .iter()
            .filter(|(m, _)| accepted_ids.contains(m))
            .map(|(_, c)| c.len())
            .sum(),
        calls_lost,
        calls_duplicated,
        redelivered(&calls),
    );
    row(
        "orchestrator: call -> job",
        call_jobs.len(),
        job_records.len(),
        jobs_lost,
        jobs_duplicated,
        redelivered(&jobs),
    );
    row(
        "worker: job -> result",
        job_records.len(),
        result_records.len(),
        results_lost,
        results_duplicated,
        redelivered(&results),
    );
    row(
        "orchestrator: succeeded -> reply",
        succeeded.len(),
        reply_records.len(),
        replies_lost,
        replies_duplicated,
        0,
    );
    println!(
        "results: {} succeeded, {} failed; dead letters: {}; replies to failed jobs: {replies_to_failed}",
        succeeded.len(),
        result_records.len() - succeeded.len(),
        dead_letters.len()
    );
    println!("scores: {}", verify_out.lines().last().unwrap_or(""));

    for child in [&mut ingest, &mut orchestrator, &mut worker] {
        child.kill().ok();
        child.wait().ok();
    }
    assert_eq!(injected.len(), PLAN.len(), "every fault was injected");
    assert_eq!(
        (lost_messages, stray_messages),
        (0, 0),
        "every accepted message in the log, nothing else"
    );
    assert_eq!(
        (calls_lost, calls_duplicated),
        (0, 0),
        "one call per message"
    );
    assert_eq!((jobs_lost, jobs_duplicated), (0, 0), "one job per call");
    assert_eq!(
        (results_lost, results_duplicated),
        (0, 0),
        "one result per job"
    );
    assert_eq!(
        (replies_lost, replies_duplicated, replies_to_failed),
        (0, 0, 0),
        "one reply per successful job, none for a failed one"
    );
    assert!(!succeeded.is_empty(), "jobs succeed around the faults");
    assert_eq!(dead_letters.len(), 0, "nothing dead-lettered");
    assert!(
        verified && verify_out.contains("verified"),
        "the checkpointed root is the one recomputed from the log: {verify_out}"
    );
}
