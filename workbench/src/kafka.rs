//! `chorus-bench kafka`: produce and transactional-pipeline throughput against the
//! configured broker, beside kcat (librdkafka's own CLI producer) writing the same
//! payloads in the same run. Prints events/s and the ratios; asserts nothing.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

use chorus_runtime::Shutdown;
use chorus_runtime::kafka::{
    EventProducer, KafkaArgs, PipelineConfig, Principal, cloudevents_headers, inspect,
};
use chorus_schemas::Topic;

use chorus_workload::{Rng, workload_event};

/// Where the routed half of the benchmark runs.
#[derive(Debug, Clone)]
pub enum Routers {
    /// One router on this process's runtime.
    InProcess,
    /// `count` `chorus router` processes in one consumer group.
    Processes { count: usize, chorus_bin: PathBuf },
}

pub async fn run(
    base: &KafkaArgs,
    events: u64,
    partitions: i32,
    kcat: &str,
    (batch_max, batch_linger): (usize, Duration),
    keep_topics: bool,
    routers: Routers,
) -> anyhow::Result<()> {
    let mut kafka = base.clone();
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    kafka.topic_prefix = format!("bench-{}.", &run_id[run_id.len() - 8..]);
    let kcat_topic = format!("{}kcat-baseline", kafka.topic_prefix);
    let intake = kafka.topic(Topic::Intake);
    let topics = [
        kcat_topic.clone(),
        intake.clone(),
        kafka.topic(Topic::ChatMessages),
        kafka.topic(Topic::Feedback),
        kafka.topic(Topic::Registry),
        kafka.topic(Topic::DeadLetters),
    ];
    let admin: AdminClient<DefaultClientContext> =
        kafka.client_config("chorus-bench-admin").create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    for result in admin.create_topics(&new_topics, &options).await? {
        if let Err((topic, code)) = result {
            bail!("creating {topic}: {code}");
        }
    }
    // With auth on, the producer writes as the importer and the router runs as the
    // router, so every request passes the ACL check a deployment's would (the admin is
    // a super user, which the authorizer lets through unchecked). kcat, the baseline,
    // authenticates the same way (SCRAM) as the admin.
    crate::grant_acls(&kafka).await?;
    let importer = kafka.as_principal(Principal::Importer)?;
    let router_kafka = kafka.as_principal(Principal::Router)?;
    let kcat_config = KcatConfig::write(&kafka, &run_id)?;

    // The same payloads for every measurement: envelopes of a generated chat workload,
    // what outsiders submit (registrations and conversation changes come signed through
    // the API's own topic, not through intake).
    let mut rng = Rng::new(42);
    let records: Vec<(String, Vec<u8>)> = (0..)
        .map(|i| workload_event(&mut rng, i, 500))
        .filter(|event| !chorus_workload::submitted_by_the_api(event))
        .take(usize::try_from(events).unwrap_or(usize::MAX))
        .map(|event| Ok((event.key().to_owned(), event.to_json()?)))
        .collect::<Result<_, serde_json::Error>>()?;
    let bytes: usize = records.iter().map(|r| r.1.len()).sum();
    println!(
        "== chorus-bench kafka: {events} events, {} bytes average payload, {partitions} partitions, brokers {}, {}",
        bytes / records.len().max(1),
        kafka.brokers,
        if kafka.password.is_some() {
            "SASL/SCRAM-SHA-512 + ACLs"
        } else {
            "no authentication"
        }
    );

    // 1. kcat (librdkafka's CLI producer) with the same producer settings.
    let file = std::env::temp_dir().join(format!("chorus-bench-{run_id}.tsv"));
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
        for (key, payload, ..) in &records {
            out.write_all(key.as_bytes())?;
            out.write_all(b"\t")?;
            out.write_all(payload)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
    }
    let started = Instant::now();
    let mut command = tokio::process::Command::new(kcat);
    if let Some(config) = &kcat_config {
        command.arg("-F").arg(&config.0);
    }
    let status = command
        .args([
            "-P",
            "-b",
            &kafka.brokers,
            "-t",
            &kcat_topic,
            "-K",
            "\t",
            "-l",
            // The same one header Chorus writes (structured-mode CloudEvents).
            "-H",
            "content-type=application/cloudevents+json",
        ])
        .args([
            "-X",
            "enable.idempotence=true",
            "-X",
            "acks=all",
            "-X",
            "linger.ms=5",
            "-X",
            "compression.type=lz4",
        ])
        .arg(&file)
        .status()
        .await
        .with_context(|| format!("running {kcat} (install the Debian package kcat)"))?;
    let kcat_seconds = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&file);
    if !status.success() {
        bail!("kcat failed: {status}");
    }
    let kcat_written: i64 = inspect::end_offsets(&kafka, &kcat_topic)?.values().sum();
    if kcat_written != events as i64 {
        bail!("kcat wrote {kcat_written} records, expected {events}");
    }

    // Router processes start first and are measured once the group is stable, so that
    // their joins and rebalances are not timed.
    let group = format!("{}chorus-router", kafka.topic_prefix);
    let mut processes = Vec::new();
    if let Routers::Processes { count, chorus_bin } = &routers {
        chorus_integration_tests::use_chorus_bin(chorus_bin.clone());
        for n in 0..*count {
            let name = format!("bench-router-{n}");
            let role = chorus_integration_tests::RoleCommand::new(&["router"])
                .member(&group, &format!("{}{name}", kafka.topic_prefix))
                .metrics_addr("127.0.0.1:0")
                .session_timeout_ms(6000)
                .flag("--batch-max", &batch_max.to_string())
                .flag("--batch-linger-ms", &batch_linger.as_millis().to_string());
            let child = chorus_integration_tests::spawn_role(&kafka, &name, &role)?;
            processes.push(chorus_integration_tests::KillOnDrop(child));
        }
        wait_for_group(&kafka, &group, *count).await?;
    }

    // 2. The Chorus idempotent producer (acks=all, backpressure on a full queue).
    let producer = EventProducer::new(&importer, "bench", 100_000)?;
    let started = Instant::now();
    let mut batch = producer.batch();
    for (key, payload) in &records {
        let headers = cloudevents_headers();
        batch
            .enqueue_raw(&intake, Some(key.as_bytes()), payload, Some(headers))
            .await?;
    }
    batch.finish().await?;
    let produce_seconds = started.elapsed().as_secs_f64();

    // 3. The transactional intake router (read_committed in, transactions out) over
    //    those records. Timed from its first committed transaction (after the group
    //    join) until it has caught up.
    let shutdown = Shutdown::new();
    let mut config = PipelineConfig::new("router", &group, vec![intake.clone()], "bench");
    config.batch_max = batch_max;
    config.batch_linger = batch_linger;
    let router = match routers {
        Routers::InProcess => {
            chorus_cli::commands::spawn_router(&router_kafka, config, shutdown.clone())
        }
        Routers::Processes { .. } => {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                shutdown.triggered().await;
                Ok::<(), chorus_runtime::kafka::PipelineError>(())
            })
        }
    };
    // Router processes have been routing while the events were produced; they are timed
    // from here (the backlog left, every member joined), with their CPU and the broker's
    // (CHORUS_BENCH_BROKER_PID) over the same window.
    let mut first: Option<(Instant, i64)> = None;
    let broker_pid = std::env::var("CHORUS_BENCH_BROKER_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok());
    let cpu = |processes: &[chorus_integration_tests::KillOnDrop]| {
        let routers: f64 = processes.iter().filter_map(|p| cpu_seconds(p.0.id())).sum();
        (routers, broker_pid.and_then(cpu_seconds))
    };
    let mut cpu_start = (0.0, None);
    if !processes.is_empty() {
        let committed: i64 = inspect::committed_offsets(&kafka, &group, &intake)?
            .values()
            .sum();
        first = Some((Instant::now(), committed));
        cpu_start = cpu(&processes);
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    let pipeline_seconds;
    let mut counted;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let committed: i64 = inspect::committed_offsets(&kafka, &group, &intake)?
            .values()
            .sum();
        if first.is_none() && committed > 0 {
            first = Some((Instant::now(), committed));
        }
        if committed >= events as i64 {
            let (t0, c0) = first.unwrap_or((Instant::now(), 0));
            pipeline_seconds = t0.elapsed().as_secs_f64();
            counted = events as i64 - c0;
            break;
        }
        let exited = processes
            .iter_mut()
            .any(|p| matches!(p.0.try_wait(), Ok(Some(_))));
        if router.is_finished() || exited || Instant::now() > deadline {
            bail!("the router stopped or stalled at {committed} of {events}");
        }
    }
    shutdown.trigger();
    router.await.context("router task")??;
    if counted <= 0 {
        counted = events as i64;
    }

    let kcat_rate = events as f64 / kcat_seconds;
    let produce_rate = events as f64 / produce_seconds;
    let pipeline_rate = counted as f64 / pipeline_seconds.max(1e-9);
    println!(
        "\n{:<52} {:>12} {:>10} {:>9}",
        "measurement", "events/s", "seconds", "vs kcat"
    );
    println!(
        "{:<52} {:>12.0} {:>10.2} {:>9.2}",
        "kcat -P (librdkafka 2.0.2 CLI, baseline)", kcat_rate, kcat_seconds, 1.0
    );
    println!(
        "{:<52} {:>12.0} {:>10.2} {:>9.2}",
        "chorus EventProducer (idempotent, acks=all)",
        produce_rate,
        produce_seconds,
        produce_rate / kcat_rate
    );
    if !processes.is_empty() {
        let cpu_end = cpu(&processes);
        let window = pipeline_seconds.max(1e-9);
        let broker = match (cpu_start.1, cpu_end.1) {
            (Some(a), Some(b)) => format!("{:.2}", (b - a) / window),
            _ => "unknown (set CHORUS_BENCH_BROKER_PID)".to_string(),
        };
        println!(
            "cores busy in the timed window: routers {:.2}, broker {broker}",
            (cpu_end.0 - cpu_start.0) / window
        );
    }
    let router_label = match processes.len() {
        0 => "chorus router (read_committed -> txn produce + offsets)".to_string(),
        n => format!("chorus router, {n} processes (one group)"),
    };
    drop(processes);
    println!(
        "{:<52} {:>12.0} {:>10.2} {:>9.2}",
        router_label,
        pipeline_rate,
        pipeline_seconds,
        pipeline_rate / kcat_rate
    );
    println!(
        "router transactions: up to {batch_max} records or {} ms each",
        batch_linger.as_millis()
    );
    println!(
        "(kcat's time includes its process start; the router's excludes the group join and its first batch: {counted} of {events} events timed)"
    );

    if !keep_topics {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let _ = admin.delete_topics(&names, &options).await;
    }
    Ok(())
}

/// CPU seconds (user + system) a process has used, from /proc (Linux; USER_HZ is 100).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// Waits until `group` is stable with `members` members.
async fn wait_for_group(kafka: &KafkaArgs, group: &str, members: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let consumer: rdkafka::consumer::BaseConsumer =
        kafka.client_config("chorus-bench-groups").create()?;
    loop {
        let joined = {
            use rdkafka::consumer::Consumer;
            consumer
                .fetch_group_list(Some(group), Duration::from_secs(5))
                .ok()
                .and_then(|list| {
                    list.groups()
                        .iter()
                        .find(|g| g.name() == group && g.state() == "Stable")
                        .map(|g| g.members().len())
                })
                .unwrap_or(0)
        };
        if joined >= members {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{joined} of {members} routers joined {group} within 90 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// kcat's SASL settings, in a file of mode 600 (a password on its command line would show
/// in `ps`); removed when dropped.
struct KcatConfig(std::path::PathBuf);

impl KcatConfig {
    fn write(kafka: &KafkaArgs, run_id: &str) -> anyhow::Result<Option<Self>> {
        let (Some(user), Some(password)) = (&kafka.user, &kafka.password) else {
            return Ok(None);
        };
        use std::os::unix::fs::OpenOptionsExt;
        let path = std::env::temp_dir().join(format!("chorus-bench-{run_id}.kcat"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        writeln!(
            file,
            // PLAIN: Debian's kcat fails this broker's SCRAM exchange (docs/decisions.md).
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanisms=PLAIN\nsasl.username={user}\nsasl.password={}",
            password.expose()
        )?;
        Ok(Some(KcatConfig(path)))
    }
}

impl Drop for KcatConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
