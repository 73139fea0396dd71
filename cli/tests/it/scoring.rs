#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! PoI scoring against the real Kafka broker (and a real anvil): determinism over
//! partitioning, arrival order and duplicates; `verify` catching a tampered log and a
//! wrong on-chain root.

use std::collections::BTreeMap;

use alloy::primitives::{Address, B256, U256};

use chorus_chain::contracts::PoiDistributor;
use chorus_chain::merkle::{Claim, ClaimTree};
use chorus_integration_tests::chain::{Anvil, deploy};
use chorus_integration_tests::poi::{
    create_topics_with, produce_events, run_chorus, scoring_config_file, synthetic_events,
};
use chorus_integration_tests::*;
use chorus_runtime::kafka::{EventProducer, KafkaArgs, await_delivery, cloudevents_headers};
use chorus_schemas::{AnyEvent, Envelope, Feedback, Topic};
use chorus_scoring::synthetic::Workload;
use chorus_scoring::{EngineConfig, ScoreOptions, score_epoch};

fn workload_events(events: u64, seed: u64) -> Vec<AnyEvent> {
    synthetic_events(Workload {
        events,
        users: 40,
        agent_developers: 6,
        providers: 4,
        seed,
    })
}

/// The contributions of `events` archived directly (no Kafka) and queried with the
/// one-query form over the whole archive. Checks on the way that the scorer's bucketed
/// plan gives the same rows over archives of 1, 3 and 8 buckets.
async fn score_directly(
    events: &[AnyEvent],
    config: &chorus_scoring::ScoringConfig,
    name: &str,
) -> Vec<chorus_scoring::engine::Contribution> {
    let archive = |buckets: usize| {
        let dir = repo_root().join(format!("target/test-logs/{name}-direct-{buckets}"));
        let mut writer =
            chorus_scoring::archive::ArchiveWriter::create_with_buckets(&dir, buckets).unwrap();
        for event in events {
            writer.add(event).unwrap();
        }
        writer.finish().unwrap();
        dir
    };
    // poi-v3's one-query reference runs many spilling operators at once, each with a
    // fair share of the pool.
    let engine = EngineConfig {
        memory_limit: 256 * 1024 * 1024,
        ..EngineConfig::default()
    };
    let sql = chorus_scoring::sql::contribution_sql(config);
    let whole = chorus_scoring::engine::run_query(&archive(1), &sql, &engine)
        .await
        .unwrap();
    let plan = chorus_scoring::sql::ScoringPlan::new(config);
    for buckets in [1, 3, 8] {
        let bucketed = chorus_scoring::engine::run_plan(&archive(buckets), &plan, &engine)
            .await
            .unwrap();
        assert_eq!(bucketed, whole, "the plan over {buckets} buckets");
    }
    whole
}

fn shuffle(events: &mut [AnyEvent], seed: u64) {
    let mut state = seed | 1;
    for i in (1..events.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        events.swap(i, (state % (i as u64 + 1)) as usize);
    }
}

fn options(kafka: &KafkaArgs) -> ScoreOptions {
    ScoreOptions {
        epoch: 0,
        allow_open: true,
        work_dir: repo_root().join(format!("target/test-logs/{}poi", kafka.topic_prefix)),
        engine: EngineConfig {
            // Small enough that sorts spill, large enough for three buckets side by side:
            // at 64 MiB the fair pool was once exhausted by the other buckets' operators
            // before a sort got its share ("Not enough memory to continue external
            // sort"; CI of issue 20).
            memory_limit: 128 * 1024 * 1024,
            target_partitions: 4,
            bucket_concurrency: 3,
            ballista_scheduler: None,
        },
        scorer_name: kafka.topic_prefix.clone(),
        chain_id: 56,
        distributor: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_events_give_the_same_root_for_1_4_16_partitions_any_order_and_duplicates() {
    let events = workload_events(3_000, 11);
    let (_, config) = scoring_config_file("determinism-").unwrap();

    // The reference: the unique events (deduplicated here, not by the archive under
    // test) archived directly, no Kafka.
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<AnyEvent> = events
        .iter()
        .filter(|event| seen.insert(event.id()))
        .cloned()
        .collect();
    let rows = score_directly(&unique, &config, "determinism").await;
    let split = chorus_scoring::payout::split(&rows, &config);
    let cumulative = chorus_scoring::payout::cumulative(&BTreeMap::new(), &split.payouts);
    let claims: Vec<Claim> = cumulative
        .iter()
        .map(|(a, v)| Claim {
            account: *a,
            cumulative_amount: *v,
        })
        .collect();
    let reference = ClaimTree::build(&claims).unwrap().root();
    assert!(split.payouts.len() > 20, "a real spread of contributors");

    let mut roots = Vec::new();
    for (partitions, seed) in [(1, 3u64), (4, 5), (16, 7)] {
        let kafka = test_kafka(&format!("det{partitions}"));
        create_topics_with(&kafka, partitions).await.unwrap();
        let mut input = events.clone();
        // Extra duplicates on top of the workload's own, then a new arrival order.
        for i in (0..events.len()).step_by(37) {
            input.push(events[i].clone());
        }
        shuffle(&mut input, seed);
        produce_events(&kafka, &input).await.unwrap();
        let outcome = score_epoch(&kafka, &config, &options(&kafka), None)
            .await
            .unwrap();
        eprintln!("{partitions} partitions: root {:#x}", outcome.root);
        roots.push(outcome.root);
    }
    assert!(
        roots.iter().all(|r| *r == reference),
        "roots differ: {roots:?} vs {reference:#x}"
    );
}

/// Copies every committed record of every topic from `from` to `to` (same partitions),
/// inserting `extra` into its topic's partition 0 halfway through.
async fn copy_with_insert(from: &KafkaArgs, to: &KafkaArgs, extra: &AnyEvent) {
    let producer = EventProducer::new(to, "test-copy", 100_000).unwrap();
    for topic in chorus_schemas::Topic::ALL {
        let records = read_all(from, &from.topic(topic)).unwrap();
        let mut by_partition: BTreeMap<i32, Vec<_>> = BTreeMap::new();
        for record in records {
            by_partition
                .entry(record.partition)
                .or_default()
                .push(record);
        }
        for (partition, records) in by_partition {
            let middle = records.len() / 2;
            for (i, record) in records.iter().enumerate() {
                if topic == extra.topic() && partition == 0 && i == middle {
                    let headers = cloudevents_headers();
                    let delivery = producer
                        .enqueue_raw_to(
                            &to.topic(topic),
                            0,
                            Some(extra.key().as_bytes()),
                            &extra.to_json().unwrap(),
                            Some(headers),
                        )
                        .await
                        .unwrap();
                    await_delivery(delivery).await.unwrap();
                }
                let headers = cloudevents_headers();
                let delivery = producer
                    .enqueue_raw_to(
                        &to.topic(topic),
                        partition,
                        record.key.as_deref(),
                        &record.payload,
                        Some(headers),
                    )
                    .await
                    .unwrap();
                await_delivery(delivery).await.unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_catches_a_tampered_log_and_a_wrong_on_chain_root() {
    let kafka = test_kafka("verify");
    create_topics_with(&kafka, 3).await.unwrap();
    let events = workload_events(1_500, 21);
    produce_events(&kafka, &events).await.unwrap();
    let (config_path, _) = scoring_config_file(&kafka.topic_prefix).unwrap();
    let config_path = config_path.to_string_lossy().to_string();
    let work = repo_root().join(format!("target/test-logs/{}poi", kafka.topic_prefix));
    let work = work.to_string_lossy().to_string();
    let poi = [
        "--scoring-config",
        config_path.as_str(),
        "--work-dir",
        work.as_str(),
    ];

    let (ok, out) = run_chorus(
        &kafka,
        &[
            &["score", "--epoch", "0", "--allow-open", "--no-chain"][..],
            &poi,
        ]
        .concat(),
    );
    assert!(ok, "{out}");
    let (ok, out) = run_chorus(
        &kafka,
        &[&["verify", "--epoch", "0", "--no-chain"][..], &poi].concat(),
    );
    assert!(ok && out.contains("verified"), "{out}");

    // A replica of the log with one extra event inside the epoch's offsets.
    let replica = test_kafka("verify-replica");
    create_topics_with(&replica, 3).await.unwrap();
    let reply = events
        .iter()
        .find_map(|e| match e {
            AnyEvent::ChatMessage(m) if m.data.job_id.is_some() => Some(m.clone()),
            _ => None,
        })
        .unwrap();
    let extra = AnyEvent::Feedback(Envelope::new(
        "tamper",
        Feedback {
            conversation_id: reply.data.conversation_id.clone(),
            message_id: reply.id,
            account: format!("{:#x}", Address::repeat_byte(0x77)),
            rating: 5,
            comment: None,
        },
    ));
    copy_with_insert(&kafka, &replica, &extra).await;
    let (ok, out) = run_chorus(
        &replica,
        &[&["verify", "--epoch", "0", "--no-chain"][..], &poi].concat(),
    );
    assert!(!ok, "a tampered log must not verify: {out}");
    assert!(out.contains("does NOT verify"), "{out}");

    // A wrong root on chain for the epoch.
    let anvil = Anvil::start().unwrap();
    let client = anvil.client();
    let (deployment, path) = deploy(&client, &kafka.topic_prefix).await.unwrap();
    let path = path.to_string_lossy().to_string();
    client
        .transact(
            "wrong root",
            deployment.poi_distributor,
            &PoiDistributor::checkpointCall {
                epoch: 0,
                root: B256::repeat_byte(0x42),
                manifestHash: B256::ZERO,
                cumulativeTotal: U256::ZERO,
            },
        )
        .await
        .unwrap();
    let chain = ["--rpc-url", &anvil.url(), "--deployment", &path];
    let (ok, out) = run_chorus(
        &kafka,
        &[&["verify", "--epoch", "0"][..], &poi, &chain].concat(),
    );
    assert!(!ok, "a wrong on-chain root must not verify: {out}");
    assert!(out.contains("the distributor holds root 0x4242"), "{out}");
    // And the scorer refuses to paper over it.
    let (ok, out) = run_chorus(
        &kafka,
        &[&["score", "--epoch", "0"][..], &poi, &chain].concat(),
    );
    assert!(!ok && out.contains("on chain, epoch 0 has root"), "{out}");
    let _ = Topic::ALL;
}

fn items_by_role(rows: &[chorus_scoring::engine::Contribution]) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for row in rows {
        *out.entry(row.role.clone()).or_insert(0) += row.items;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_whose_job_was_written_in_the_previous_epoch_is_paid_in_its_own() {
    let events = workload_events(2_000, 21);
    let (_, mut config) = scoring_config_file("lookback-").unwrap();

    // What the workload is worth when everything is in one epoch.
    let whole = score_directly(&events, &config, "lookback").await;
    let whole = items_by_role(&whole);
    assert!(whole.get("provider").copied().unwrap_or(0) > 100);

    // Jobs, calls and messages before an epoch boundary; the results after it.
    let kafka = test_kafka("lookback");
    create_topics_with(&kafka, 2).await.unwrap();
    let (results, rest): (Vec<AnyEvent>, Vec<AnyEvent>) = events
        .into_iter()
        .partition(|e| matches!(e, AnyEvent::InferenceResult(_)));
    produce_events(&kafka, &rest).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let boundary = chrono::Utc::now().timestamp_millis();
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    produce_events(&kafka, &results).await.unwrap();
    config.epoch.length_seconds = 600;
    config.epoch.genesis_ms = boundary - 600_000;

    let mut first = options(&kafka);
    first.epoch = 0;
    let first = score_epoch(&kafka, &config, &first, None).await.unwrap();
    let first = items_by_role(&first.result.contributions);
    assert_eq!(
        first.get("provider"),
        None,
        "no result in epoch 0: {first:?}"
    );

    let mut second = options(&kafka);
    second.epoch = 1;
    let second = score_epoch(&kafka, &config, &second, None).await.unwrap();
    let second = items_by_role(&second.result.contributions);
    // Every verified result is paid in epoch 1 although its job and call are in epoch 0.
    assert_eq!(
        second.get("provider"),
        whole.get("provider"),
        "{second:?} vs {whole:?}"
    );
    assert_eq!(
        second.get("agent_developer"),
        whole.get("agent_developer"),
        "{second:?} vs {whole:?}"
    );
}

/// A provider registration that a reorg took back (a `chain.log.retracted` event naming
/// it) earns its operator nothing; every other contribution stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_registration_retracted_by_a_reorg_earns_nothing() {
    let mut events = workload_events(3_000, 13);
    let (_, config) = scoring_config_file("retraction-").unwrap();
    let registration = events
        .iter()
        .find_map(|event| match event {
            AnyEvent::ChainLog(log)
                if log.data.event_name.as_deref() == Some("ProviderRegistered") =>
            {
                Some(log.clone())
            }
            _ => None,
        })
        .unwrap();
    let decoded: serde_json::Value =
        serde_json::from_str(registration.data.decoded.as_deref().unwrap()).unwrap();
    let operator = decoded["operator"].as_str().unwrap().to_ascii_lowercase();
    let is_operator = |c: &chorus_scoring::engine::Contribution| {
        c.role == "provider" && c.account.eq_ignore_ascii_case(&operator)
    };

    let before = score_directly(&events, &config, "retraction-before").await;
    assert!(
        before.iter().any(|c| is_operator(c) && c.points > 0),
        "the registered provider earns before the reorg: {before:?}"
    );

    events.push(AnyEvent::ChainLogRetracted(Envelope::new(
        "test",
        chorus_schemas::ChainLogRetracted {
            chain_id: 56,
            contract: registration.data.contract.clone(),
            block_number: registration.data.block_number,
            block_hash: registration.data.block_hash.clone(),
            tx_hash: registration.data.tx_hash.clone(),
            log_index: registration.data.log_index,
            retracted_event_id: registration.id,
            reason: "reorg".into(),
        },
    )));
    let after = score_directly(&events, &config, "retraction-after").await;
    assert!(
        !after.iter().any(is_operator),
        "no provider points without a canonical registration: {after:?}"
    );
    let others = |rows: &[chorus_scoring::engine::Contribution]| {
        rows.iter()
            .filter(|c| !is_operator(c))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(others(&before), others(&after), "nothing else changes");
}

/// A provider-registry log of the synthetic kind, for `provider_key`.
fn stake_log(name: &str, provider_key: &str, operator: &str, total: &str, block: u64) -> AnyEvent {
    let decoded = serde_json::json!({
        "providerId": provider_key, "operator": operator, "amount": "1", "totalStake": total,
    });
    AnyEvent::ChainLog(Envelope::new(
        "test",
        chorus_schemas::ChainLog {
            chain_id: 56,
            contract: "provider_registry".into(),
            block_number: block,
            block_hash: format!("0x{block:064x}"),
            block_timestamp: None,
            tx_hash: format!("0x{:064x}", block + 7),
            tx_index: 0,
            log_index: 0,
            topics: vec![],
            data: "0x".into(),
            event_name: Some(name.into()),
            decoded: Some(decoded.to_string()),
        },
    ))
}

/// Providers are paid only if staked on chain at the epoch's end (issue 18): one that
/// unstakes to zero after serving earns nothing for the epoch, one that adds stake is
/// paid as before; the rule is the config's, so turning it off pays both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_unstakes_to_zero_before_the_epoch_ends_is_not_paid() {
    let mut events = workload_events(2_000, 13);
    let registrations: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match e {
            AnyEvent::ChainLog(log)
                if log.data.event_name.as_deref() == Some("ProviderRegistered") =>
            {
                let decoded: serde_json::Value =
                    serde_json::from_str(log.data.decoded.as_deref().unwrap()).unwrap();
                Some((
                    decoded["providerId"].as_str().unwrap().to_owned(),
                    decoded["operator"].as_str().unwrap().to_lowercase(),
                ))
            }
            _ => None,
        })
        .collect();
    let (gone, gone_operator) = registrations[0].clone();
    let (kept, kept_operator) = registrations[1].clone();
    events.push(stake_log("Unstaked", &gone, &gone_operator, "0", 1_000));
    events.push(stake_log(
        "Staked",
        &kept,
        &kept_operator,
        "250000000000000000000",
        1_001,
    ));
    let (_, mut config) = scoring_config_file("stake-").unwrap();
    let providers = |rows: &[chorus_scoring::engine::Contribution]| -> Vec<String> {
        rows.iter()
            .filter(|r| r.role == "provider")
            .map(|r| r.account.clone())
            .collect()
    };
    let paid = providers(&score_directly(&events, &config, "stake-on").await);
    assert!(
        !paid.contains(&gone_operator),
        "unstaked and paid: {paid:?}"
    );
    assert!(paid.contains(&kept_operator), "{paid:?}");
    config.rules.providers_paid_only_if_staked_at_epoch_end = false;
    let paid = providers(&score_directly(&events, &config, "stake-off").await);
    assert!(
        paid.contains(&gone_operator) && paid.contains(&kept_operator),
        "{paid:?}"
    );
}

/// One rating per (rater, reply) counts (issue 18): a rater rating the same reply again
/// and again, each time a new event, adds neither stars to the agent nor units to the
/// rater; with the rule off (poi-v1) every copy counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rating_a_reply_again_and_again_counts_once() {
    let events = workload_events(2_000, 17);
    let first = events
        .iter()
        .find_map(|e| match e {
            AnyEvent::Feedback(f) => Some(f.clone()),
            _ => None,
        })
        .expect("the workload rates replies");
    let mut repeated = events.clone();
    for n in 0..5u128 {
        let mut again = first.clone();
        // Ids above the first's (ids order ratings): the first one counts.
        again.id = uuid::Uuid::from_u128(u128::MAX - n);
        again.data.rating = 5;
        repeated.push(AnyEvent::Feedback(again));
    }
    let (_, mut config) = scoring_config_file("ratings-").unwrap();
    let honest = score_directly(&events, &config, "ratings-honest").await;
    let farmed = score_directly(&repeated, &config, "ratings-farmed").await;
    assert_eq!(farmed, honest, "repeated ratings changed the scores");
    config.rules.one_rating_per_rater_and_reply = false;
    let counted = score_directly(&repeated, &config, "ratings-v1").await;
    let honest_v1 = score_directly(&events, &config, "ratings-honest-v1").await;
    assert_ne!(counted, honest_v1, "without the rule every copy counts");
}

/// poi-v3 (issue 18) over an epoch with every adversary of the attack benchmark: the
/// scorer's bucketed plan gives the reference query's rows over 1, 3 and 8 buckets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poi_v3_plan_matches_the_reference_with_every_adversary() {
    use chorus_scoring::synthetic::{Adversaries, Brigade, Farm};
    let adversaries = Adversaries {
        farm: Some(Farm {
            addresses: 30,
            messages: 3,
            bond_chr: 10,
            developer_bond_chr: 100,
            own_agent: true,
            developer_asks: false,
        }),
        inflating_provider: Some(20),
        grabbing_provider: Some(40),
        unstaking_provider: Some(true),
        brigade: Some(Brigade {
            raters: 5,
            rival_exchanges: 30,
            attacks: true,
        }),
    };
    let events = chorus_integration_tests::poi::synthetic_events_with(
        Workload {
            events: 3_000,
            users: 40,
            agent_developers: 6,
            providers: 4,
            seed: 23,
        },
        &adversaries,
    );
    let (_, config) = scoring_config_file("v3-plan-").unwrap();
    assert!(config.standing.is_some(), "the shipped default is poi-v3");
    let rows = score_directly(&events, &config, "v3-plan").await;
    assert!(
        rows.iter()
            .any(|r| r.role == "agent_developer" && r.points > 0)
    );
    assert!(rows.iter().any(|r| r.role == "user" && r.points > 0));
}

/// The attack benchmark's goals (issue 18), on a small workload: under poi-v3 no
/// adversary earns more than the same actor doing the same real work from one honest
/// address, except a bonded sock puppet, whose take its bond bounds; a farm of fresh
/// addresses earns less than 0.1% of the pool; a brigade changes nothing for its rival;
/// the honest ranking of users and developers is what poi-v2 gave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_poi_v3_no_adversary_earns_more_than_its_real_work() {
    let workload = Workload {
        events: 6_000,
        users: 200,
        agent_developers: 6,
        providers: 4,
        seed: 5,
    };
    let v2 = chorus_scoring::ScoringConfig::load(&repo_root().join("infra/poi/scoring-v2.toml"))
        .unwrap();
    let v3 = chorus_scoring::ScoringConfig::load(&repo_root().join("infra/poi/scoring-v3.toml"))
        .unwrap();
    let dir = repo_root().join("target/test-logs/attacks");
    let engine = EngineConfig {
        memory_limit: 256 * 1024 * 1024,
        ..EngineConfig::default()
    };
    let scenarios = chorus_scoring::attacks::scenarios(200);
    let rows = chorus_scoring::attacks::run(
        workload,
        &scenarios,
        &[v2.clone(), v3.clone()],
        &dir,
        &engine,
    )
    .await
    .unwrap();
    for row in &rows {
        let (attack, honest) = (row.attack["poi-v3"], row.honest["poi-v3"]);
        eprintln!(
            "{}: v2 {:.4}%, v3 {:.4}% (honest {:.4}%)",
            row.adversary,
            row.attack["poi-v2"] * 100.0,
            attack * 100.0,
            honest * 100.0
        );
        if row.adversary.starts_with("sybil farm") {
            assert!(attack < 0.001, "{}: {attack}", row.adversary);
            assert!(
                row.attack["poi-v2"] > 0.01,
                "v2 paid the farm: {}",
                row.adversary
            );
        } else if row.adversary.starts_with("sock puppet") {
            // Bounded by its 110 CHR: in this small epoch (200 users, 2,000 CHR of
            // user bonds), about what 10 CHR of user bond and 1,000 call units buy.
            assert!(attack < 0.02, "{}: {attack}", row.adversary);
            assert!(
                attack < row.attack["poi-v2"] / 10.0,
                "{}: {attack}",
                row.adversary
            );
        } else {
            assert!(
                attack <= honest + 1e-9,
                "{} earned {attack} against {honest}",
                row.adversary
            );
        }
        if row.adversary.contains("rival developer") {
            assert_eq!(attack, honest, "the brigade moved its rival's take");
        }
    }
    let ranking = chorus_scoring::attacks::ranking_changes(workload, &v2, &v3, &dir, &engine)
        .await
        .unwrap();
    assert_eq!(ranking["User"].0, 0, "{ranking:?}");
    assert_eq!(ranking["AgentDeveloper"].0, 0, "{ranking:?}");
}

/// The watcher (issue 18), end to end on anvil with the indexer and the watcher running
/// as their own processes: a compromised checkpointer key posts a root that pays its
/// holder; `chorus verify --watch` sees it through the indexed chain events, finds that
/// no scorer computed it and revokes it with the guardian key inside the challenge
/// window; no claim against it succeeds, even after the window; the epoch is posted
/// again by `chorus score` from its recomputation, the watcher finds that root right,
/// and after the window claims pay exactly what the recorded scores say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_revokes_a_wrong_root_and_the_right_one_pays_after_the_window() {
    use chorus_integration_tests::chain::{
        CHALLENGE_WINDOW_SECONDS, DEV_KEY_2, advance_time, guardian_address,
    };
    let kafka = test_kafka("watch");
    create_topics_with(&kafka, 3).await.unwrap();
    let events = workload_events(1_500, 29);
    produce_events(&kafka, &events).await.unwrap();
    let anvil = Anvil::start().unwrap();
    let owner = anvil.client();
    let (deployment, path) = deploy(&owner, &kafka.topic_prefix).await.unwrap();
    let at = deployment.poi_distributor;
    assert_eq!(deployment.guardian, Some(guardian_address()));
    owner
        .transact(
            "fund",
            deployment.token,
            &chorus_chain::contracts::ChorusToken::mintCall {
                to: at,
                amount: U256::from(10u64).pow(U256::from(24u64)),
            },
        )
        .await
        .unwrap();
    let flags = chorus_integration_tests::poi::poi_flags(&kafka, &anvil.url(), &path);
    let poi: Vec<&str> = flags.iter().map(String::as_str).collect();
    let url = anvil.url();
    let deployment_path = path.to_string_lossy().to_string();
    let name = format!("{}indexer", kafka.topic_prefix);
    let mut indexer = spawn_role(
        &kafka,
        "watch-indexer",
        &RoleCommand::new(&["indexer"])
            .metrics_addr("127.0.0.1:0")
            .args([
                "--rpc-url",
                &url,
                "--deployment",
                &deployment_path,
                "--name",
                &name,
                "--confirmations",
                "0",
                "--poll-ms",
                "200",
                "--no-progress",
            ]),
    )
    .unwrap();
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let mut watcher = spawn_role_with_env(
        &kafka,
        "watch-watcher",
        &RoleCommand::new(&["verify", "--watch"])
            .metrics_addr(&metrics_addr)
            .args(poi.iter().copied()),
        &[("CHORUS_GUARDIAN_KEY", DEV_KEY_2)],
    )
    .unwrap();

    // The honest scorer records epoch 0 (not yet on chain).
    let (ok, out) = run_chorus(
        &kafka,
        &[
            &["score", "--epoch", "0", "--allow-open", "--no-chain"][..],
            &poi[..],
        ]
        .concat(),
    );
    assert!(ok, "{out}");

    // The compromised checkpointer key posts a root that pays its holder 1,000 CHR.
    let attacker = owner.address();
    let stolen = U256::from(1_000u64) * U256::from(10u64).pow(U256::from(18u64));
    let forged = ClaimTree::build(&[Claim {
        account: attacker,
        cumulative_amount: stolen,
    }])
    .unwrap();
    owner
        .transact(
            "forged root",
            at,
            &PoiDistributor::checkpointCall {
                epoch: 0,
                root: forged.root(),
                manifestHash: B256::repeat_byte(0x66),
                cumulativeTotal: stolen,
            },
        )
        .await
        .unwrap();
    let (_, forged_proof) = forged.proof(attacker).unwrap();
    let steal = PoiDistributor::claimCall {
        epoch: 0,
        account: attacker,
        cumulativeAmount: stolen,
        proof: forged_proof,
    };
    assert!(
        owner
            .transact("steal while pending", at, &steal)
            .await
            .is_err(),
        "a pending root pays nothing"
    );
    let distributor = PoiDistributor::new(at, owner.provider());
    let status = |epoch: u64| {
        let distributor = distributor.clone();
        async move { distributor.checkpointOf(epoch).call().await.unwrap().status }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    while status(0).await != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the watcher did not revoke the forged root; see target/test-logs/watch-watcher.log"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert_eq!(distributor.rootOf(0).call().await.unwrap(), B256::ZERO);
    advance_time(&owner, CHALLENGE_WINDOW_SECONDS + 1)
        .await
        .unwrap();
    assert!(
        owner
            .transact("steal after the window", at, &steal)
            .await
            .is_err(),
        "a revoked root pays nothing, ever"
    );

    // The scorer posts epoch 0 again from its recomputation; the watcher finds it right.
    let (ok, out) = run_chorus(
        &kafka,
        &[&["score", "--epoch", "0", "--allow-open"][..], &poi[..]].concat(),
    );
    assert!(ok && out.contains("checkpoint tx 0x"), "{out}");
    let metric = |name: &str| -> u64 {
        let (_, body) = http_get(metrics_port, "/metrics").unwrap_or_default();
        body.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    while metric("chorus_poi_watch_roots_total{outcome=\"ok\"}") < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the watcher did not check the right root"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert_eq!(
        metric("chorus_poi_watch_roots_total{outcome=\"revoked\"}"),
        1
    );
    assert_eq!(status(0).await, 1, "the right root stays");
    let recorded = distributor.checkpointOf(0).call().await.unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &std::fs::read(repo_root().join(format!(
            "target/test-logs/{}poi/epoch-0/claims.json",
            kafka.topic_prefix
        )))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        format!("{:#x}", recorded.root),
        claims["root"].as_str().unwrap(),
        "epoch 0 now holds the recomputed root"
    );
    let recomputed_total: U256 = claims["claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| U256::from_str_radix(c["cumulative_amount"].as_str().unwrap(), 10).unwrap())
        .sum();
    assert_eq!(
        recorded.cumulativeTotal, recomputed_total,
        "the revoked root's total no longer counts"
    );

    // Pending, then claimable after the window: claims pay exactly the recorded scores.
    let token = chorus_chain::contracts::ChorusToken::new(deployment.token, owner.provider());
    let user = chorus_scoring::synthetic::user_address(3);
    let (ok, out) = run_chorus(&kafka, &["proof", "--epoch", "0", "--account", &user]);
    assert!(ok, "{out}");
    let proof: serde_json::Value = chorus_integration_tests::poi::first_json(&out);
    let account: Address = proof["account"].as_str().unwrap().parse().unwrap();
    let call = PoiDistributor::claimCall {
        epoch: 0,
        account,
        cumulativeAmount: U256::from_str_radix(proof["cumulative_amount"].as_str().unwrap(), 10)
            .unwrap(),
        proof: proof["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().parse().unwrap())
            .collect(),
    };
    assert!(owner.transact("early claim", at, &call).await.is_err());
    advance_time(&owner, CHALLENGE_WINDOW_SECONDS + 1)
        .await
        .unwrap();
    let before = token.balanceOf(account).call().await.unwrap();
    owner.transact("claim", at, &call).await.unwrap();
    assert_eq!(
        token.balanceOf(account).call().await.unwrap() - before,
        call.cumulativeAmount
    );
    assert!(call.cumulativeAmount > U256::ZERO);
    assert_eq!(
        distributor.totalClaimed().call().await.unwrap(),
        call.cumulativeAmount
    );
    for child in [&mut watcher, &mut indexer] {
        terminate(child, std::time::Duration::from_secs(30)).unwrap();
    }
}
