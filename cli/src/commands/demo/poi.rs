//! The PoI part of the demo: deploy the contracts on the local anvil, stake the local
//! provider and register the agents on chain, index the chain into Kafka, close the
//! epoch of this run, score it, checkpoint its root, verify it by replay, and claim for
//! one account. Prints the leaderboard per role, the root, the transactions and the
//! commands to look further.

use std::path::Path;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use anyhow::{Context, bail};

use chorus_chain::contracts::{AgentRegistry, ChorusToken, PoiDistributor, ProviderRegistry};
use chorus_chain::{ChainClient, DeployPlan, RpcPool, RpcPoolConfig, deploy_all, id_from_name};
use chorus_indexer::{EmitMode, IndexerSettings, run_indexer};
use chorus_runtime::kafka::{KafkaArgs, Principal};
use chorus_schemas::ContributorRole;
use chorus_scoring::{
    EngineConfig, ScoreOptions, ScoringConfig, claim_proof, score_epoch, verify_epoch,
};

const RPC: &str = "http://127.0.0.1:8545";
/// anvil's public dev keys (loopback only): #1 is the agent developer, #2 the provider
/// operator; #0 deploys and checkpoints.
const DEVELOPER_KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const OPERATOR_KEY: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";

/// The demo distributor's challenge window; the demo moves anvil's clock past it
/// (`evm_increaseTime`) before it claims.
const CHALLENGE_WINDOW_SECONDS: u64 = 600;

async fn anvil_answers() -> bool {
    tokio::net::TcpStream::connect("127.0.0.1:8545")
        .await
        .is_ok()
}

/// What the demo learned about the run's participants.
pub struct Participants {
    pub humans: Vec<String>,
    pub agents: Vec<String>,
    pub provider_id: String,
}

/// What the PoI part reports in `--json`.
#[derive(Debug, Default, serde::Serialize)]
pub struct PoiSummary {
    pub events_scored: u64,
    pub leaderboard: Vec<LeaderboardRow>,
    pub merkle_root: String,
    pub manifest_hash: String,
    pub checkpoint_tx: String,
    pub verified: bool,
    pub events_replayed: u64,
    pub claim_account: String,
    pub claim_chr: String,
    pub claim_tx: String,
}

#[derive(Debug, serde::Serialize)]
pub struct LeaderboardRow {
    pub role: String,
    pub account: String,
    pub points: u64,
    pub items: u64,
    pub chr: String,
}

pub async fn run(
    kafka: &KafkaArgs,
    run_dir: &Path,
    genesis_ms: i64,
    people: &Participants,
    no_start: bool,
    summary: &mut PoiSummary,
) -> anyhow::Result<()> {
    say!("\n== Proof of Intelligence on a local BSC (anvil, chain id 56)");
    if !anvil_answers().await {
        if no_start {
            bail!("no anvil answers at {RPC}; start it with infra/scripts/start.sh anvil");
        }
        let status = tokio::process::Command::new("bash")
            .arg(crate::commands::repo_path("infra/scripts/start.sh"))
            .arg("anvil")
            .status()
            .await?;
        if !status.success() {
            bail!("could not start anvil");
        }
    }
    let deployer_key = chorus_chain::anvil_dev_signer(RPC)
        .await
        .context("the demo signs with anvil's dev key on the anvil it started")?;
    let owner = ChainClient::new(RPC, deployer_key, 56)?;
    let deployment = deploy_all(
        &owner,
        &DeployPlan::local(
            56,
            owner.address(),
            owner.address(),
            CHALLENGE_WINDOW_SECONDS,
            U256::from(10u64).pow(U256::from(20u64)),
        ),
    )
    .await?;
    let deployment_file = run_dir.join("deployment.json");
    deployment.save(&deployment_file)?;
    say!(
        "-- deployed: token {:#x}, agent registry {:#x}, provider registry {:#x}, PoI distributor {:#x}",
        deployment.token,
        deployment.agent_registry,
        deployment.provider_registry,
        deployment.poi_distributor
    );

    let developer = ChainClient::new(RPC, DEVELOPER_KEY.parse()?, 56)?;
    let operator = ChainClient::new(RPC, OPERATOR_KEY.parse()?, 56)?;
    let stake = U256::from(500u64) * U256::from(10u64).pow(U256::from(18u64));
    owner
        .transact(
            "mint stake",
            deployment.token,
            &ChorusToken::mintCall {
                to: operator.address(),
                amount: stake,
            },
        )
        .await?;
    operator
        .transact(
            "approve stake",
            deployment.token,
            &ChorusToken::approveCall {
                spender: deployment.provider_registry,
                value: stake,
            },
        )
        .await?;
    operator
        .transact(
            "register provider",
            deployment.provider_registry,
            &ProviderRegistry::registerCall {
                providerId: id_from_name(&people.provider_id),
                endpoint: "http://127.0.0.1:8080/v1".into(),
                stake_: stake,
            },
        )
        .await?;
    let ids: Vec<B256> = people.agents.iter().map(|a| id_from_name(a)).collect();
    let uris: Vec<String> = people
        .agents
        .iter()
        .map(|a| format!("chorus://agents/{a}"))
        .collect();
    developer
        .transact(
            "register agents",
            deployment.agent_registry,
            &AgentRegistry::registerBatchCall {
                agentIds: ids,
                metadataUris: uris,
            },
        )
        .await?;
    let pool = U256::from(1_000_000u64) * U256::from(10u64).pow(U256::from(18u64));
    owner
        .transact(
            "fund distributor",
            deployment.token,
            &ChorusToken::mintCall {
                to: deployment.poi_distributor,
                amount: pool,
            },
        )
        .await?;
    // Standing (poi-v3): 10 CHR bonded for each human, 100 CHR for the developer.
    let chr = U256::from(10u64).pow(U256::from(18u64));
    let mut bonds = vec![(developer.address(), U256::from(100u64) * chr)];
    for human in &people.humans {
        bonds.push((human.parse()?, U256::from(10u64) * chr));
    }
    chorus_chain::sponsor_bonds(&owner, &deployment, &bonds).await?;
    say!(
        "-- provider {} staked 500 CHR from {:#x}; agents {:?} registered by {:#x}; distributor funded",
        people.provider_id,
        operator.address(),
        people.agents,
        developer.address()
    );
    say!(
        "-- standing bonds: 10 CHR for each of {} humans, 100 CHR for the developer",
        people.humans.len()
    );

    // Index the chain into this run's topics.
    let head = owner.provider().get_block_number().await?;
    let rpc = RpcPool::new(&[RPC.to_string()], RpcPoolConfig::default())?;
    let settings = IndexerSettings {
        name: format!("{}indexer", kafka.topic_prefix),
        chain_id: 56,
        contracts: deployment.contracts(),
        start_block: deployment.start_block,
        mode: EmitMode::Confirmed,
        confirmations: 0,
        initial_range: 100,
        max_range: 2_000,
        reorg_window: 64,
        poll_interval: Duration::from_millis(200),
        stop_at_block: Some(head),
        progress: true,
    };
    let report = run_indexer(
        &kafka.as_principal(Principal::Indexer)?,
        &rpc,
        &settings,
        chorus_runtime::Shutdown::new(),
        chorus_runtime::metrics::Readiness::new(),
    )
    .await?;
    say!(
        "-- indexer: blocks {}..{}: {} chain logs into {} (exactly once, cursor in the same transaction)",
        report.first_block,
        head,
        report.logs,
        kafka.topic(chorus_schemas::Topic::ChainEvents)
    );

    // The epoch of this run: its config differs from infra/poi/scoring-v3.toml only in
    // the epoch window, which starts when this run started.
    let text = std::fs::read_to_string(crate::commands::repo_path("infra/poi/scoring-v3.toml"))?;
    let text = text.replace(
        "genesis_ms = 1764547200000",
        &format!("genesis_ms = {genesis_ms}"),
    );
    let config = ScoringConfig::parse(&text)?;
    let config_file = run_dir.join("scoring.toml");
    std::fs::write(&config_file, &text)?;
    let work_dir = run_dir.join("poi");
    let options = ScoreOptions {
        epoch: 0,
        allow_open: true,
        work_dir: work_dir.clone(),
        engine: EngineConfig::default(),
        scorer_name: format!("{}scorer", kafka.topic_prefix),
        chain_id: 56,
        distributor: Some(deployment.poi_distributor),
    };
    let outcome = score_epoch(
        &kafka.as_principal(Principal::Scorer)?,
        &config,
        &options,
        Some(&owner),
    )
    .await?;
    let result = &outcome.result;
    say!(
        "-- epoch 0 closed: {} events from {} exact offset ranges, scored with DataFusion in {:.2} s",
        result.events_read,
        result
            .manifest
            .sources
            .iter()
            .filter(|s| s.to > s.from)
            .count(),
        result.seconds_query
    );
    say!(
        "\nPoI leaderboard (pool {} CHR per epoch)",
        config.reward_pool()? / U256::from(10u64).pow(U256::from(18u64))
    );
    say!(
        "{:<16} {:<44} {:>10} {:>7} {:>16}",
        "role",
        "account",
        "points",
        "items",
        "CHR"
    );
    for role in [
        ContributorRole::Provider,
        ContributorRole::AgentDeveloper,
        ContributorRole::User,
    ] {
        let mut rows: Vec<_> = result.payouts.iter().filter(|p| p.role == role).collect();
        rows.sort_by_key(|p| std::cmp::Reverse(p.points));
        for p in rows {
            say!(
                "{:<16} {:<44} {:>10} {:>7} {:>16}",
                format!("{role:?}"),
                format!("{:#x}", p.account),
                p.points,
                p.items,
                format_chr(p.amount)
            );
            summary.leaderboard.push(LeaderboardRow {
                role: format!("{role:?}"),
                account: format!("{:#x}", p.account),
                points: p.points,
                items: p.items,
                chr: format_chr(p.amount),
            });
        }
    }
    let tx = outcome.tx_hash.clone().unwrap_or_default();
    summary.events_scored = result.events_read;
    summary.merkle_root = format!("{:#x}", outcome.root);
    summary.manifest_hash = format!("{:#x}", outcome.manifest_hash);
    summary.checkpoint_tx = tx.clone();
    say!(
        "\nmerkle root   {:#x}\nmanifest hash {:#x}\ncheckpoint tx {tx}",
        outcome.root,
        outcome.manifest_hash
    );

    let reader = chorus_chain::read_only_provider(RPC)?;
    // Anyone can verify: the read-only principal replays the log.
    let verification = verify_epoch(
        &kafka.as_principal(Principal::Reader)?,
        &config,
        0,
        &work_dir,
        &EngineConfig::default(),
        Some((&reader, deployment.poi_distributor)),
    )
    .await?;
    summary.verified = verification.ok;
    summary.events_replayed = verification.events_replayed;
    if verification.ok {
        say!(
            "verified: replaying {} events gives root {}, the same as on chain",
            verification.events_replayed,
            verification.computed_root
        );
    } else {
        bail!("verification failed: {:?}", verification.problems);
    }

    let human: Address = people.humans.first().context("a human")?.parse()?;
    let kafka_for_proof = kafka.as_principal(Principal::Reader)?;
    let proof =
        tokio::task::spawn_blocking(move || claim_proof(&kafka_for_proof, 0, human)).await??;
    let amount = U256::from_str_radix(&proof.cumulative_amount, 10)?;
    let path: Vec<B256> = proof
        .proof
        .iter()
        .map(|p| p.parse())
        .collect::<Result<_, _>>()?;
    let token = ChorusToken::new(deployment.token, owner.provider());
    let distributor = PoiDistributor::new(deployment.poi_distributor, owner.provider());
    let claimable_at = distributor.claimableAt(0).call().await?;
    say!(
        "the root is pending: claimable from {claimable_at} (unix time), after the {CHALLENGE_WINDOW_SECONDS} s challenge window in which the guardian may revoke it; moving anvil's clock past it"
    );
    chorus_chain::anvil_advance_time(&owner, CHALLENGE_WINDOW_SECONDS + 1).await?;
    let before = token.balanceOf(human).call().await?;
    let receipt = owner
        .transact(
            "claim",
            deployment.poi_distributor,
            &PoiDistributor::claimCall {
                epoch: 0,
                account: human,
                cumulativeAmount: amount,
                proof: path,
            },
        )
        .await?;
    let after = token.balanceOf(human).call().await?;
    summary.claim_account = format!("{human:#x}");
    summary.claim_chr = format_chr(after - before);
    summary.claim_tx = format!("{:#x}", receipt.transaction_hash);
    say!(
        "claimed {} CHR for {human:#x} with a {}-step proof in tx {:#x} (balance {} -> {})",
        format_chr(after - before),
        proof.proof.len(),
        receipt.transaction_hash,
        format_chr(before),
        format_chr(after)
    );

    let prefix = &kafka.topic_prefix;
    let chorus = super::chorus_command(kafka);
    say!("\nlook further:");
    say!(
        "  {chorus} verify --epoch 0 --scoring-config {} --deployment {}",
        config_file.display(),
        deployment_file.display()
    );
    say!("  {chorus} proof --epoch 0 --account <address>");
    say!("  cat {}", work_dir.join("epoch-0/claims.json").display());
    say!(
        "  cargo run -q -p chorus-workbench -- poi sql --archive {} \"SELECT author_id, count(*) AS messages FROM chat_messages GROUP BY author_id ORDER BY messages DESC\"",
        work_dir.join("epoch-0/archive").display()
    );
    say!(
        "  the epoch archive (Parquet, a directory per table, a file per bucket): {}",
        work_dir.join("epoch-0/archive").display()
    );
    let kcat_config = kafka
        .secrets_dir
        .as_ref()
        .map(|d| format!(" -F {}", d.join("reader.kcat").display()))
        .unwrap_or_default();
    say!(
        "  kcat{kcat_config} -C -b {} -t {prefix}chorus.poi.scores -e -q   # the recorded scores, as the read-only principal",
        kafka.brokers
    );
    Ok(())
}

fn format_chr(wei: U256) -> String {
    let unit = U256::from(10u64).pow(U256::from(18u64));
    let whole = wei / unit;
    let fraction = (wei % unit) / U256::from(10u64).pow(U256::from(14u64));
    format!("{whole}.{fraction:04}")
}
