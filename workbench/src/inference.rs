//! `chorus-bench inference`: the same backlog of chat jobs served by 1 worker, then by
//! N workers (separate processes of this binary), against a provider with a fixed
//! latency. Prints jobs/s per worker count and the speed-up; asserts nothing.

use std::time::{Duration, Instant};

use anyhow::bail;

use chorus_cli::spawn::RoleCommand;
use chorus_runtime::kafka::{
    EventProducer, KafkaArgs, apply_topics, await_all, inspect, load_topic_specs,
};
use chorus_schemas::{ChatTurn, Envelope, InferenceJob, JobKind, Topic};

pub async fn run(
    base: &KafkaArgs,
    jobs: u64,
    latency: Duration,
    worker_counts: &[usize],
    concurrency: usize,
    chorus_bin: &std::path::Path,
) -> anyhow::Result<()> {
    let provider = crate::provider_sim::start("127.0.0.1:0".parse()?, latency).await?;
    let exe = chorus_bin;
    println!(
        "== chorus-bench inference: {jobs} chat jobs per run, provider latency {} ms, {concurrency} jobs in flight per worker",
        latency.as_millis()
    );
    let mut rows = Vec::new();
    for &workers in worker_counts {
        let mut kafka = base.clone();
        let id = uuid::Uuid::now_v7().simple().to_string();
        kafka.topic_prefix = format!("bench-inf-{}.", &id[id.len() - 8..]);
        let specs = load_topic_specs(&chorus_cli::commands::repo_path("infra/topics/topics.toml"))?;
        apply_topics(&kafka, &specs, chorus_runtime::kafka::Replication::SINGLE).await?;
        crate::grant_acls(&kafka).await?;

        // The backlog first, then the workers.
        let producer = EventProducer::new(&kafka, "bench", 100_000)?;
        let mut pending = Vec::new();
        for _ in 0..jobs {
            let job = Envelope::new(
                "bench",
                InferenceJob {
                    job_id: uuid::Uuid::now_v7(),
                    kind: JobKind::Chat,
                    model: "sim".into(),
                    messages: vec![ChatTurn {
                        role: "user".into(),
                        content: "hello".into(),
                    }],
                    max_tokens: Some(1),
                    temperature: None,
                    stream: false,
                    provider_ids: vec![],
                    call_id: None,
                    conversation_id: None,
                    agent_id: None,
                    deadline_ms: None,
                    reply_to: None,
                    hop: 0,
                },
            );
            pending.push(producer.enqueue(&job).await?);
        }
        await_all(pending).await?;

        let group = format!("{}chorus-inference-workers", kafka.topic_prefix);
        let mut children = Vec::new();
        for n in 0..workers {
            let role = RoleCommand::new(&["inference-worker"])
                .member(&group, &format!("{}w{n}", kafka.topic_prefix))
                .metrics_addr("127.0.0.1:0")
                .flag("--concurrency", &concurrency.to_string())
                .flag(
                    "--provider",
                    &format!("id=sim,endpoint=http://{provider}/v1,models=sim,price=1"),
                );
            let mut command = tokio::process::Command::new(exe);
            chorus_cli::spawn::with_role_credentials(command.as_std_mut(), &kafka);
            let child = command
                .args([
                    "--log",
                    "warn",
                    "--brokers",
                    &kafka.brokers,
                    "--topic-prefix",
                    &kafka.topic_prefix,
                ])
                .args(role.argv())
                .kill_on_drop(true)
                .spawn()?;
            children.push(child);
        }
        let topic = kafka.topic(Topic::InferenceJobs);
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut first: Option<(Instant, i64)> = None;
        let (seconds, counted) = loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let done: i64 = inspect::committed_offsets(&kafka, &group, &topic)?
                .values()
                .sum();
            if first.is_none() && done > 0 {
                first = Some((Instant::now(), done));
            }
            if done >= jobs as i64 {
                let (t0, c0) = first.unwrap_or((Instant::now(), 0));
                break (t0.elapsed().as_secs_f64(), jobs as i64 - c0);
            }
            if Instant::now() > deadline {
                bail!("{workers} worker(s) stalled at {done} of {jobs}");
            }
        };
        for mut child in children {
            let _ = child.kill().await;
        }
        let rate = counted as f64 / seconds.max(1e-9);
        rows.push((workers, rate, seconds, counted));
    }
    let base_rate = rows.first().map(|r| r.1).unwrap_or(1.0);
    println!(
        "\n{:>8} {:>10} {:>10} {:>12} {:>9}",
        "workers", "jobs/s", "seconds", "jobs timed", "speed-up"
    );
    for (workers, rate, seconds, counted) in rows {
        println!(
            "{workers:>8} {rate:>10.1} {seconds:>10.2} {counted:>12} {:>9.2}",
            rate / base_rate
        );
    }
    println!("(timed from each run's first committed transaction, after the consumer-group join)");
    Ok(())
}
