#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The indexer against a real anvil (chain id 56) and the real Kafka broker: exactly
//! once across a kill, reorg retraction in both modes, dead letters, RPC failover.

use std::collections::BTreeSet;
use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::sol_types::SolCall;

use chorus_chain::contracts::LogFixture;
use chorus_chain::{ChainClient, Deployment};
use chorus_integration_tests::chain::{Anvil, Relay, deploy};
use chorus_integration_tests::*;
use chorus_runtime::kafka::KafkaArgs;
use chorus_schemas::{AnyEvent, ChainLog, Topic};

/// (tx hash, log index) of every log the contracts hold on the canonical chain now.
async fn canonical_logs(client: &ChainClient, deployment: &Deployment) -> BTreeSet<(String, u64)> {
    let addresses: Vec<Address> = deployment.contracts().iter().map(|(_, a)| *a).collect();
    let head = client.provider().get_block_number().await.unwrap();
    let logs = client
        .provider()
        .get_logs(
            &Filter::new()
                .address(addresses)
                .from_block(0)
                .to_block(head),
        )
        .await
        .unwrap();
    logs.iter()
        .map(|l| {
            (
                format!("{:#x}", l.transaction_hash.unwrap()),
                l.log_index.unwrap(),
            )
        })
        .collect()
}

async fn emit_transfers(client: &ChainClient, fixture: Address, n: u64) {
    client
        .transact(
            "emitTransfers",
            fixture,
            &LogFixture::emitTransfersCall { n: U256::from(n) },
        )
        .await
        .unwrap();
}

/// Chain events as stored: logs and retractions.
struct Stored {
    logs: Vec<ChainLog>,
    log_ids: Vec<uuid::Uuid>,
    retracted_ids: Vec<uuid::Uuid>,
}

fn stored(kafka: &KafkaArgs) -> Stored {
    let records = read_all(kafka, &kafka.topic(Topic::ChainEvents)).unwrap();
    let mut out = Stored {
        logs: vec![],
        log_ids: vec![],
        retracted_ids: vec![],
    };
    for record in records {
        match AnyEvent::decode(None, &record.payload).unwrap() {
            AnyEvent::ChainLog(e) => {
                out.log_ids.push(e.id);
                out.logs.push(e.data);
            }
            AnyEvent::ChainLogRetracted(e) => out.retracted_ids.push(e.data.retracted_event_id),
            other => panic!("unexpected event {}", other.type_name()),
        }
    }
    out
}

fn log_count(kafka: &KafkaArgs) -> i64 {
    chorus_runtime::kafka::inspect::end_offsets(kafka, &kafka.topic(Topic::ChainEvents))
        .map(|ends| ends.values().sum())
        .unwrap_or(0)
}

fn indexer_args(url: &str, deployment: &str, name: &str, extra: &[&str]) -> RoleCommand {
    RoleCommand::new(&["indexer"])
        .metrics_addr("127.0.0.1:0")
        .args([
            "--rpc-url",
            url,
            "--deployment",
            deployment,
            "--name",
            name,
            "--no-progress",
            "--poll-ms",
            "100",
        ])
        .args(extra)
}

/// A private anvil with the contracts and `txs` transactions of `per_tx` logs each, and
/// fresh Kafka topics.
struct LogChain {
    anvil: Anvil,
    kafka: KafkaArgs,
    deployment_file: String,
    head: String,
    expected: BTreeSet<(String, u64)>,
}

async fn log_chain(name: &str, txs: usize, per_tx: u64) -> LogChain {
    let anvil = Anvil::start().unwrap();
    let client = anvil.client();
    let kafka = test_kafka(name);
    create_topics(&kafka).await.unwrap();
    let (deployment, path) = deploy(&client, &kafka.topic_prefix).await.unwrap();
    let fixture = deployment.log_fixture.unwrap();
    for _ in 0..txs {
        emit_transfers(&client, fixture, per_tx).await;
    }
    let head = client
        .provider()
        .get_block_number()
        .await
        .unwrap()
        .to_string();
    let expected = canonical_logs(&client, &deployment).await;
    LogChain {
        anvil,
        kafka,
        deployment_file: path.to_string_lossy().to_string(),
        head,
        expected,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_logs_are_indexed_exactly_once_across_a_kill() {
    let LogChain {
        anvil,
        kafka,
        head,
        expected,
        deployment_file: path,
        ..
    } = log_chain("idx-kill", 200, 50).await;
    assert!(expected.len() >= 10_000, "{} logs on chain", expected.len());

    let url = anvil.url();
    let name = format!("{}kill", kafka.topic_prefix);
    // Small ranges and a request-rate limit stretch the backfill so the kill lands mid-way.
    let role = indexer_args(
        &url,
        &path,
        &name,
        &[
            "--confirmations",
            "0",
            "--initial-range",
            "2",
            "--max-range",
            "4",
            "--max-requests-per-second",
            "40",
            "--stop-at-block",
            &head,
        ],
    );
    let mut first = spawn_role(&kafka, "indexer-1", &role).unwrap();
    wait_for("some logs indexed", Duration::from_secs(60), || {
        log_count(&kafka) > 2_000
    })
    .unwrap();
    first.kill().unwrap();
    first.wait().unwrap();
    let at_kill = log_count(&kafka);
    assert!(
        at_kill < 10_000,
        "the kill must land mid-backfill (at {at_kill})"
    );

    let mut second = spawn_role(&kafka, "indexer-2", &role).unwrap();
    let status = wait_exit(&mut second, Duration::from_secs(180));
    assert!(status.success(), "restarted indexer failed: {status:?}");

    let stored = stored(&kafka);
    let unique: BTreeSet<_> = stored.log_ids.iter().collect();
    assert_eq!(unique.len(), stored.log_ids.len(), "duplicated events");
    let got: BTreeSet<(String, u64)> = stored
        .logs
        .iter()
        .map(|l| (l.tx_hash.clone(), l.log_index))
        .collect();
    assert_eq!(got.len(), stored.logs.len(), "duplicated logs");
    assert_eq!(got, expected, "indexed logs differ from the chain");
    assert!(stored.retracted_ids.is_empty());
    let transfer = stored
        .logs
        .iter()
        .find(|l| l.contract == "log_fixture")
        .unwrap();
    assert_eq!(transfer.event_name.as_deref(), Some("Transfer"));
    let decoded: serde_json::Value =
        serde_json::from_str(transfer.decoded.as_ref().unwrap()).unwrap();
    assert!(
        decoded["value"].is_string() && decoded["to"].is_string(),
        "{decoded}"
    );
    println!(
        "indexed {} logs exactly once; killed at {at_kill} records",
        got.len()
    );
}

fn wait_exit(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorg_of_depth_three_is_retracted_in_eager_mode_and_never_seen_in_confirmed_mode() {
    let anvil = Anvil::start().unwrap();
    let client = anvil.client();
    let eager = test_kafka("idx-eager");
    let confirmed = test_kafka("idx-conf");
    create_topics(&eager).await.unwrap();
    create_topics(&confirmed).await.unwrap();
    let (deployment, path) = deploy(&client, &eager.topic_prefix).await.unwrap();
    let fixture = deployment.log_fixture.unwrap();
    let url = anvil.url();
    let path = path.to_string_lossy().to_string();
    let eager_name = format!("{}eager", eager.topic_prefix);
    let confirmed_name = format!("{}conf", confirmed.topic_prefix);
    let mut eager_indexer = spawn_role(
        &eager,
        "indexer",
        &indexer_args(
            &url,
            &path,
            &eager_name,
            &["--mode", "eager", "--confirmations", "0"],
        ),
    )
    .unwrap();
    let mut confirmed_indexer = spawn_role(
        &confirmed,
        "indexer",
        &indexer_args(
            &url,
            &path,
            &confirmed_name,
            &["--mode", "confirmed", "--confirmations", "5"],
        ),
    )
    .unwrap();

    for _ in 0..6 {
        emit_transfers(&client, fixture, 3).await;
    }
    let before = canonical_logs(&client, &deployment).await;
    wait_for("eager indexer to catch up", Duration::from_secs(60), || {
        stored(&eager).logs.len() == before.len()
    })
    .unwrap();
    let head = client.provider().get_block_number().await.unwrap();
    // The logs of the last three blocks are about to be dropped.
    let doomed: BTreeSet<(String, u64)> = stored(&eager)
        .logs
        .iter()
        .filter(|l| l.block_number + 3 > head)
        .map(|l| (l.tx_hash.clone(), l.log_index))
        .collect();
    assert_eq!(doomed.len(), 9);

    // Replace the last 3 blocks; the new ones carry different transactions.
    let replacement = |n: u64| {
        serde_json::json!({
            "from": format!("{:#x}", client.address()),
            "to": format!("{fixture:#x}"),
            "data": Bytes::from(LogFixture::emitTransfersCall { n: U256::from(n) }.abi_encode()),
            "gas": "0x200000",
        })
    };
    anvil
        .rpc(
            "anvil_reorg",
            serde_json::json!([3, [[replacement(2), 0], [replacement(4), 2]]]),
        )
        .await
        .unwrap();
    assert_eq!(client.provider().get_block_number().await.unwrap(), head);
    // Bury the reorg under enough blocks for the confirmed indexer to pass it.
    anvil
        .rpc("anvil_mine", serde_json::json!(["0x8"]))
        .await
        .unwrap();
    let after = canonical_logs(&client, &deployment).await;
    assert_eq!(after.len(), before.len() - 9 + 6);

    let live = |stored: &Stored| -> BTreeSet<(String, u64)> {
        let retracted: BTreeSet<_> = stored.retracted_ids.iter().collect();
        stored
            .logs
            .iter()
            .zip(&stored.log_ids)
            .filter(|(_, id)| !retracted.contains(id))
            .map(|(l, _)| (l.tx_hash.clone(), l.log_index))
            .collect()
    };
    wait_for(
        "eager indexer to retract and re-index",
        Duration::from_secs(60),
        || live(&stored(&eager)) == after,
    )
    .unwrap();
    wait_for(
        "confirmed indexer to index the final chain",
        Duration::from_secs(60),
        || stored(&confirmed).logs.len() == after.len(),
    )
    .unwrap();
    let eager_stored = stored(&eager);
    assert_eq!(
        eager_stored.retracted_ids.len(),
        9,
        "one retraction per dropped log"
    );
    let retracted_logs: BTreeSet<(String, u64)> = eager_stored
        .logs
        .iter()
        .zip(&eager_stored.log_ids)
        .filter(|(_, id)| eager_stored.retracted_ids.contains(id))
        .map(|(l, _)| (l.tx_hash.clone(), l.log_index))
        .collect();
    assert_eq!(retracted_logs, doomed);
    let confirmed_stored = stored(&confirmed);
    assert!(confirmed_stored.retracted_ids.is_empty());
    assert_eq!(live(&confirmed_stored), after);

    terminate(&mut eager_indexer, Duration::from_secs(10)).unwrap();
    terminate(&mut confirmed_indexer, Duration::from_secs(10)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_logs_are_dead_lettered_and_indexing_goes_on() {
    let anvil = Anvil::start().unwrap();
    let client = anvil.client();
    let kafka = test_kafka("idx-dlq");
    create_topics(&kafka).await.unwrap();
    let (deployment, path) = deploy(&client, &kafka.topic_prefix).await.unwrap();
    let fixture = deployment.log_fixture.unwrap();
    let transfer_topic: B256 = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
        .parse()
        .unwrap();
    let raw = |topics: Vec<B256>, data: Vec<u8>| LogFixture::emitRawCall {
        topics,
        data: data.into(),
    };
    client
        .transact(
            "unknown",
            fixture,
            &raw(vec![B256::repeat_byte(0xab)], vec![1, 2, 3]),
        )
        .await
        .unwrap();
    // Transfer with no indexed topics and short data: does not match the ABI.
    client
        .transact("malformed", fixture, &raw(vec![transfer_topic], vec![9; 5]))
        .await
        .unwrap();
    emit_transfers(&client, fixture, 2).await;
    let head = client
        .provider()
        .get_block_number()
        .await
        .unwrap()
        .to_string();

    let url = anvil.url();
    let path = path.to_string_lossy().to_string();
    let name = format!("{}dlq", kafka.topic_prefix);
    let mut indexer = spawn_role(
        &kafka,
        "indexer",
        &indexer_args(
            &url,
            &path,
            &name,
            &["--confirmations", "0", "--stop-at-block", &head],
        ),
    )
    .unwrap();
    assert!(wait_exit(&mut indexer, Duration::from_secs(60)).success());

    let letters = read_all(&kafka, &kafka.topic(Topic::DeadLetters)).unwrap();
    let reasons: Vec<String> = letters
        .iter()
        .map(|r| match AnyEvent::decode(None, &r.payload).unwrap() {
            AnyEvent::DeadLetter(e) => e.data.reason,
            other => panic!("unexpected {}", other.type_name()),
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("unknown event signature")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("does not match its ABI")),
        "{reasons:?}"
    );
    let stored = stored(&kafka);
    assert_eq!(
        stored
            .logs
            .iter()
            .filter(|l| l.contract == "log_fixture")
            .count(),
        2
    );
    assert_eq!(
        stored.logs.len() + 2,
        canonical_logs(&client, &deployment).await.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_rpc_endpoint_is_replaced_by_the_next_without_losing_a_block() {
    let LogChain {
        anvil,
        kafka,
        head,
        expected,
        deployment_file: path,
        ..
    } = log_chain("idx-failover", 60, 20).await;

    let relay = Relay::start(anvil.port).await.unwrap();
    let urls = format!("{},{}", relay.url(), anvil.url());
    let name = format!("{}failover", kafka.topic_prefix);
    let mut indexer = spawn_role(
        &kafka,
        "indexer",
        &indexer_args(
            &urls,
            &path,
            &name,
            &[
                "--confirmations",
                "0",
                "--initial-range",
                "1",
                "--max-range",
                "1",
                "--max-requests-per-second",
                "30",
                "--stop-at-block",
                &head,
                "--rpc-timeout-ms",
                "2000",
            ],
        ),
    )
    .unwrap();
    let wait_kafka = kafka.clone();
    tokio::task::spawn_blocking(move || {
        wait_for(
            "some progress through the first endpoint",
            Duration::from_secs(60),
            || log_count(&wait_kafka) > 200,
        )
    })
    .await
    .unwrap()
    .unwrap();
    relay.kill();
    let status =
        tokio::task::spawn_blocking(move || wait_exit(&mut indexer, Duration::from_secs(120)))
            .await
            .unwrap();
    assert!(status.success());
    let stored = stored(&kafka);
    let got: BTreeSet<(String, u64)> = stored
        .logs
        .iter()
        .map(|l| (l.tx_hash.clone(), l.log_index))
        .collect();
    assert_eq!(got.len(), stored.logs.len(), "duplicates");
    assert_eq!(got, expected);
    let log = std::fs::read_to_string(repo_root().join(format!(
        "target/test-logs/{}indexer.log",
        kafka.topic_prefix
    )))
    .unwrap();
    assert!(
        log.contains("switching to the next one"),
        "no failover logged"
    );
}
