//! `chorus-bench clickhouse`: rows/s into ClickHouse through the sink (Kafka, decode,
//! checks, RowBinary, insert, offset commit) beside the same rows inserted by the
//! `clickhouse` crate's plain typed inserter (the ceiling), in the same run, into two
//! fresh databases of the same server. Prints both and the ratio; asserts nothing.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use chorus_analytics::ClickHouseArgs;
use chorus_analytics::clickhouse::{execute, query_u64};
use chorus_analytics::migrate::migrate;
use chorus_analytics::sink::{SINK_ROWS, SinkConfig, run_sink};
use chorus_runtime::Shutdown;
use chorus_runtime::kafka::{EventProducer, KafkaArgs, apply_topics, await_all, load_topic_specs};
use chorus_runtime::metrics::Readiness;
use chorus_schemas::{AuthorKind, ChatMessage, Envelope};

#[derive(Debug, Args)]
pub struct ClickHouseBenchArgs {
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
    /// Rows (chat messages) per path.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Rows per INSERT, for both paths.
    #[arg(long, default_value_t = 50_000)]
    batch_rows: usize,
    /// Partitions of the benchmark's chat topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Keep the benchmark databases afterwards.
    #[arg(long)]
    keep: bool,
}

/// A chat message row as the plain inserter writes it (the sink derives the same
/// columns from the event schema).
#[derive(Debug, Serialize, clickhouse::Row)]
struct ChatMessageRow {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    version: u16,
    source: String,
    time: u32,
    time_ms: i64,
    key: String,
    author_id: String,
    author_kind: String,
    content: String,
    conversation_id: String,
    hop: Option<u32>,
    job_id: Option<String>,
    mentions: Vec<String>,
    reply_to: Option<String>,
}

fn message(i: u64) -> Envelope<ChatMessage> {
    Envelope::new(
        "bench",
        ChatMessage {
            conversation_id: format!("group-{}", i % 997),
            author_kind: AuthorKind::Human,
            author_id: format!("0x{:040x}", i % 5_003),
            content: format!("message {i}: which GPU provider is cheapest today?"),
            mentions: vec!["helper".into()],
            reply_to: None,
            hop: 0,
            job_id: None,
        },
    )
}

fn row(event: &Envelope<ChatMessage>) -> ChatMessageRow {
    ChatMessageRow {
        id: event.id.to_string(),
        // The table's `type` column holds Chorus's name of the type, as the sink writes it.
        event_type: <ChatMessage as chorus_schemas::EventData>::TYPE.to_owned(),
        version: event.version(),
        source: event.source.clone(),
        time: event.time.timestamp() as u32,
        time_ms: event.time.timestamp_millis(),
        key: event.key.clone(),
        author_id: event.data.author_id.clone(),
        author_kind: "human".into(),
        content: event.data.content.clone(),
        conversation_id: event.data.conversation_id.clone(),
        hop: Some(event.data.hop),
        job_id: event.data.job_id.map(|j| j.to_string()),
        mentions: event.data.mentions.clone(),
        reply_to: event.data.reply_to.map(|r| r.to_string()),
    }
}

pub async fn run(base: &KafkaArgs, args: ClickHouseBenchArgs) -> anyhow::Result<()> {
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    let suffix = &suffix[suffix.len() - 8..];
    let kafka = KafkaArgs {
        topic_prefix: format!("{}bench-ch-{suffix}.", base.topic_prefix),
        ..base.clone()
    };
    let mut specs = load_topic_specs(&chorus_cli::commands::repo_path("infra/topics/topics.toml"))?;
    for spec in &mut specs {
        if spec.name == chorus_schemas::Topic::ChatMessages.base_name() {
            spec.partitions = args.partitions;
        }
    }
    apply_topics(&kafka, &specs, chorus_runtime::kafka::Replication::SINGLE).await?;
    crate::grant_acls(&kafka).await?;
    let plain = ClickHouseArgs {
        clickhouse_database: format!("bench_{suffix}_plain"),
        ..args.clickhouse.clone()
    };
    let sink = ClickHouseArgs {
        clickhouse_database: format!("bench_{suffix}_sink"),
        ..args.clickhouse.clone()
    };
    migrate(&plain, None).await?;
    migrate(&sink, None).await?;

    println!(
        "generating {} chat messages and producing them to Kafka",
        args.rows
    );
    let events: Vec<Envelope<ChatMessage>> = (0..args.rows).map(message).collect();
    let producer = EventProducer::new(&kafka, "bench-clickhouse", 200_000)?;
    let mut pending = Vec::with_capacity(10_000);
    for event in &events {
        pending.push(producer.enqueue(event).await?);
        if pending.len() >= 10_000 {
            await_all(pending.drain(..)).await?;
        }
    }
    await_all(pending.drain(..)).await?;

    // The ceiling: prebuilt typed rows, the crate's inserter, the same batch size.
    let rows: Vec<ChatMessageRow> = events.iter().map(row).collect();
    drop(events);
    let client = plain.client()?;
    let started = Instant::now();
    for chunk in rows.chunks(args.batch_rows.max(1)) {
        let mut insert = client.insert::<ChatMessageRow>("chat_messages").await?;
        for row in chunk {
            insert.write(row).await?;
        }
        insert.end().await?;
    }
    let plain_seconds = started.elapsed().as_secs_f64();
    drop(rows);
    let plain_count = query_u64(&client, "SELECT count() FROM chat_messages").await?;

    // The sink: from Kafka to ClickHouse, until every row is acknowledged.
    let mut config = SinkConfig::new(&kafka, &format!("bench-ch-{suffix}"));
    config.batch_rows = args.batch_rows.max(1);
    config.batch_interval = Duration::from_secs(1);
    let before = SINK_ROWS.with_label_values(&["chat_messages"]).get();
    let shutdown = Shutdown::new();
    let task = {
        let (kafka, sink, config, shutdown) =
            (kafka.clone(), sink.clone(), config, shutdown.clone());
        tokio::spawn(
            async move { run_sink(&kafka, &sink, &config, shutdown, Readiness::new()).await },
        )
    };
    let started = Instant::now();
    while SINK_ROWS.with_label_values(&["chat_messages"]).get() - before < args.rows {
        anyhow::ensure!(!task.is_finished(), "the sink stopped early");
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "the sink did not finish within 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sink_seconds = started.elapsed().as_secs_f64();
    shutdown.trigger();
    task.await.context("sink task")??;
    let sink_client = sink.client()?;
    let sink_count = query_u64(&sink_client, "SELECT count() FROM chat_messages FINAL").await?;

    let plain_rate = args.rows as f64 / plain_seconds;
    let sink_rate = args.rows as f64 / sink_seconds;
    println!();
    println!("| path | rows | seconds | rows/s | ratio |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| clickhouse crate, plain typed inserter (ceiling) | {plain_count} | {plain_seconds:.2} | {plain_rate:.0} | 1.00 |"
    );
    println!(
        "| chorus sink (Kafka -> checks -> RowBinary -> insert -> commit) | {sink_count} | {sink_seconds:.2} | {sink_rate:.0} | {:.2} |",
        sink_rate / plain_rate
    );
    if !args.keep {
        let server = args.clickhouse.server_client()?;
        for db in [&plain.clickhouse_database, &sink.clickhouse_database] {
            execute(&server, &format!("DROP DATABASE IF EXISTS {db}")).await?;
        }
    }
    Ok(())
}
