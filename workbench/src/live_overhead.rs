//! `chorus-bench live-overhead`: what the live path adds to a provider's latency.
//!
//! The whole path runs as in production, each role its own `chorus` process under a fresh
//! topic prefix: `chorus ingest` (signed HTTP API) -> `chorus.chat.messages` ->
//! `chorus orchestrator` -> `agent.calls` + `inference.jobs` -> `chorus inference-worker`
//! -> the provider -> `inference.results` -> orchestrator -> the agent's reply
//! `chat.message` (`chorus router` decides the registrations and conversations of the
//! setup; it is not on a message's path). The provider is [`crate::provider_sim`] with a
//! fixed latency. Signed human messages are posted open loop at a fixed rate (pre-signed,
//! round robin over several conversations, no waiting for replies) from a keep-alive HTTP
//! client (the setup uses the integration tests' helpers; their one blocking connection
//! per request is too heavy for hundreds per second on two cores), and at the same rate,
//! in the same run, the same streamed chat request goes straight to the provider through
//! the worker's own client code (`chorus_inference_workers::call`): the baseline.
//!
//! Per message: t0 just before the POST (how late that is after its tick is printed as
//! the client lag: whether the load generator kept up), the 202 (ingest ack), then from a
//! read_committed consumer (as the admin) on the chat, agent-call and result topics, the
//! time each record became visible, and the envelopes' own times. The hops add up to end
//! to end:
//!
//! - ingest ack: t0 -> 202;
//! - decision: 202 -> the `agent.call` visible (the orchestrator's consume, decision and
//!   transaction commit); of which the human message itself visible to read_committed
//!   (ingest's write behind the transactions open on its partition);
//! - job pickup: `agent.call` visible -> the worker starts the job (result time minus the
//!   result's `latency_ms`, which the worker measures from its start of the job);
//! - worker call: the worker's start of the job -> its result built (`latency_ms`: the
//!   provider call through async-openai);
//! - result commit: result built -> `inference.result` visible (the worker's batch waits
//!   for its slowest job, then commits);
//! - result to reply: `inference.result` visible -> the reply `chat.message` visible.
//!
//! Overhead = end to end minus the direct call issued on the same tick. Every time is
//! the same machine's wall clock (envelope times in milliseconds). Prints p50/p90/p99 per
//! rate and writes every message's figures to `<out>/<rate>.csv`
//! (`infra/bench/plot_latency.py` plots them). First, on the same broker, the Kafka floor
//! under the hops: a plain produce and one-record transactions, timed (`--kafka-floor`).
//! Asserts nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, bail};
use clap::Args;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use uuid::Uuid;

use chorus_inference_workers::call;
use chorus_integration_tests::chain::{DEV_KEY_0, DEV_KEY_1};
use chorus_integration_tests::ingest::{sign, start_ingest, start_router, try_post};
use chorus_integration_tests::{KillOnDrop, RoleCommand, read_all, spawn_role_with_env};
use chorus_runtime::kafka::{
    EventProducer, KafkaArgs, OutputRecord, Principal, TransactionalWriter, apply_topics,
    await_delivery, inspect,
};
use chorus_schemas::{
    AnyEvent, AuthorKind, ChatTurn, CleanupPolicy, InferenceJob, JobKind, JobStatus, Topic,
    TopicSpec,
};

const API_KEY: &str = "bench-live-overhead";
const AGENT: &str = "bench-agent";
const PROVIDER: &str = "bench-sim";
const MODEL: &str = "sim-model";
const PERSONA: &str = "You are the benchmark agent. Answer in one word.";
const MAX_TOKENS: u32 = 16;

#[derive(Debug, Args)]
pub struct LiveOverheadArgs {
    /// Messages per second, one run each.
    #[arg(long, value_delimiter = ',', default_value = "10,100,500")]
    rates: Vec<u32>,
    /// Seconds of posting per rate (rate x seconds messages).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Provider latency in milliseconds.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Conversations the messages go to, round robin (one conversation's messages are
    /// decided in order).
    #[arg(long, default_value_t = 20)]
    conversations: usize,
    /// Jobs in flight in the inference worker (`chorus inference-worker --concurrency`;
    /// a transaction holds up to four times as many).
    #[arg(long, default_value_t = 64)]
    worker_concurrency: usize,
    /// After the last post, how long to wait for replies without any arriving.
    #[arg(long, default_value_t = 30)]
    drain_seconds: u64,
    /// Records per Kafka-floor probe (plain produce, spaced and back-to-back
    /// transactions) before the rates; 0 skips it.
    #[arg(long, default_value_t = 30)]
    kafka_floor: usize,
    /// Keep the run's topics afterwards (by default everything under its prefix is deleted).
    #[arg(long)]
    keep_topics: bool,
    /// Directory of the per-message CSVs.
    #[arg(long, default_value = "target/live-overhead")]
    out: PathBuf,
}

fn now_ms() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1000.0
}

fn event_ms(time: chrono::DateTime<chrono::Utc>) -> f64 {
    time.timestamp_micros() as f64 / 1000.0
}

/// What the consumer saw of one human message's path (times in ms since the epoch).
#[derive(Debug, Default, Clone, Copy)]
struct Trace {
    /// The human message itself became visible (ingest's write, read committed).
    message_seen: Option<f64>,
    /// The `agent.call` it triggered became visible.
    call_seen: Option<f64>,
    /// The worker's start of the job (result time minus its `latency_ms`).
    job_started: Option<f64>,
    /// The worker built the result (its envelope time).
    result_built: Option<f64>,
    /// The provider call of the successful attempt (`gpu_seconds`), in ms.
    provider_call_ms: Option<f64>,
    result_seen: Option<f64>,
    result_failed: bool,
    reply_seen: Option<f64>,
}

/// A read_committed consumer on the topics of a message's path, from their beginning
/// (the prefix is fresh), noting when each record became visible.
struct Tracker {
    traces: Arc<Mutex<HashMap<Uuid, Trace>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Tracker {
    fn start(kafka: &KafkaArgs) -> anyhow::Result<Self> {
        let consumer: StreamConsumer = kafka
            .client_config("bench-live-overhead")
            .set("group.id", kafka.assign_only_group("live-overhead"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            // The observer's own delay stays small next to the hops it measures.
            .set("fetch.wait.max.ms", "10")
            .create()?;
        let mut list = TopicPartitionList::new();
        for topic in [
            Topic::ChatMessages,
            Topic::AgentCalls,
            Topic::InferenceResults,
        ] {
            let name = kafka.topic(topic);
            for partition in inspect::partitions(kafka, &name)? {
                list.add_partition_offset(&name, partition, Offset::Beginning)?;
            }
        }
        consumer.assign(&list)?;
        let traces: Arc<Mutex<HashMap<Uuid, Trace>>> = Arc::default();
        let sink = traces.clone();
        let task = tokio::spawn(async move {
            loop {
                let message = match consumer.recv().await {
                    Ok(message) => message,
                    Err(e) => {
                        tracing::warn!(error = %e, "live-overhead consumer");
                        continue;
                    }
                };
                let seen = now_ms();
                let Some(payload) = message.payload() else {
                    continue;
                };
                let Ok(event) = AnyEvent::decode(None, payload) else {
                    continue;
                };
                let mut traces = sink.lock().unwrap_or_else(|p| p.into_inner());
                match event {
                    AnyEvent::AgentCall(agent_call) => {
                        let trace = traces
                            .entry(agent_call.data.trigger_message_id)
                            .or_default();
                        trace.call_seen.get_or_insert(seen);
                    }
                    AnyEvent::InferenceResult(result) => {
                        let Some(message_id) = result.data.reply_to else {
                            continue;
                        };
                        let trace = traces.entry(message_id).or_default();
                        if trace.result_seen.is_none() {
                            let built = event_ms(result.time);
                            trace.result_seen = Some(seen);
                            trace.result_built = Some(built);
                            trace.job_started = Some(built - result.data.latency_ms as f64);
                            trace.provider_call_ms = Some(result.data.gpu_seconds * 1000.0);
                            trace.result_failed = result.data.status != JobStatus::Succeeded;
                        }
                    }
                    AnyEvent::ChatMessage(chat) if chat.data.author_kind == AuthorKind::Human => {
                        let trace = traces.entry(chat.id).or_default();
                        trace.message_seen.get_or_insert(seen);
                    }
                    AnyEvent::ChatMessage(chat) if chat.data.author_kind == AuthorKind::Agent => {
                        if let Some(message_id) = chat.data.reply_to {
                            let trace = traces.entry(message_id).or_default();
                            trace.reply_seen.get_or_insert(seen);
                        }
                    }
                    _ => {}
                }
            }
        });
        Ok(Tracker { traces, task })
    }

    fn get(&self, id: &Uuid) -> Option<Trace> {
        self.traces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
    }
}

/// The roles, stopped (SIGTERM) by [`Stack::stop`] or killed when dropped.
struct Stack {
    roles: Vec<(&'static str, KillOnDrop)>,
    ingest_port: u16,
}

impl Stack {
    async fn stop(self) {
        let roles = self.roles;
        let _ = tokio::task::spawn_blocking(move || {
            for (name, mut role) in roles {
                if let Err(e) =
                    chorus_integration_tests::terminate(&mut role, Duration::from_secs(30))
                {
                    eprintln!("stopping {name}: {e}");
                }
            }
        })
        .await;
    }
}

/// Runs a blocking helper (the integration-test helpers wait by sleeping, and panic on
/// failure) off the async threads.
async fn blocking<R: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> anyhow::Result<R> {
    tokio::task::spawn_blocking(f)
        .await
        .with_context(|| format!("{what} failed"))
}

/// POSTs a signed body; 202 or an error naming the answer.
async fn post_accepted(port: u16, path: &'static str, body: Value) -> anyhow::Result<()> {
    let (status, answer) = blocking(path, move || try_post(port, path, API_KEY, &body)).await??;
    if status != 202 {
        bail!("POST {path}: {status} {answer}");
    }
    Ok(())
}

/// Router and ingest; the agent, the provider and the conversations registered through
/// the signed API (as a client would) and decided by the router; then the orchestrator
/// and the worker.
async fn start_stack(
    kafka: &KafkaArgs,
    args: &LiveOverheadArgs,
    endpoint: &str,
    human: &PrivateKeySigner,
    conversations: &[String],
) -> anyhow::Result<Stack> {
    let mut roles = Vec::new();
    // The roles log warnings only; CHORUS_BENCH_ROLE_LOG sets another filter (e.g.
    // `warn,librdkafka=debug` with CHORUS_KAFKA_PROPERTIES=debug=eos to see transactions).
    // Leaked once per run: the role helpers take 'static environment pairs.
    let role_log: &'static str = std::env::var("CHORUS_BENCH_ROLE_LOG")
        .map(|filter| &*Box::leak(filter.into_boxed_str()))
        .unwrap_or("warn");
    let quiet = [("RUST_LOG", role_log)];
    let k = kafka.clone();
    roles.push((
        "router",
        KillOnDrop(blocking("starting the router", move || start_router(&k, "router")).await?),
    ));
    let keys = format!("bench:{API_KEY}:chat:write+agents:write+providers:write");
    let k = kafka.clone();
    let (ingest, ingest_port) = blocking("starting ingest", move || {
        // No rate limit per key or account: the benchmark's one account posts at up to
        // hundreds of messages per second.
        let limits = ["--key-rate-per-s", "0", "--account-rate-per-s", "0"];
        start_ingest(&k, "ingest", &keys, &limits, &quiet)
    })
    .await?;
    roles.push(("ingest", KillOnDrop(ingest)));

    let developer: PrivateKeySigner = DEV_KEY_1.parse()?;
    let owner = developer.address().to_string();
    let agent = sign(
        &developer,
        "agent.register",
        json!({"agent_id": AGENT, "owner": owner, "name": AGENT, "system_prompt": PERSONA,
               "model": MODEL, "price_per_call_micros": 1000}),
    );
    post_accepted(ingest_port, "/v1/agents", agent).await?;
    let provider = sign(
        &developer,
        "provider.register",
        json!({"provider_id": PROVIDER, "owner": owner, "endpoint": endpoint,
               "models": [MODEL], "price_per_1k_tokens_micros": 20}),
    );
    post_accepted(ingest_port, "/v1/providers", provider).await?;
    for conversation in conversations {
        let body = sign(
            human,
            "conversation.create",
            json!({"conversation_id": conversation, "title": conversation,
                   "actor": human.address().to_string(),
                   "members": [{"kind": "agent", "id": AGENT}]}),
        );
        post_accepted(ingest_port, "/v1/conversations", body).await?;
    }
    // The router's decisions: two registrations; per conversation its creation and its agent.
    let k = kafka.clone();
    let expected_chat = 2 * conversations.len();
    blocking("the router's decisions", move || {
        chorus_integration_tests::wait_for(
            "the router's decisions",
            Duration::from_secs(60),
            || {
                let count = |topic| read_all(&k, &k.topic(topic)).map(|r| r.len()).unwrap_or(0);
                count(Topic::Registry) >= 2 && count(Topic::ChatMessages) >= expected_chat
            },
        )
    })
    .await??;

    let group = format!("{}chorus-orchestrator", kafka.topic_prefix);
    let orchestrator = RoleCommand::new(&["orchestrator"])
        .member(&group, &group)
        .metrics_addr("127.0.0.1:0")
        .session_timeout_ms(6000)
        .flag("--max-tokens", &MAX_TOKENS.to_string())
        // Every message is answered: no conversation's reply budget runs out.
        .flag("--reply-budget", "1000000000");
    let workers = format!("{}chorus-inference-workers", kafka.topic_prefix);
    let worker = RoleCommand::new(&["inference-worker"])
        .member(&workers, &workers)
        .metrics_addr("127.0.0.1:0")
        .session_timeout_ms(6000)
        .flag("--concurrency", &args.worker_concurrency.to_string());
    for (name, role) in [("orchestrator", orchestrator), ("inference-worker", worker)] {
        let k = kafka.clone();
        let child = blocking(name, move || spawn_role_with_env(&k, name, &role, &quiet)).await??;
        roles.push((name, KillOnDrop(child)));
    }
    Ok(Stack { roles, ingest_port })
}

/// One message's figures (ms); hops are `None` when the consumer missed a record.
#[derive(Debug, Clone)]
struct Row {
    n: usize,
    t0: f64,
    /// Tick -> POST sent: the load generator's own delay.
    client_lag: f64,
    ack: f64,
    decision: Option<f64>,
    /// 202 -> the message visible to a read_committed consumer.
    message_visible: Option<f64>,
    pickup: Option<f64>,
    worker_call: Option<f64>,
    provider_call: Option<f64>,
    result_commit: Option<f64>,
    reply: Option<f64>,
    e2e: f64,
    direct: Option<f64>,
}

impl Row {
    fn overhead(&self) -> Option<f64> {
        self.direct.map(|d| self.e2e - d)
    }
}

/// What one phase (a rate) gave.
struct Phase {
    rows: Vec<Row>,
    sent: usize,
    accepted: usize,
    refused: HashMap<u16, usize>,
    failed_jobs: usize,
    direct_failures: usize,
    send_seconds: f64,
    drain_seconds: f64,
}

/// The streamed chat job the orchestrator would send for a message (its context aside),
/// for the direct baseline.
fn direct_job() -> InferenceJob {
    InferenceJob {
        job_id: Uuid::now_v7(),
        kind: JobKind::Chat,
        model: MODEL.into(),
        messages: vec![
            ChatTurn {
                role: "system".into(),
                content: PERSONA.into(),
            },
            ChatTurn {
                role: "user".into(),
                content: format!("0xf39f...: @{AGENT} live-overhead 0/0"),
            },
        ],
        max_tokens: Some(MAX_TOKENS),
        temperature: Some(0.7),
        stream: true,
        provider_ids: vec![PROVIDER.into()],
        call_id: None,
        conversation_id: None,
        agent_id: None,
        deadline_ms: None,
        reply_to: None,
        hop: 0,
    }
}

/// Posts `rate x seconds` pre-signed messages open loop at `rate`, beside as many direct
/// provider calls, then waits for the replies.
#[allow(clippy::too_many_arguments)]
async fn phase(
    tracker: &Tracker,
    port: u16,
    human: &PrivateKeySigner,
    conversations: &[String],
    endpoint: &str,
    rate: u32,
    count: usize,
    drain: Duration,
) -> anyhow::Result<Phase> {
    // Pre-signed, before the timed part.
    let signer = human.clone();
    let conversations = conversations.to_vec();
    let requests: Vec<(String, String)> = blocking("signing", move || {
        (0..count)
            .map(|n| {
                let conversation = &conversations[n % conversations.len()];
                let mut body = sign(
                    &signer,
                    "chat.message",
                    json!({"author": signer.address().to_string(),
                           "content": format!("@{AGENT} live-overhead {rate}/{n}"),
                           "conversation_id": conversation}),
                );
                if let Some(object) = body.as_object_mut() {
                    object.remove("conversation_id");
                }
                (
                    format!("http://127.0.0.1:{port}/v1/conversations/{conversation}/messages"),
                    body.to_string(),
                )
            })
            .collect()
    })
    .await?;
    let http = reqwest::Client::new();
    let client = Arc::new(call::client(endpoint, None));
    let job = Arc::new(direct_job());

    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut posts = Vec::with_capacity(count);
    let mut directs = Vec::with_capacity(count);
    for (url, body) in requests {
        ticks.tick().await;
        let tick = now_ms();
        let http = http.clone();
        posts.push(tokio::spawn(async move {
            let t0 = now_ms();
            let answer = async {
                let response = http
                    .post(&url)
                    .header("authorization", format!("Bearer {API_KEY}"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = response.status().as_u16();
                let text = response.text().await?;
                let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                Ok::<_, reqwest::Error>((status, answer))
            }
            .await;
            (tick, t0, now_ms(), answer)
        }));
        let (client, job) = (client.clone(), job.clone());
        directs.push(tokio::spawn(async move {
            let t = Instant::now();
            let outcome = call::call(&client, &job, Duration::from_secs(60)).await;
            outcome.ok().map(|_| t.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let send_seconds = started.elapsed().as_secs_f64();

    let mut accepted = Vec::new();
    let mut refused: HashMap<u16, usize> = HashMap::new();
    for (n, post) in posts.into_iter().enumerate() {
        let (tick, t0, acked, answer) = post.await?;
        match answer {
            Ok((202, body)) => match body["event_id"].as_str().map(Uuid::parse_str) {
                Some(Ok(id)) => accepted.push((n, id, tick, t0, acked)),
                _ => *refused.entry(202).or_default() += 1,
            },
            Ok((status, _)) => *refused.entry(status).or_default() += 1,
            Err(_) => *refused.entry(0).or_default() += 1,
        }
    }
    let mut direct = Vec::with_capacity(count);
    for direct_call in directs {
        direct.push(direct_call.await?);
    }
    let direct_failures = direct.iter().filter(|d| d.is_none()).count();

    // Wait for the replies (or the results of failed jobs) while they keep coming.
    let drain_started = Instant::now();
    let mut last_progress = Instant::now();
    let mut done_before = 0;
    loop {
        let done = accepted
            .iter()
            .filter(|(_, id, _, _, _)| {
                tracker
                    .get(id)
                    .is_some_and(|t| t.reply_seen.is_some() || t.result_failed)
            })
            .count();
        if done == accepted.len() {
            break;
        }
        if done > done_before {
            done_before = done;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > drain {
            eprintln!(
                "{rate} msg/s: {} of {} accepted messages got no reply within {} s of the last one",
                accepted.len() - done,
                accepted.len(),
                drain.as_secs()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drain_seconds = drain_started.elapsed().as_secs_f64();

    let mut rows = Vec::new();
    let mut failed_jobs = 0;
    for (n, id, tick, t0, acked) in &accepted {
        let Some(trace) = tracker.get(id) else {
            continue;
        };
        if trace.result_failed {
            failed_jobs += 1;
        }
        let Some(reply_seen) = trace.reply_seen else {
            continue;
        };
        let minus = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
        rows.push(Row {
            n: *n,
            t0: *t0,
            client_lag: t0 - tick,
            ack: acked - t0,
            decision: minus(trace.call_seen, Some(*acked)),
            message_visible: minus(trace.message_seen, Some(*acked)),
            pickup: minus(trace.job_started, trace.call_seen),
            worker_call: minus(trace.result_built, trace.job_started),
            provider_call: trace.provider_call_ms,
            result_commit: minus(trace.result_seen, trace.result_built),
            reply: minus(Some(reply_seen), trace.result_seen),
            e2e: reply_seen - t0,
            direct: direct.get(*n).copied().flatten(),
        });
    }
    Ok(Phase {
        rows,
        sent: count,
        accepted: accepted.len(),
        refused,
        failed_jobs,
        direct_failures,
        send_seconds,
        drain_seconds,
    })
}

/// The Kafka floor under the hops, on the same broker in the same run: a plain
/// idempotent produce (the ingest API's producer settings) and one-record transactions
/// (the pipelines' settings, through `TransactionalWriter`), each timed to its
/// acknowledgement or commit and to when a read_committed consumer sees it; first spaced
/// 100 ms apart, then transactions back to back (as a busy stage commits them).
async fn kafka_floor(kafka: &KafkaArgs, count: usize) -> anyhow::Result<()> {
    let spec = TopicSpec {
        name: "bench.kafka-floor".into(),
        partitions: 1,
        cleanup_policy: CleanupPolicy::Delete,
        retention_ms: 3_600_000,
        description: "chorus-bench live-overhead: the Kafka floor probe".into(),
    };
    apply_topics(
        kafka,
        std::slice::from_ref(&spec),
        chorus_runtime::kafka::Replication::SINGLE,
    )
    .await?;
    let topic = format!("{}{}", kafka.topic_prefix, spec.name);
    let consumer: StreamConsumer = kafka
        .client_config("bench-kafka-floor")
        .set("group.id", kafka.assign_only_group("kafka-floor"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(&topic, 0, Offset::Beginning)?;
    consumer.assign(&list)?;
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(Vec<u8>, f64)>();
    let reader = tokio::spawn(async move {
        while let Ok(message) = consumer.recv().await {
            let seen = now_ms();
            let payload = message.payload().unwrap_or_default().to_vec();
            if seen_tx.send((payload, seen)).is_err() {
                break;
            }
        }
    });
    let plain = EventProducer::new(kafka, "bench-kafka-floor", 1000)?;
    let writer =
        TransactionalWriter::new(kafka, &format!("{}bench-kafka-floor", kafka.topic_prefix))?;
    let (mut plain_ack, mut plain_seen, mut txn_commit, mut txn_seen) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut burst_commit, mut burst_seen) = (Vec::new(), Vec::new());
    for n in 0..count * 2 {
        let back_to_back = n >= count;
        if !back_to_back {
            let payload = format!("plain-{n}").into_bytes();
            let t0 = now_ms();
            let delivery = plain.enqueue_raw(&topic, None, &payload, None).await?;
            await_delivery(delivery).await?;
            plain_ack.push(now_ms() - t0);
            plain_seen.push(wait_seen(&mut seen_rx, &payload).await? - t0);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let payload = format!("txn-{n}").into_bytes();
        let record = OutputRecord {
            topic: topic.clone(),
            key: None,
            payload: payload.clone(),
            headers: None,
        };
        let t0 = now_ms();
        writer.commit(std::slice::from_ref(&record)).await?;
        let committed = now_ms() - t0;
        let seen = wait_seen(&mut seen_rx, &payload).await? - t0;
        if back_to_back {
            burst_commit.push(committed);
            burst_seen.push(seen);
        } else {
            txn_commit.push(committed);
            txn_seen.push(seen);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    reader.abort();
    println!(
        "\n== Kafka floor on this broker ({count} each; consumer read_committed, fetch.wait.max.ms 10)"
    );
    println!(
        "{:<52} {:>9} {:>9} {:>9} {:>9}",
        "(ms)", "p50", "p90", "p99", "max"
    );
    for (name, values) in [
        ("plain produce: ack (acks=all, linger 5 ms)", plain_ack),
        ("plain produce: visible", plain_seen),
        ("1-record transaction: committed (spaced)", txn_commit),
        ("1-record transaction: visible (spaced)", txn_seen),
        (
            "1-record transaction: committed (back to back)",
            burst_commit,
        ),
        ("1-record transaction: visible (back to back)", burst_seen),
    ] {
        let values = sorted(values.into_iter());
        println!(
            "{name:<52} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            percentile(&values, 50.0),
            percentile(&values, 90.0),
            percentile(&values, 99.0),
            values.last().copied().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

/// When the probe consumer saw `payload`.
async fn wait_seen(
    seen: &mut tokio::sync::mpsc::UnboundedReceiver<(Vec<u8>, f64)>,
    payload: &[u8],
) -> anyhow::Result<f64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, seen.recv()).await {
            Ok(Some((seen_payload, at))) if seen_payload == payload => return Ok(at),
            Ok(Some(_)) => continue,
            _ => bail!("the probe record was not seen within 10 s"),
        }
    }
}

/// Deletes every topic under the run's prefix; returns how many.
async fn delete_topics(kafka: &KafkaArgs) -> anyhow::Result<usize> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let names = inspect::topics_with_prefix(kafka, &kafka.topic_prefix)?;
    let admin: AdminClient<DefaultClientContext> =
        kafka.client_config("bench-live-overhead-admin").create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    admin.delete_topics(&refs, &options).await?;
    Ok(names.len())
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values
}

fn print_phase(rate: u32, phase: &Phase, latency_ms: u64) {
    let rows = &phase.rows;
    println!(
        "\n== {rate} msg/s: {} sent in {:.1} s ({:.1}/s), {} accepted, {} replied, {} jobs failed, {} direct calls failed{}; drained in {:.1} s",
        phase.sent,
        phase.send_seconds,
        phase.sent as f64 / phase.send_seconds.max(1e-9),
        phase.accepted,
        rows.len(),
        phase.failed_jobs,
        phase.direct_failures,
        if phase.refused.is_empty() {
            String::new()
        } else {
            format!(", refused {:?}", phase.refused)
        },
        phase.drain_seconds,
    );
    println!(
        "{:<40} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "(ms)", "p50", "p90", "p99", "max", "mean"
    );
    let line = |name: &str, values: Vec<f64>| {
        if values.is_empty() {
            println!("{name:<40} {:>9}", "-");
            return;
        }
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        println!(
            "{name:<40} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            percentile(&values, 50.0),
            percentile(&values, 90.0),
            percentile(&values, 99.0),
            values.last().copied().unwrap_or(f64::NAN),
            mean
        );
    };
    line(
        "end to end (POST -> reply visible)",
        sorted(rows.iter().map(|r| r.e2e)),
    );
    line(
        &format!("direct provider call ({latency_ms} ms sim)"),
        sorted(rows.iter().filter_map(|r| r.direct)),
    );
    line(
        "overhead (end to end - direct)",
        sorted(rows.iter().filter_map(Row::overhead)),
    );
    line(
        "client lag (tick -> POST sent)",
        sorted(rows.iter().map(|r| r.client_lag)),
    );
    line(
        "  ingest ack (POST -> 202)",
        sorted(rows.iter().map(|r| r.ack)),
    );
    line(
        "  decision (202 -> agent.call)",
        sorted(rows.iter().filter_map(|r| r.decision)),
    );
    line(
        "    of which the message visible",
        sorted(rows.iter().filter_map(|r| r.message_visible)),
    );
    line(
        "  job pickup (agent.call -> worker start)",
        sorted(rows.iter().filter_map(|r| r.pickup)),
    );
    line(
        "  worker call (start -> result built)",
        sorted(rows.iter().filter_map(|r| r.worker_call)),
    );
    line(
        "    of which provider call",
        sorted(rows.iter().filter_map(|r| r.provider_call)),
    );
    line(
        "  result commit (built -> visible)",
        sorted(rows.iter().filter_map(|r| r.result_commit)),
    );
    line(
        "  result to reply (-> reply visible)",
        sorted(rows.iter().filter_map(|r| r.reply)),
    );
    // Whether the path kept up: a growing backlog shows as a later third slower than
    // the first.
    let mut by_send: Vec<&Row> = rows.iter().collect();
    by_send.sort_by_key(|r| r.n);
    let third = by_send.len() / 3;
    if third > 0 {
        let p50 = |part: &[&Row]| percentile(&sorted(part.iter().map(|r| r.e2e)), 50.0);
        println!(
            "end-to-end p50 of the first third of the messages {:.1} ms, of the last third {:.1} ms",
            p50(&by_send[..third]),
            p50(&by_send[by_send.len() - third..])
        );
    }
}

fn write_csv(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    use std::io::Write;
    let cell = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    writeln!(
        out,
        "n,t0_unix_ms,client_lag_ms,e2e_ms,direct_ms,overhead_ms,ingest_ack_ms,decision_ms,message_visible_ms,job_pickup_ms,worker_call_ms,provider_call_ms,result_commit_ms,result_to_reply_ms"
    )?;
    let mut rows: Vec<&Row> = rows.iter().collect();
    rows.sort_by_key(|r| r.n);
    for r in rows {
        writeln!(
            out,
            "{},{:.3},{:.3},{:.3},{},{},{:.3},{},{},{},{},{},{},{}",
            r.n,
            r.t0,
            r.client_lag,
            r.e2e,
            cell(r.direct),
            cell(r.overhead()),
            r.ack,
            cell(r.decision),
            cell(r.message_visible),
            cell(r.pickup),
            cell(r.worker_call),
            cell(r.provider_call),
            cell(r.result_commit),
            cell(r.reply),
        )?;
    }
    out.flush()?;
    Ok(())
}

pub async fn run(
    base: &KafkaArgs,
    args: LiveOverheadArgs,
    chorus_bin: PathBuf,
) -> anyhow::Result<()> {
    chorus_integration_tests::use_chorus_bin(chorus_bin);
    // The roles run as their own principals: they need the local secrets directory.
    let mut kafka = base.clone();
    if kafka.secrets_dir.is_none() {
        let dir = chorus_integration_tests::kafka_secrets_dir();
        anyhow::ensure!(
            dir.is_dir(),
            "no Kafka secrets directory: pass --kafka-secrets-dir (infra/scripts/kafka-auth.sh makes {})",
            dir.display()
        );
        kafka.secrets_dir = Some(dir);
        kafka = kafka.as_principal(Principal::Admin)?;
    }
    let id = Uuid::now_v7().simple().to_string();
    kafka.topic_prefix = format!("bench-live-{}.", &id[id.len() - 8..]);
    chorus_integration_tests::create_topics(&kafka).await?;

    let latency = Duration::from_millis(args.latency_ms);
    let provider = crate::provider_sim::start("127.0.0.1:0".parse()?, latency).await?;
    let endpoint = format!("http://{provider}/v1");
    let human: PrivateKeySigner = DEV_KEY_0.parse()?;
    let conversations: Vec<String> = (0..args.conversations.max(1))
        .map(|c| format!("bench-{c}"))
        .collect();
    println!(
        "== chorus-bench live-overhead: topic prefix {}, provider-sim at {endpoint} ({} ms), {} conversations, worker concurrency {}, {} s per rate",
        kafka.topic_prefix,
        args.latency_ms,
        conversations.len(),
        args.worker_concurrency,
        args.seconds
    );
    if args.kafka_floor > 0 {
        kafka_floor(&kafka, args.kafka_floor).await?;
    }
    let stack = start_stack(&kafka, &args, &endpoint, &human, &conversations).await?;
    let tracker = Tracker::start(&kafka)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    // Warm-up (not reported): the roles join their groups, connections open, every
    // conversation gets some context.
    let port = stack.ingest_port;
    let drain = Duration::from_secs(args.drain_seconds);
    let warm = 2 * conversations.len();
    let warmup = phase(
        &tracker,
        port,
        &human,
        &conversations,
        &endpoint,
        10,
        warm,
        Duration::from_secs(120),
    )
    .await?;
    if warmup.rows.len() < warm {
        stack.stop().await;
        bail!(
            "warm-up: {} of {warm} messages got a reply (logs: target/test-logs/{}*.log)",
            warmup.rows.len(),
            kafka.topic_prefix
        );
    }

    let mut written = Vec::new();
    for &rate in &args.rates {
        let count = (u64::from(rate) * args.seconds) as usize;
        let result = phase(
            &tracker,
            port,
            &human,
            &conversations,
            &endpoint,
            rate,
            count,
            drain,
        )
        .await;
        let result = match result {
            Ok(result) => result,
            Err(e) => {
                stack.stop().await;
                return Err(e);
            }
        };
        print_phase(rate, &result, args.latency_ms);
        let path = args.out.join(format!("{rate}.csv"));
        write_csv(&path, &result.rows)?;
        written.push(path);
    }
    stack.stop().await;
    println!(
        "\nper-message figures: {} (plot: ~/.chorus/venv/bin/python infra/bench/plot_latency.py); role logs: target/test-logs/{}*.log",
        written
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        kafka.topic_prefix
    );
    drop(tracker);
    if !args.keep_topics {
        match delete_topics(&kafka).await {
            Ok(deleted) => println!(
                "deleted the run's {deleted} topics ({}*)",
                kafka.topic_prefix
            ),
            Err(e) => eprintln!("deleting the topics under {}: {e}", kafka.topic_prefix),
        }
    }
    Ok(())
}
