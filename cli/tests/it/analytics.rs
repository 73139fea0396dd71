//! Analytics against the real ClickHouse (Debian 18.16) and Kafka: migrations, the
//! sink under SIGKILLs and a ClickHouse restart, dead letters, and the example queries
//! of docs/analytics.md giving the same answers in ClickHouse and in `chorus sql`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use chorus_analytics::clickhouse::{execute, query_rows, query_u64};
use chorus_analytics::migrate::{Outcome, migrate};
use chorus_integration_tests::clickhouse::{
    PrivateClickHouse, expected_counts, final_counts, raw_rows, shared_clickhouse, spawn_sink,
};
use chorus_integration_tests::poi::{produce_events, synthetic_events};
use chorus_integration_tests::*;
use chorus_runtime::kafka::{EventProducer, await_delivery};
use chorus_schemas::*;
use chorus_scoring::synthetic::Workload;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_and_the_analyst_can_read_but_not_write() {
    let ch = shared_clickhouse("migrate");
    let first = migrate(&ch, None).await.unwrap();
    assert_eq!(first[0].2, Outcome::Applied);
    assert_eq!(first[1].2, Outcome::Applied);
    let second = migrate(&ch, None).await.unwrap();
    assert_eq!(second[0].2, Outcome::AlreadyApplied);
    assert_eq!(second[1].2, Outcome::AlreadyApplied);
    let client = ch.client().unwrap();
    let version = query_rows(&client, "SELECT version()").await.unwrap();
    if version[0][0].starts_with("18.") {
        // No SQL access control there: the analyst comes from users.xml.
        assert!(matches!(second[2].2, Outcome::Skipped { needs: (20, 5) }));
    }
    let db = &ch.clickhouse_database;
    let objects = query_u64(
        &client,
        &format!("SELECT count() FROM system.tables WHERE database = '{db}'"),
    )
    .await
    .unwrap();
    // 16 event tables, 5 views, the migration log.
    assert_eq!(objects, 16 + 5 + 1);
    for view in [
        "epoch_contributions",
        "agent_leaderboard",
        "provider_stats",
        "user_activity",
        "checkpoint_history",
    ] {
        query_rows(&client, &format!("SELECT * FROM {view} LIMIT 1"))
            .await
            .unwrap_or_else(|e| panic!("view {view}: {e}"));
    }

    // The analyst reads the views and cannot write or change anything.
    let analyst = client.clone().with_user("analyst").with_password("analyst");
    query_rows(
        &analyst,
        &format!("SELECT count() FROM {db}.agent_leaderboard"),
    )
    .await
    .unwrap();
    for statement in [
        format!("INSERT INTO {db}.feedback (id) VALUES ('x')"),
        format!("DROP TABLE {db}.feedback"),
        format!("CREATE TABLE {db}.evil (x UInt8) ENGINE = Memory"),
    ] {
        let error = execute(&analyst, &statement).await.unwrap_err().to_string();
        assert!(
            error.contains("readonly") || error.contains("Cannot execute"),
            "{statement}: {error}"
        );
    }

    execute(&ch.server_client().unwrap(), &format!("DROP DATABASE {db}"))
        .await
        .unwrap();

    // A migration whose text changed after it was applied is refused.
    let changed = shared_clickhouse("migrate_changed");
    let server = changed.server_client().unwrap();
    let db = &changed.clickhouse_database;
    execute(&server, &format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let client = changed.client().unwrap();
    execute(&client, "CREATE TABLE schema_migrations (version UInt32, name String, checksum String, applied_at DateTime DEFAULT now()) ENGINE = MergeTree() ORDER BY version").await.unwrap();
    execute(&client, "INSERT INTO schema_migrations (version, name, checksum) VALUES (1, 'event_tables', 'an older text')").await.unwrap();
    let error = migrate(&changed, None).await.unwrap_err().to_string();
    assert!(
        error.contains("migration 1 was changed after it was applied"),
        "{error}"
    );
    execute(&server, &format!("DROP DATABASE {db}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_events_count_once_through_sink_kills_and_a_clickhouse_restart() {
    let total: u64 = std::env::var("CHORUS_SINK_TEST_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let kafka = test_kafka("sinkkill");
    create_topics(&kafka).await.unwrap();
    let mut server = PrivateClickHouse::start("sinkkill").unwrap();
    let ch = server.args("chorus");
    migrate(&ch, None).await.unwrap();
    let client = ch.client().unwrap();

    // The synthetic PoI workload: every kind of event, 2% produced twice.
    let events = synthetic_events(Workload {
        events: total,
        users: 5_000,
        agent_developers: 200,
        providers: 40,
        seed: 11,
    });
    let expected = expected_counts(&events);
    let distinct: u64 = expected.values().sum();
    let started = Instant::now();
    produce_events(&kafka, &events).await.unwrap();
    println!(
        "produced {} records ({distinct} distinct events) in {:.1}s",
        events.len(),
        started.elapsed().as_secs_f64()
    );
    drop(events);

    let started = Instant::now();
    let batch = ["--batch-rows", "10000"];
    let mut sink = spawn_sink(&kafka, &ch, "sink-0", &batch);
    let mut logs = vec![format!("{}sink-0", kafka.topic_prefix)];
    let mut kills = 0;
    let mut restarted_clickhouse = false;
    let mut after_restart = 0;
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let loaded = raw_rows(&client, "chorus").await;
        // First the ClickHouse outage, early, so that most of the load is still to come.
        if !restarted_clickhouse && loaded >= distinct / 10 {
            server.stop().unwrap();
            println!(
                "stopped ClickHouse at {loaded} rows ({:.1}s)",
                started.elapsed().as_secs_f64()
            );
            // Down for at least 5 s and until the sink has met the outage (on a busy
            // machine it may be decoding a batch for all of the first 5 s).
            tokio::time::sleep(Duration::from_secs(5)).await;
            let first_log = repo_root().join(format!("target/test-logs/{}.log", logs[0]));
            wait_for_log(
                &first_log,
                "consumption paused, retrying",
                Duration::from_secs(120),
            )
            .unwrap();
            server.start_again().unwrap();
            restarted_clickhouse = true;
            after_restart = raw_rows(&client, "chorus").await;
            println!(
                "started ClickHouse again at {after_restart} rows ({:.1}s)",
                started.elapsed().as_secs_f64()
            );
            continue;
        }
        // Then two SIGKILLs, spread over what is left to load.
        let remaining = distinct.saturating_sub(after_restart);
        if restarted_clickhouse
            && kills < 2
            && loaded >= after_restart + remaining * (kills + 1) / 3
        {
            sink.kill().unwrap();
            sink.wait().unwrap();
            kills += 1;
            println!(
                "SIGKILLed the sink at {loaded} rows ({:.1}s)",
                started.elapsed().as_secs_f64()
            );
            let name = format!("sink-{kills}");
            logs.push(format!("{}{name}", kafka.topic_prefix));
            sink = spawn_sink(&kafka, &ch, &name, &batch);
        }
        if kills == 2 && loaded >= distinct {
            let counts = final_counts(&client).await;
            if counts == expected {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "not loaded in time: {:?} of {expected:?}",
            final_counts(&client).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The outage was seen: the sink paused and retried instead of failing or dropping.
    let log =
        std::fs::read_to_string(repo_root().join(format!("target/test-logs/{}.log", logs[0])))
            .unwrap();
    assert!(
        log.contains("consumption paused, retrying"),
        "the first sink never saw ClickHouse down"
    );
    let raw = raw_rows(&client, "chorus").await;
    println!(
        "loaded {distinct} distinct events in {:.1}s through a ClickHouse restart and 2 SIGKILLs; {raw} rows in active parts before the final merge",
        started.elapsed().as_secs_f64(),
    );
    // Each event exactly once, through the views' FINAL and by distinct id.
    assert_eq!(final_counts(&client).await, expected);
    let unique = query_u64(&client, "SELECT uniqExact(id) FROM inference_results")
        .await
        .unwrap();
    assert_eq!(unique, expected["inference_results"]);
    let jobs: u64 = query_u64(&client, "SELECT sum(jobs) FROM provider_stats")
        .await
        .unwrap();
    assert_eq!(jobs, expected["inference_results"]);
    // Nothing was dead-lettered: every event fit its table.
    assert_eq!(expected["dead_letters"], 0);
    assert_eq!(
        query_u64(&client, "SELECT count() FROM dead_letters FINAL")
            .await
            .unwrap(),
        0
    );
    terminate(&mut sink, Duration::from_secs(30)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_that_do_not_fit_are_dead_lettered_and_the_sink_keeps_going() {
    let kafka = test_kafka("sinkbad");
    create_topics(&kafka).await.unwrap();
    let ch = shared_clickhouse("sinkbad");
    migrate(&ch, None).await.unwrap();
    let client = ch.client().unwrap();

    let message = |text: &str| {
        Envelope::new(
            "test",
            ChatMessage {
                conversation_id: "c1".into(),
                author_kind: AuthorKind::Human,
                author_id: "0xabc".into(),
                content: text.into(),
                mentions: vec![],
                reply_to: None,
                hop: 0,
                job_id: None,
            },
        )
    };
    let before = message("before");
    // Decodes as an event, but its time does not fit ClickHouse's DateTime.
    let far_future = Envelope::with_time(
        "test",
        "2200-01-01T00:00:00Z".parse().unwrap(),
        ChatMessage {
            content: "from the future".into(),
            ..message("").data
        },
    );
    let after = message("after");
    let producer = EventProducer::new(&kafka, "test", 1000).unwrap();
    let topic = kafka.topic(Topic::ChatMessages);
    await_delivery(producer.enqueue(&before).await.unwrap())
        .await
        .unwrap();
    await_delivery(producer.enqueue(&far_future).await.unwrap())
        .await
        .unwrap();
    await_delivery(
        producer
            .enqueue_raw(&topic, Some(b"c1"), b"{not json", None)
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    await_delivery(producer.enqueue(&after).await.unwrap())
        .await
        .unwrap();

    let mut sink = spawn_sink(&kafka, &ch, "sink", &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let messages = query_u64(&client, "SELECT count() FROM chat_messages FINAL").await;
        let letters = query_u64(&client, "SELECT count() FROM dead_letters FINAL").await;
        if matches!((&messages, &letters), (Ok(2), Ok(2))) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "want 2 messages and 2 dead letters, have {messages:?} and {letters:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let contents = query_rows(
        &client,
        "SELECT content FROM chat_messages ORDER BY time_ms",
    )
    .await
    .unwrap();
    assert_eq!(
        contents,
        vec![vec!["before".to_owned()], vec!["after".to_owned()]]
    );
    let reasons = query_rows(
        &client,
        "SELECT source_offset, reason, stage FROM dead_letters FINAL ORDER BY source_offset",
    )
    .await
    .unwrap();
    assert_eq!(reasons[0][0], "1");
    assert!(
        reasons[0][1].contains("does not fit DateTime"),
        "{reasons:?}"
    );
    assert_eq!(reasons[1][0], "2");
    assert!(reasons[1][1].contains("undecodable"), "{reasons:?}");
    assert_eq!(reasons[0][2], "sink-clickhouse");
    // The dead letters are in Kafka too, with the original bytes.
    let letters = read_all(&kafka, &kafka.topic(Topic::DeadLetters)).unwrap();
    assert_eq!(letters.len(), 2);
    terminate(&mut sink, Duration::from_secs(30)).unwrap();
    execute(
        &ch.server_client().unwrap(),
        &format!("DROP DATABASE {}", ch.clickhouse_database),
    )
    .await
    .unwrap();
}

/// The fenced `sql` blocks under "## Example queries" in docs/analytics.md.
fn example_queries() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("docs/analytics.md")).unwrap();
    let section = text
        .split("## Example queries")
        .nth(1)
        .expect("docs/analytics.md has an Example queries section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .split("```sql")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().trim().to_owned())
        .collect()
}

fn same_cell(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

/// Parses `chorus sql --format csv` output (the header row dropped).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for line in text.lines().skip(1).filter(|l| !l.is_empty()) {
        let mut row = Vec::new();
        let mut cell = String::new();
        let mut quoted = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    cell.push('"');
                    chars.next();
                }
                ('"', _) => quoted = !quoted,
                (',', false) => row.push(std::mem::take(&mut cell)),
                _ => cell.push(c),
            }
        }
        row.push(cell);
        rows.push(row);
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_queries_agree_between_clickhouse_and_chorus_sql() {
    let kafka = test_kafka("sqlsame");
    create_topics(&kafka).await.unwrap();
    let ch = shared_clickhouse("sqlsame");
    migrate(&ch, None).await.unwrap();
    let client = ch.client().unwrap();

    let mut events = synthetic_events(Workload {
        events: 20_000,
        users: 50,
        agent_developers: 8,
        providers: 4,
        seed: 5,
    });
    for epoch in 1..=2u64 {
        for (i, role) in [ContributorRole::Provider, ContributorRole::User]
            .into_iter()
            .enumerate()
        {
            events.push(AnyEvent::PoiScore(Envelope::new(
                "test",
                PoiScore {
                    epoch,
                    account: format!("0x{:040x}", i + 1),
                    role,
                    points: 1000 * epoch + i as u64,
                    items: 10 + i as u64,
                    amount_wei: format!("{}000000000000000000", 3 * epoch + i as u64),
                },
            )));
        }
        events.push(AnyEvent::PoiCheckpoint(Envelope::new(
            "test",
            PoiCheckpoint {
                epoch,
                merkle_root: format!("0x{:064x}", epoch),
                manifest_hash: format!("0x{:064x}", 100 + epoch),
                config_hash: format!("0x{:064x}", 200),
                total_amount_wei: "7000000000000000000".into(),
                accounts: 2,
                chain_id: 56,
                distributor: "0x00000000000000000000000000000000000000d1".into(),
                tx_hash: if epoch == 1 {
                    Some(format!("0x{:064x}", 999))
                } else {
                    None
                },
                manifest_json: None,
            },
        )));
    }
    let expected = expected_counts(&events);
    produce_events(&kafka, &events).await.unwrap();
    let mut sink = spawn_sink(&kafka, &ch, "sink", &[]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while final_counts(&client).await != expected {
        assert!(Instant::now() < deadline, "sink did not load the workload");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    terminate(&mut sink, Duration::from_secs(30)).unwrap();

    let archive = repo_root().join(format!("target/test-logs/{}archive", kafka.topic_prefix));
    let queries = example_queries();
    assert!(queries.len() >= 6, "{queries:?}");
    for (i, query) in queries.iter().enumerate() {
        let mut args = vec!["sql", "--format", "csv", "--archive"];
        let archive_arg = archive.display().to_string();
        args.push(&archive_arg);
        if i == 0 {
            args.push("--refresh");
        }
        args.push(query);
        let mut command = std::process::Command::new(chorus_bin());
        // `chorus sql --refresh` reads as the read-only principal.
        chorus_integration_tests::with_role_credentials(&mut command, &kafka);
        let output = command
            .args([
                "--brokers",
                &kafka.brokers,
                "--topic-prefix",
                &kafka.topic_prefix,
            ])
            .args(&args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "chorus sql failed on\n{query}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut embedded = parse_csv(&String::from_utf8_lossy(&output.stdout));
        let mut clickhouse = query_rows(&client, query).await.unwrap();
        assert!(!clickhouse.is_empty(), "no rows from\n{query}");
        embedded.sort();
        clickhouse.sort();
        let same = embedded.len() == clickhouse.len()
            && embedded
                .iter()
                .zip(&clickhouse)
                .all(|(a, b)| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_cell(x, y)));
        assert!(
            same,
            "results differ for\n{query}\nchorus sql: {embedded:?}\nclickhouse: {clickhouse:?}"
        );
        println!("example {}: {} rows agree", i + 1, clickhouse.len());
    }
    execute(
        &ch.server_client().unwrap(),
        &format!("DROP DATABASE {}", ch.clickhouse_database),
    )
    .await
    .unwrap();
}
