//! The main job, top to bottom: start (or reuse) the local Kafka, create the topics, write
//! a generated workload of chat events with some malformed records to the intake topic and
//! run the transactional intake router over it (this file); then the live part, people
//! chatting with agents on a real model (`live.rs`); then the chain and the PoI epoch:
//! score, checkpoint, verify, claim (`poi.rs`). Prints a report of what happened.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use clap::Args;

use chorus_runtime::Shutdown;
use chorus_runtime::kafka::{
    KafkaArgs, PipelineConfig, Principal, apply_topics, inspect, load_topic_specs,
};
use chorus_schemas::{DeadLetter, Envelope, Topic};

use chorus_workload::{GenerateArgs, write_workload};

/// With `--json` the report goes to stderr and stdout carries only the JSON summary.
static JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn json_mode() -> bool {
    JSON.load(std::sync::atomic::Ordering::Relaxed)
}

/// A line of the report: stdout, or stderr under `--json`.
macro_rules! say {
    ($($arg:tt)*) => {
        if $crate::commands::demo::json_mode() {
            eprintln!($($arg)*);
        } else {
            println!($($arg)*);
        }
    };
}

mod live;
mod poi;

/// The machine-readable summary `--json` prints.
#[derive(Debug, Default, serde::Serialize)]
pub struct Summary {
    /// Events written to the intake topic and how the router sorted them.
    pub routing: Routing,
    /// People chatting with agents on the real model.
    pub live: live::LiveSummary,
    /// The PoI epoch: leaderboard, root, transactions, verification, claim.
    pub poi: poi::PoiSummary,
    pub seconds: f64,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Routing {
    pub events_written: u64,
    pub malformed_written: u64,
    pub router_seconds: f64,
    /// New events per topic, by event type.
    pub topics: BTreeMap<String, BTreeMap<String, u64>>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Events to generate.
    #[arg(long, default_value_t = 20_000)]
    events: u64,
    /// Group conversations in the workload.
    #[arg(long, default_value_t = 50)]
    conversations: u64,
    /// One malformed record every N events (0 = none).
    #[arg(long, default_value_t = 1_000)]
    malformed_every: u64,
    /// Human messages posted in the live part (each mentions one or both agents).
    #[arg(long, default_value_t = 3)]
    messages: u64,
    /// Pace of the human messages, per minute.
    #[arg(long, default_value_t = 12.0)]
    rate_per_minute: f64,
    /// Post messages for this many seconds at --rate-per-minute (overrides --messages).
    #[arg(long)]
    duration_secs: Option<u64>,
    /// max_tokens of agent replies (the local model runs on CPU: keep it small).
    #[arg(long, default_value_t = 16)]
    reply_tokens: u32,
    /// OpenAI-compatible endpoint of the model provider (started locally when it does
    /// not answer and is the default).
    #[arg(long, default_value = "http://127.0.0.1:8080/v1")]
    provider_endpoint: String,
    /// Do not start local services (Kafka, llama-server) when they do not answer.
    #[arg(long)]
    no_start: bool,
    /// Print a machine-readable summary (topics and counts, leaderboard, root, transaction
    /// hashes, the verification) as JSON on stdout; the report goes to stderr.
    #[arg(long)]
    json: bool,
}

fn kafka_answers(kafka: &KafkaArgs) -> bool {
    inspect::partitions(kafka, "__chorus_probe").is_ok()
}

/// How a person who ran the demo runs `chorus` on this run's topics, as printed under
/// "look further": the binary, the secrets directory (each subcommand then picks its own
/// principal) and the topic prefix.
fn chorus_command(kafka: &KafkaArgs) -> String {
    let secrets = kafka
        .secrets_dir
        .as_ref()
        .map(|d| format!(" --kafka-secrets-dir {}", d.display()))
        .unwrap_or_default();
    format!(
        "{}{secrets} --topic-prefix {}",
        crate::commands::this_binary(),
        kafka.topic_prefix
    )
}

/// The broker, as the admin principal: the configured one, else the local broker with
/// the users `infra/scripts/kafka-auth.sh` made (started when it does not answer).
async fn connect(given: &KafkaArgs, no_start: bool) -> anyhow::Result<KafkaArgs> {
    let mut base = given.clone();
    let configured =
        base.password.is_some() || base.password_file.is_some() || base.secrets_dir.is_some();
    if !configured {
        base.secrets_dir = crate::commands::chorus_home().map(|h| h.join("kafka-secrets"));
    }
    if let Ok(admin) = base.as_principal(Principal::Admin)
        && kafka_answers(&admin)
    {
        return Ok(admin);
    }
    if no_start {
        bail!(
            "no Kafka answers at {} (or it refused the admin's credentials); start it with infra/scripts/start.sh kafka",
            base.brokers
        );
    }
    let script = crate::commands::repo_path("infra/scripts/start.sh");
    say!(
        "-- no Kafka at {}; starting the local broker with {}",
        base.brokers,
        script.display()
    );
    let status = tokio::process::Command::new("bash")
        .arg(&script)
        .arg("kafka")
        .status()
        .await?;
    let admin = base
        .as_principal(Principal::Admin)
        .context("the local broker's admin credentials")?;
    if !status.success() || !kafka_answers(&admin) {
        bail!("could not start Kafka with {}", script.display());
    }
    Ok(admin)
}

pub async fn run(kafka: &KafkaArgs, args: DemoArgs) -> anyhow::Result<()> {
    JSON.store(args.json, std::sync::atomic::Ordering::Relaxed);
    let mut summary = Summary::default();
    let mut given = kafka.clone();
    if given.topic_prefix.is_empty() {
        given.topic_prefix = "demo.".to_owned();
    }
    let started = Instant::now();
    say!(
        "== Chorus demo (topic prefix {:?}, brokers {})",
        given.topic_prefix,
        given.brokers
    );
    let kafka = connect(&given, args.no_start).await?;
    if kafka.secrets_dir.is_some() {
        crate::commands::grant_local_acls(&kafka.brokers, &kafka.topic_prefix).await?;
    }

    let specs = load_topic_specs(&crate::commands::repo_path("infra/topics/topics.toml"))?;
    let applied = apply_topics(&kafka, &specs, chorus_runtime::kafka::Replication::SINGLE)
        .await
        .context("creating topics")?;
    say!(
        "-- {} topics ready ({} created now)",
        applied.len(),
        applied
            .iter()
            .filter(|t| t.change == chorus_runtime::kafka::TopicChange::Created)
            .count()
    );

    let watched = [
        Topic::ChatMessages,
        Topic::Feedback,
        Topic::Registry,
        Topic::DeadLetters,
    ];
    let mut starts = BTreeMap::new();
    for topic in watched {
        starts.insert(topic, inspect::end_offsets(&kafka, &kafka.topic(topic))?);
    }

    let generate = GenerateArgs {
        events: args.events,
        conversations: args.conversations,
        malformed_every: args.malformed_every,
        seed: 7,
    };
    let written = write_workload(
        &kafka.as_principal(Principal::Importer)?,
        &kafka.as_principal(Principal::Ingest)?,
        &generate,
    )
    .await?;
    say!(
        "-- wrote {} events + {} malformed records to {} in {:.2}s ({:.0} events/s, idempotent producer, acks=all)",
        written.valid,
        written.malformed,
        kafka.topic(Topic::Intake),
        written.seconds,
        (written.valid + written.malformed) as f64 / written.seconds.max(1e-9)
    );

    let group = format!("{}-demo", Principal::Router.id_prefix(&kafka.topic_prefix));
    let shutdown = Shutdown::new();
    let mut config = PipelineConfig::new(
        "router",
        &group,
        vec![kafka.topic(Topic::Intake), kafka.topic(Topic::ApiIntake)],
        "demo",
    );
    config.session_timeout = Duration::from_secs(6);
    let router = crate::commands::spawn_router(
        &kafka.as_principal(Principal::Router)?,
        config,
        shutdown.clone(),
    );
    let routing_started = Instant::now();
    let intake = kafka.topic(Topic::Intake);
    let api_intake = kafka.topic(Topic::ApiIntake);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let lag = inspect::group_lag(&kafka, &group, &intake)?
            + inspect::group_lag(&kafka, &group, &api_intake)?;
        if lag == 0 {
            break;
        }
        if router.is_finished() {
            bail!("the router stopped early");
        }
        if routing_started.elapsed() > Duration::from_secs(300) {
            bail!("the router did not catch up within 5 minutes (lag {lag})");
        }
    }
    let routing_seconds = routing_started.elapsed().as_secs_f64();
    summary.routing.events_written = written.valid;
    summary.routing.malformed_written = written.malformed;
    summary.routing.router_seconds = routing_seconds;
    shutdown.trigger();
    router.await.context("router task")??;
    say!(
        "-- intake router (Kafka transactions, read_committed) caught up in {routing_seconds:.2}s (including the consumer-group join)"
    );

    say!("\n{:<34} {:>10}", "topic / event type", "new events");
    let mut dead_letters = Vec::new();
    for topic in watched {
        let name = kafka.topic(topic);
        let records = inspect::read_committed(&kafka, &name, &starts[&topic])?;
        let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
        for record in &records {
            *by_type
                .entry(record.event_type.clone().unwrap_or_else(|| "?".into()))
                .or_default() += 1;
            if topic == Topic::DeadLetters
                && let Ok(dead) = Envelope::<DeadLetter>::from_json(&record.payload)
            {
                dead_letters.push(dead.data);
            }
        }
        say!("{name:<34} {:>10}", records.len());
        summary.routing.topics.insert(name.clone(), by_type.clone());
        for (event_type, count) in by_type {
            say!("  {event_type:<32} {count:>10}");
        }
    }
    if let Some(example) = dead_letters.first() {
        let original = base64::engine::general_purpose::STANDARD
            .decode(&example.payload_base64)
            .unwrap_or_default();
        say!(
            "\nexample dead letter: {}/{}@{}: {}\n  original bytes: {}",
            example.source_topic,
            example.source_partition,
            example.source_offset,
            example.reason,
            String::from_utf8_lossy(&original)
        );
    }
    // The live part and the PoI epoch get topics of their own per run, so a second
    // run needs no cleanup and its epoch holds exactly its own events.
    let run_started = chrono::Utc::now();
    let run_name = format!("run-{}", run_started.format("%Y%m%d-%H%M%S"));
    let mut live = kafka.clone();
    live.topic_prefix = format!("{}{run_name}.", kafka.topic_prefix);
    if live.secrets_dir.is_some() {
        crate::commands::grant_local_acls(&live.brokers, &live.topic_prefix).await?;
    }
    let run_dir = std::env::current_dir()?
        .join("target/chorus/demo")
        .join(&run_name);
    std::fs::create_dir_all(&run_dir)?;
    let messages = args
        .duration_secs
        .map(|secs| ((secs as f64 * args.rate_per_minute / 60.0).round() as u64).max(1))
        .unwrap_or(args.messages);
    let workload = live::LiveWorkload {
        messages,
        rate_per_minute: args.rate_per_minute,
        reply_tokens: args.reply_tokens,
    };
    let people = live::run(
        &live,
        &args.provider_endpoint,
        &workload,
        args.no_start,
        &mut summary.live,
    )
    .await?;
    poi::run(
        &live,
        &run_dir,
        run_started.timestamp_millis() - 1_000,
        &people,
        args.no_start,
        &mut summary.poi,
    )
    .await?;
    say!(
        "  {chorus} sql --refresh \"SELECT * FROM provider_stats\"   # every event of this run in SQL (as the read-only principal)\n\
         \ndone in {:.1}s",
        started.elapsed().as_secs_f64(),
        chorus = chorus_command(&live),
    );
    if args.json {
        summary.seconds = started.elapsed().as_secs_f64();
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(())
}
