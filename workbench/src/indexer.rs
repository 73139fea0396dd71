//! `chorus-bench indexer`: logs/s and blocks/s of the indexer (RPC → decode → Kafka
//! transactions with the cursor) beside a raw baseline in the same run: plain
//! eth_getLogs over the same block ranges and the same decoding, with no Kafka and no
//! reorg bookkeeping. Prints numbers; asserts nothing.

use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use anyhow::Context;

use chorus_chain::contracts::LogFixture;
use chorus_chain::{DeployPlan, EventDecoder, RpcPool, RpcPoolConfig, deploy_all};
use chorus_indexer::{EmitMode, IndexerSettings, run_indexer};
use chorus_runtime::kafka::{KafkaArgs, apply_topics, load_topic_specs};

use chorus_cli::commands::chain::{ChainArgs, KeyArgs};

/// BSC's block interval (Maxwell upgrade): the rate the indexer must sustain.
const BSC_BLOCK_SECONDS: f64 = 0.45;

pub struct IndexerBench {
    pub logs: u64,
    pub logs_per_tx: u64,
    pub empty_blocks_between: u64,
    pub range: u64,
}

pub async fn run(
    base: &KafkaArgs,
    chain: &ChainArgs,
    key: &KeyArgs,
    bench: IndexerBench,
) -> anyhow::Result<()> {
    let client = key.client(chain).await?;
    let deployment = deploy_all(
        &client,
        &DeployPlan {
            with_log_fixture: true,
            ..DeployPlan::local(
                chain.chain_id,
                client.address(),
                client.address(),
                3_600,
                U256::from(1u64),
            )
        },
    )
    .await?;
    let fixture = deployment.log_fixture.context("fixture was deployed")?;
    let txs = bench.logs.div_ceil(bench.logs_per_tx.max(1));
    eprintln!(
        "generating {} logs in {txs} transactions, {} empty blocks between them...",
        txs * bench.logs_per_tx,
        bench.empty_blocks_between
    );
    for _ in 0..txs {
        client
            .transact(
                "emitTransfers",
                fixture,
                &LogFixture::emitTransfersCall {
                    n: U256::from(bench.logs_per_tx),
                },
            )
            .await?;
        if bench.empty_blocks_between > 0 {
            let _: serde_json::Value = client
                .provider()
                .raw_request(
                    "anvil_mine".into(),
                    (format!("{:#x}", bench.empty_blocks_between),),
                )
                .await?;
        }
    }
    let head = client.provider().get_block_number().await?;
    let from = deployment.start_block;
    let blocks = head - from + 1;
    let addresses: Vec<Address> = deployment.contracts().iter().map(|(_, a)| *a).collect();

    // Baseline: eth_getLogs + decode, same ranges, nothing else.
    let decoder = EventDecoder::new()?;
    let kinds: std::collections::HashMap<Address, _> = deployment
        .contracts()
        .into_iter()
        .map(|(k, a)| (a, k))
        .collect();
    let started = Instant::now();
    let mut raw_logs = 0u64;
    let mut start = from;
    while start <= head {
        let end = (start + bench.range - 1).min(head);
        let filter = Filter::new()
            .address(addresses.clone())
            .from_block(start)
            .to_block(end);
        for log in client.provider().get_logs(&filter).await? {
            if let Some(kind) = kinds.get(&log.inner.address) {
                let decoded = decoder.decode(*kind, &log.inner.data);
                raw_logs += u64::from(decoded.is_ok());
            }
        }
        start = end + 1;
    }
    let raw_seconds = started.elapsed().as_secs_f64();

    // The indexer, in process, into fresh topics.
    let mut kafka = base.clone();
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    kafka.topic_prefix = format!("bench-{}.", &run_id[run_id.len() - 8..]);
    let specs = load_topic_specs(&chorus_cli::commands::repo_path("infra/topics/topics.toml"))?;
    apply_topics(&kafka, &specs, chorus_runtime::kafka::Replication::SINGLE).await?;
    crate::grant_acls(&kafka).await?;
    let rpc = RpcPool::new(&chain.rpc_urls, RpcPoolConfig::default())?;
    let settings = IndexerSettings {
        name: format!("{}bench", kafka.topic_prefix),
        chain_id: chain.chain_id,
        contracts: deployment.contracts(),
        start_block: from,
        mode: EmitMode::Confirmed,
        confirmations: 0,
        initial_range: bench.range,
        max_range: bench.range,
        reorg_window: 64,
        poll_interval: Duration::from_millis(100),
        stop_at_block: Some(head),
        progress: false,
    };
    let started = Instant::now();
    let report = run_indexer(
        &kafka,
        &rpc,
        &settings,
        chorus_runtime::Shutdown::new(),
        chorus_runtime::metrics::Readiness::new(),
    )
    .await?;
    let total_seconds = started.elapsed().as_secs_f64();
    let indexer_seconds = report.indexing_time.as_secs_f64();

    let rate = |n: u64, s: f64| n as f64 / s.max(1e-9);
    println!();
    println!(
        "indexer benchmark: {blocks} blocks, {raw_logs} logs, eth_getLogs range {} blocks, anvil at {}",
        bench.range,
        client_label(chain)
    );
    println!(
        "{:<34} {:>8} {:>9} {:>12} {:>12} {:>8}",
        "path", "logs", "seconds", "logs/s", "blocks/s", "ratio"
    );
    println!(
        "{:<34} {:>8} {:>9.2} {:>12.0} {:>12.0} {:>8}",
        "baseline: eth_getLogs + decode",
        raw_logs,
        raw_seconds,
        rate(raw_logs, raw_seconds),
        rate(blocks, raw_seconds),
        "1.00"
    );
    println!(
        "{:<34} {:>8} {:>9.2} {:>12.0} {:>12.0} {:>8.2}",
        "chorus indexer → Kafka (exactly once)",
        report.logs,
        indexer_seconds,
        rate(report.logs, indexer_seconds),
        rate(blocks, indexer_seconds),
        raw_seconds / indexer_seconds.max(1e-9)
    );
    println!(
        "(indexer time excludes {:.2} s of start-up: connecting, fencing the transactional id, loading the cursor)",
        total_seconds - indexer_seconds
    );
    let needed = 1.0 / BSC_BLOCK_SECONDS;
    println!(
        "BSC produces {needed:.1} blocks/s (one per {BSC_BLOCK_SECONDS} s): the indexer runs at {:.0}x that on this workload ({:.0} logs per block on average).",
        rate(blocks, indexer_seconds) / needed,
        report.logs as f64 / blocks as f64
    );
    Ok(())
}

fn client_label(chain: &ChainArgs) -> String {
    chain
        .rpc_urls
        .first()
        .and_then(|u| u.parse().ok())
        .map(|u| chorus_chain::rpc::endpoint_label(&u))
        .unwrap_or_default()
}
