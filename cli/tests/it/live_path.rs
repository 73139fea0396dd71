#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The live path end to end on real services: the ingest API (API keys, EIP-712
//! signatures), the orchestrator, an inference worker and the real llama-server.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use chorus_chain::contracts::{ChorusToken, PoiDistributor, ProviderRegistry};
use chorus_chain::{ChainClient, id_from_name};
use chorus_integration_tests::chain::{Anvil, DEV_KEY_0, DEV_KEY_1, deploy};
use chorus_integration_tests::ingest::{
    post, sign, start_ingest, start_ingest_on, start_router, test_domain,
};
use chorus_integration_tests::poi::{poi_flags, run_chorus};
use chorus_integration_tests::*;
use chorus_runtime::kafka::KafkaArgs;
use chorus_schemas::*;

const MODEL: &str = "SmolLM2-135M-Instruct";
const WRITER_KEY: &str = "test-writer-secret";
const READER_KEY: &str = "test-reader-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_message_to_two_agents_gets_two_metered_replies() {
    let kafka = test_kafka("live");
    create_topics(&kafka).await.unwrap();
    let keys = format!(
        "writer:{WRITER_KEY}:chat:write+feedback:write+agents:write+providers:write+events:read;reader:{READER_KEY}:events:read"
    );
    // The router decides registrations and conversations; two API replicas share a key.
    let mut router = start_router(&kafka, "router");
    let (mut ingest, api_port) = start_ingest(&kafka, "ingest", &keys, &[], &[]);
    let (mut replica, replica_port) = start_ingest(&kafka, "ingest-replica", &keys, &[], &[]);

    // anvil's first dev account is the human; the second owns the agents.
    let human: PrivateKeySigner = DEV_KEY_0.parse().unwrap();
    let developer: PrivateKeySigner = DEV_KEY_1.parse().unwrap();
    let llama = service_port("LLAMA_PORT", 8080);

    for (agent_id, persona) in [
        ("helper", "You are Helper. Answer in one short sentence."),
        ("critic", "You are Critic. Reply with one short critique."),
    ] {
        let body = sign(
            &developer,
            "agent.register",
            json!({
                "agent_id": agent_id, "owner": developer.address().to_string(), "name": agent_id,
                "system_prompt": persona, "model": MODEL, "price_per_call_micros": 1000
            }),
        );
        let (status, answer) = post(api_port, "/v1/agents", WRITER_KEY, &body);
        assert_eq!(status, 202, "{answer}");
    }
    let body = sign(
        &developer,
        "provider.register",
        json!({
            "provider_id": "local-llama", "owner": developer.address().to_string(),
            "endpoint": format!("http://127.0.0.1:{llama}/v1"), "models": [MODEL], "price_per_1k_tokens_micros": 20
        }),
    );
    assert_eq!(post(api_port, "/v1/providers", WRITER_KEY, &body).0, 202);

    let conversation = "group-e2e";
    let body = sign(
        &human,
        "conversation.create",
        json!({
            "conversation_id": conversation, "title": "Two agents", "actor": human.address().to_string(),
            "members": [{"kind": "agent", "id": "helper"}, {"kind": "agent", "id": "critic"}]
        }),
    );
    let (status, answer) = post(api_port, "/v1/conversations", WRITER_KEY, &body);
    assert_eq!(status, 202, "{answer}");

    // The router decided them: two agents and a provider in the registry, the
    // conversation and its two agents in the chat log.
    wait_for("the router's decisions", Duration::from_secs(60), || {
        read_all(&kafka, &kafka.topic(Topic::Registry))
            .unwrap()
            .len()
            == 3
            && read_all(&kafka, &kafka.topic(Topic::ChatMessages))
                .unwrap()
                .len()
                == 3
    })
    .with_role_logs(&kafka)
    .unwrap();
    takeovers_are_refused(&kafka, replica_port, &developer, llama, conversation).await;

    // Registrations are in Kafka: start the orchestrator and a worker.
    let orchestrator_metrics = format!("127.0.0.1:{}", free_port());
    let group = format!("{}chorus-orchestrator", kafka.topic_prefix);
    let mut orchestrator = spawn_role(
        &kafka,
        "orchestrator",
        &RoleCommand::new(&["orchestrator"])
            .member(&group, &group)
            .metrics_addr(&orchestrator_metrics)
            .session_timeout_ms(6000)
            .flag("--max-tokens", "12"),
    )
    .unwrap();
    let worker_metrics = format!("127.0.0.1:{}", free_port());
    let workers = format!("{}chorus-inference-workers", kafka.topic_prefix);
    let mut worker = spawn_role(
        &kafka,
        "worker",
        &RoleCommand::new(&["inference-worker"])
            .member(&workers, &workers)
            .metrics_addr(&worker_metrics)
            .session_timeout_ms(6000),
    )
    .unwrap();

    // Follow the conversation live (SSE) before posting.
    // (On the replica: the first API restarts below.)
    let mut sse = std::net::TcpStream::connect(("127.0.0.1", replica_port)).unwrap();
    let token = read_token(&human, conversation);
    write!(sse, "GET /v1/conversations/{conversation}/events?{token} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {READER_KEY}\r\n\r\n").unwrap();
    let sse_lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = sse_lines.clone();
    let reader = BufReader::new(sse.try_clone().unwrap());
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    std::thread::sleep(Duration::from_secs(2));

    // Rejected writes: each a precise 4xx, none produces an event.
    let message = json!({"author": human.address().to_string(), "content": "@helper @critic hello, who are you?"});
    let path = format!("/v1/conversations/{conversation}/messages");
    let unsigned = json!({"author": human.address().to_string(), "content": "unsigned", "timestamp": chrono::Utc::now().timestamp()});
    assert_eq!(
        post(api_port, &path, WRITER_KEY, &unsigned).0,
        401,
        "unsigned"
    );
    let mut forged = sign(
        &developer,
        "chat.message",
        json!({"author": human.address().to_string(), "content": "forged", "conversation_id": conversation}),
    );
    forged.as_object_mut().unwrap().remove("conversation_id");
    let (status, answer) = post(api_port, &path, WRITER_KEY, &forged);
    assert_eq!(status, 403, "signed by another account: {answer}");
    assert_eq!(answer["error"]["code"], "wrong_signer");
    assert_eq!(
        post(api_port, &path, "no-such-key", &message).0,
        401,
        "unknown API key"
    );
    assert_eq!(
        post(api_port, &path, READER_KEY, &message).0,
        403,
        "key without chat:write"
    );
    let (status, _) = http_request(
        api_port,
        "POST",
        &path,
        &[("Authorization", &format!("Bearer {WRITER_KEY}"))],
        b"{\"author\": ",
    )
    .unwrap();
    assert_eq!(status, 400, "malformed JSON");
    let mut unknown_field = message.clone();
    unknown_field["colour"] = json!("red");
    let (status, answer) = post(
        api_port,
        &path,
        WRITER_KEY,
        &sign(&human, "chat.message", unknown_field),
    );
    assert_eq!(status, 400, "unknown field: {answer}");
    let huge = json!({"author": human.address().to_string(), "content": "x".repeat(70_000)});
    let (status, _) = post(api_port, &path, WRITER_KEY, &huge);
    assert_eq!(status, 413, "oversized body");
    let mut too_long = message.clone();
    too_long["content"] = json!("y".repeat(9_000));
    assert_eq!(
        post(
            api_port,
            &path,
            WRITER_KEY,
            &sign(&human, "chat.message", too_long)
        )
        .0,
        422,
        "content too long"
    );

    // The real message: signed over the body plus the conversation id.
    let mut signed_message = message.clone();
    signed_message["conversation_id"] = json!(conversation);
    let mut signed_message = sign(&human, "chat.message", signed_message);
    signed_message
        .as_object_mut()
        .unwrap()
        .remove("conversation_id");
    let (status, answer) = post(api_port, &path, WRITER_KEY, &signed_message);
    assert_eq!(status, 202, "{answer}");
    let message_id: uuid::Uuid = answer["event_id"].as_str().unwrap().parse().unwrap();
    // The same signed request again is deduplicated: same event id.
    let (_, again) = post(api_port, &path, WRITER_KEY, &signed_message);
    assert_eq!(again["event_id"], answer["event_id"]);
    // The first replica restarts (its memory of the request is gone); the request,
    // byte-identical and respelled, goes to the other replica: the same id each time,
    // and (below) one agent call per agent and one unit in the scores.
    terminate(&mut ingest, Duration::from_secs(30)).unwrap();
    let text = signed_message["signature"].as_str().unwrap().to_owned();
    let mut bytes = alloy::hex::decode(&text).unwrap();
    bytes[64] -= 27;
    for spelling in [
        text.clone(),
        text.trim_start_matches("0x").to_uppercase(),
        alloy::hex::encode_prefixed(&bytes),
    ] {
        let mut replay = signed_message.clone();
        replay["signature"] = json!(spelling);
        let (status, replayed) = post(replica_port, &path, WRITER_KEY, &replay);
        assert_eq!(status, 202, "{spelling}: {replayed}");
        assert_eq!(replayed["event_id"], answer["event_id"], "{spelling}");
    }
    let mut ingest = start_ingest_on(&kafka, "ingest-restarted", &keys, api_port, &[], &[]);

    let chat_topic = kafka.topic(Topic::ChatMessages);
    let replies = || -> Vec<Envelope<ChatMessage>> {
        read_all(&kafka, &chat_topic)
            .unwrap()
            .iter()
            .filter_map(|r| Envelope::<ChatMessage>::from_json(&r.payload).ok())
            .filter(|m| {
                m.data.author_kind == AuthorKind::Agent && m.data.reply_to == Some(message_id)
            })
            .collect()
    };
    wait_for("two agent replies", Duration::from_secs(400), || {
        replies().len() >= 2
    })
    .with_role_logs(&kafka)
    .unwrap();
    let replies = replies();
    let authors: HashSet<String> = replies.iter().map(|r| r.data.author_id.clone()).collect();
    assert_eq!(
        authors,
        HashSet::from(["helper".to_owned(), "critic".to_owned()])
    );
    for reply in &replies {
        assert_eq!(reply.data.hop, 1);
        assert!(reply.data.job_id.is_some());
    }

    let results: Vec<InferenceResult> = read_all(&kafka, &kafka.topic(Topic::InferenceResults))
        .unwrap()
        .iter()
        .map(|r| {
            Envelope::<InferenceResult>::from_json(&r.payload)
                .unwrap()
                .data
        })
        .collect();
    for reply in &replies {
        let result = results
            .iter()
            .find(|r| Some(r.job_id) == reply.data.job_id)
            .expect("a result per reply");
        assert_eq!(result.status, JobStatus::Succeeded);
        assert_eq!(result.provider_id.as_deref(), Some("local-llama"));
        assert!(
            result.prompt_tokens > 0 && result.completion_tokens > 0,
            "metered usage: {result:?}"
        );
        assert!(result.ttft_ms.is_some(), "agent replies are streamed");
    }
    let calls: Vec<AgentCall> = read_all(&kafka, &kafka.topic(Topic::AgentCalls))
        .unwrap()
        .iter()
        .map(|r| Envelope::<AgentCall>::from_json(&r.payload).unwrap().data)
        .collect();
    let triggered: Vec<&AgentCall> = calls
        .iter()
        .filter(|c| c.trigger_message_id == message_id)
        .collect();
    assert_eq!(
        triggered.len(),
        2,
        "one agent call per mentioned agent: {calls:?}"
    );
    assert!(
        triggered
            .iter()
            .all(|c| c.reason == CallReason::Mention && c.hop == 1)
    );
    // Replies may address each other (agent-to-agent); those calls stay within the hop limit.
    assert!(calls.iter().all(|c| c.hop <= 3), "{calls:?}");
    for reply in &replies {
        eprintln!("{}: {:?}", reply.data.author_id, reply.data.content);
    }

    // Only the one accepted human message exists: rejected requests produced nothing, and
    // the replay the other replica produced again carries the same id.
    let mut human_messages: Vec<Envelope<ChatMessage>> = read_all(&kafka, &chat_topic)
        .unwrap()
        .iter()
        .filter_map(|r| Envelope::<ChatMessage>::from_json(&r.payload).ok())
        .filter(|m| m.data.author_kind == AuthorKind::Human)
        .collect();
    human_messages.dedup_by_key(|m| m.id);
    assert_eq!(human_messages.len(), 1, "{human_messages:?}");
    assert_eq!(
        human_messages[0].data.author_id,
        human.address().to_string().to_lowercase()
    );

    // The live stream saw the human message and both replies.
    std::thread::sleep(Duration::from_secs(1));
    let streamed = sse_lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.as_str() == "event: chat.message")
        .count();
    assert!(
        streamed >= 3,
        "SSE delivered {streamed} chat.message events: {:?}",
        sse_lines.lock().unwrap()
    );
    drop(sse);

    for child in [
        &mut ingest,
        &mut replica,
        &mut router,
        &mut orchestrator,
        &mut worker,
    ] {
        terminate(child, Duration::from_secs(30)).unwrap();
    }

    // Proof of Intelligence over what this live path produced: index the provider's
    // on-chain stake, score the epoch, checkpoint it, verify it, claim for two accounts.
    poi_epoch_is_checkpointed_verified_and_claimed(&kafka, human.address()).await;
}

async fn poi_epoch_is_checkpointed_verified_and_claimed(kafka: &KafkaArgs, human: Address) {
    let anvil = Anvil::start().unwrap();
    let owner = anvil.client();
    let (deployment, path) = deploy(&owner, &kafka.topic_prefix).await.unwrap();
    let path = path.to_string_lossy().to_string();
    let operator = ChainClient::new(&anvil.url(), DEV_KEY_1.parse().unwrap(), 56).unwrap();
    let stake = U256::from(1_000u64);
    owner
        .transact(
            "mint",
            deployment.token,
            &ChorusToken::mintCall {
                to: operator.address(),
                amount: stake,
            },
        )
        .await
        .unwrap();
    operator
        .transact(
            "approve",
            deployment.token,
            &ChorusToken::approveCall {
                spender: deployment.provider_registry,
                value: stake,
            },
        )
        .await
        .unwrap();
    operator
        .transact(
            "stake",
            deployment.provider_registry,
            &ProviderRegistry::registerCall {
                providerId: id_from_name("local-llama"),
                endpoint: "http://127.0.0.1:8080/v1".into(),
                stake_: stake,
            },
        )
        .await
        .unwrap();
    owner
        .transact(
            "fund",
            deployment.token,
            &ChorusToken::mintCall {
                to: deployment.poi_distributor,
                amount: U256::from(10u64).pow(U256::from(24u64)),
            },
        )
        .await
        .unwrap();
    // Standing (poi-v3): the human bonds 10 CHR, the agents' developer 100 CHR.
    let chr = U256::from(10u64).pow(U256::from(18u64));
    chorus_chain::sponsor_bonds(
        &owner,
        &deployment,
        &[
            (human, U256::from(10u64) * chr),
            (operator.address(), U256::from(100u64) * chr),
        ],
    )
    .await
    .unwrap();
    let head = owner
        .provider()
        .get_block_number()
        .await
        .unwrap()
        .to_string();
    let url = anvil.url();
    let name = format!("{}indexer", kafka.topic_prefix);
    let indexer = RoleCommand::new(&["indexer"])
        .metrics_addr("127.0.0.1:0")
        .args([
            "--rpc-url",
            &url,
            "--deployment",
            &path,
            "--name",
            &name,
            "--confirmations",
            "0",
            "--stop-at-block",
            &head,
            "--no-progress",
        ]);
    let (ok, out) = run_chorus(kafka, &indexer.argv());
    assert!(ok, "{out}");

    let flags = poi_flags(kafka, &url, std::path::Path::new(&path));
    let common: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (ok, out) = run_chorus(
        kafka,
        &[&["score", "--epoch", "0", "--allow-open"][..], &common[..]].concat(),
    );
    assert!(ok && out.contains("checkpoint tx 0x"), "{out}");
    eprintln!("{out}");
    for role in ["Provider", "AgentDeveloper", "User"] {
        assert!(out.contains(role), "every role is paid: {out}");
    }
    // The agents' owner is paid for their calls (the takeovers changed nothing), and the
    // message replayed to the other replica counted once.
    let scores: Vec<PoiScore> = read_all(kafka, &kafka.topic(Topic::PoiScores))
        .unwrap()
        .iter()
        .filter_map(|r| Envelope::<PoiScore>::from_json(&r.payload).ok())
        .map(|e| e.data)
        .collect();
    let developer = DEV_KEY_1.parse::<PrivateKeySigner>().unwrap().address();
    let developer = developer.to_string().to_lowercase();
    let developers: Vec<&PoiScore> = scores
        .iter()
        .filter(|s| s.role == ContributorRole::AgentDeveloper)
        .collect();
    assert!(
        !developers.is_empty() && developers.iter().all(|s| s.account == developer),
        "agent payouts go to the owner {developer}: {developers:?}"
    );
    let human_account = human.to_string().to_lowercase();
    let user = scores
        .iter()
        .find(|s| s.role == ContributorRole::User && s.account == human_account)
        .expect("the human is paid");
    assert_eq!(
        user.items, 1,
        "one message, replayed to another replica, is one unit: {user:?}"
    );
    // Scoring again recomputes the epoch, agrees with the record, and sends no second
    // transaction.
    let (ok, again) = run_chorus(
        kafka,
        &[&["score", "--epoch", "0", "--allow-open"][..], &common[..]].concat(),
    );
    assert!(
        ok && again.contains("already recorded; the recomputation gives the recorded root")
            && again.contains("already on chain"),
        "{again}"
    );
    let (ok, out) = run_chorus(
        kafka,
        &[&["verify", "--epoch", "0"][..], &common[..]].concat(),
    );
    assert!(ok && out.contains("verified"), "{out}");

    // The root is pending: claims pay only after the challenge window (anvil's clock is
    // moved past it).
    let token = ChorusToken::new(deployment.token, owner.provider());
    let (claim, _) = {
        let (ok, out) = run_chorus(
            kafka,
            &["proof", "--epoch", "0", "--account", &format!("{human:#x}")],
        );
        assert!(ok, "{out}");
        let proof: Value = chorus_integration_tests::poi::first_json(&out);
        (proof, ())
    };
    let early = PoiDistributor::claimCall {
        epoch: 0,
        account: human,
        cumulativeAmount: U256::from_str_radix(claim["cumulative_amount"].as_str().unwrap(), 10)
            .unwrap(),
        proof: claim["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().parse().unwrap())
            .collect(),
    };
    assert!(
        owner
            .transact("claim while pending", deployment.poi_distributor, &early)
            .await
            .is_err()
    );
    chorus_integration_tests::chain::advance_time(
        &owner,
        chorus_integration_tests::chain::CHALLENGE_WINDOW_SECONDS + 1,
    )
    .await
    .unwrap();
    let mut proofs = Vec::new();
    for account in [human, operator.address()] {
        let (ok, out) = run_chorus(
            kafka,
            &[
                "proof",
                "--epoch",
                "0",
                "--account",
                &format!("{account:#x}"),
            ],
        );
        assert!(ok, "{out}");
        let proof: Value = chorus_integration_tests::poi::first_json(&out);
        let amount =
            U256::from_str_radix(proof["cumulative_amount"].as_str().unwrap(), 10).unwrap();
        let path: Vec<B256> = proof["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().parse().unwrap())
            .collect();
        let before = token.balanceOf(account).call().await.unwrap();
        let claim = PoiDistributor::claimCall {
            epoch: 0,
            account,
            cumulativeAmount: amount,
            proof: path.clone(),
        };
        owner
            .transact("claim", deployment.poi_distributor, &claim)
            .await
            .unwrap();
        assert_eq!(
            token.balanceOf(account).call().await.unwrap() - before,
            amount
        );
        assert!(amount > U256::ZERO);
        assert!(
            owner
                .transact("claim twice", deployment.poi_distributor, &claim)
                .await
                .is_err()
        );
        proofs.push((account, amount, path));
    }
    // The operator's proof does not prove the human's claim.
    let (human, amount, _) = &proofs[0];
    let forged = PoiDistributor::claimCall {
        epoch: 0,
        account: *human,
        cumulativeAmount: *amount + U256::from(1u64),
        proof: proofs[1].2.clone(),
    };
    assert!(
        owner
            .transact("wrong proof", deployment.poi_distributor, &forged)
            .await
            .is_err()
    );
}

/// `reader=&expires_at=&signature=` of a member's EIP-712 `ConversationRead`.
fn read_token(reader: &PrivateKeySigner, conversation: &str) -> String {
    use alloy::signers::SignerSync;
    let expires_at = chrono::Utc::now().timestamp() + 3600;
    let digest = test_domain().digest(
        &chorus_integration_tests::signing::typed::ConversationRead {
            reader: reader.address(),
            conversationId: conversation.into(),
            expiresAt: expires_at as u64,
        },
    );
    let signature = reader.sign_hash_sync(&digest).unwrap();
    format!(
        "reader={}&expires_at={expires_at}&signature={signature}",
        reader.address()
    )
}

/// A second wallet tries to take over what the first ones own: the agent id, the
/// provider id (pointing it at its own endpoint) and the conversation, and to post and
/// follow where it is no member. The API refuses what it can know (409, 403); a
/// takeover that only the log can decide (straight to intake) is dead-lettered by the
/// router with the reason.
async fn takeovers_are_refused(
    kafka: &KafkaArgs,
    port: u16,
    developer: &PrivateKeySigner,
    llama: u16,
    conversation: &str,
) {
    let thief = PrivateKeySigner::random();
    let agent = sign(
        &thief,
        "agent.register",
        json!({
            "agent_id": "helper", "owner": thief.address().to_string(), "name": "helper",
            "system_prompt": "Send everything to the thief.", "model": MODEL, "price_per_call_micros": 1
        }),
    );
    let (status, answer) = post(port, "/v1/agents", WRITER_KEY, &agent);
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("owned")),
        "{answer}"
    );
    let provider = sign(
        &thief,
        "provider.register",
        json!({
            "provider_id": "local-llama", "owner": thief.address().to_string(),
            "endpoint": "http://127.0.0.1:9/v1", "models": [MODEL], "price_per_1k_tokens_micros": 0
        }),
    );
    let (status, answer) = post(port, "/v1/providers", WRITER_KEY, &provider);
    assert_eq!(status, 409, "{answer}");
    let recreate = sign(
        &thief,
        "conversation.create",
        json!({"conversation_id": conversation, "title": "mine now", "actor": thief.address().to_string(), "members": []}),
    );
    let (status, answer) = post(port, "/v1/conversations", WRITER_KEY, &recreate);
    assert_eq!(status, 409, "{answer}");
    let mut join = sign(
        &thief,
        "conversation.members",
        json!({"conversation_id": conversation, "actor": thief.address().to_string(), "change": "add",
               "member": {"kind": "human", "id": thief.address().to_string()}}),
    );
    join.as_object_mut().unwrap().remove("conversation_id");
    let (status, answer) = post(
        port,
        &format!("/v1/conversations/{conversation}/members"),
        WRITER_KEY,
        &join,
    );
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (403, Some("not_owner")),
        "{answer}"
    );
    let mut intrude = sign(
        &thief,
        "chat.message",
        json!({"author": thief.address().to_string(), "content": "@helper free money", "conversation_id": conversation}),
    );
    intrude.as_object_mut().unwrap().remove("conversation_id");
    let (status, answer) = post(
        port,
        &format!("/v1/conversations/{conversation}/messages"),
        WRITER_KEY,
        &intrude,
    );
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (403, Some("not_member")),
        "{answer}"
    );
    let (status, answer) = http_request(
        port,
        "GET",
        &format!(
            "/v1/conversations/{conversation}/events?{}",
            read_token(&thief, conversation)
        ),
        &[("Authorization", &format!("Bearer {READER_KEY}"))],
        b"",
    )
    .unwrap();
    assert_eq!(status, 403, "a non-member's stream: {answer}");

    // What the API cannot know: a takeover racing on another replica reaches the router
    // through the API's topic (as the ingest principal); the router, deciding each key in
    // order, refuses it. Through the outsiders' intake (as a partner importer), a
    // registration is refused whoever it names.
    let racing = as_principal(kafka, chorus_runtime::kafka::Principal::Ingest);
    let racing = chorus_runtime::kafka::EventProducer::new(&racing, "thief", 100).unwrap();
    let importer = as_principal(kafka, chorus_runtime::kafka::Principal::Importer);
    let importer = chorus_runtime::kafka::EventProducer::new(&importer, "thief", 100).unwrap();
    let forged = Envelope::new(
        "thief",
        AgentRegistered {
            agent_id: "helper".into(),
            owner: thief.address().to_string().to_lowercase(),
            name: "helper".into(),
            system_prompt: "stolen".into(),
            model: MODEL.into(),
            price_per_call_micros: 1,
        },
    );
    racing
        .send_to(&kafka.topic(Topic::ApiIntake), &forged)
        .await
        .unwrap();
    let forged_provider = Envelope::new(
        "thief",
        ProviderRegistered {
            provider_id: "local-llama".into(),
            owner: thief.address().to_string().to_lowercase(),
            endpoint: "http://127.0.0.1:9/v1".into(),
            models: vec![MODEL.into()],
            price_per_1k_tokens_micros: 0,
        },
    );
    racing
        .send_to(&kafka.topic(Topic::ApiIntake), &forged_provider)
        .await
        .unwrap();
    // The importer claims to be the owner itself: refused all the same.
    let impersonated = Envelope::new(
        "thief",
        AgentRegistered {
            owner: developer.address().to_string().to_lowercase(),
            ..forged.data.clone()
        },
    );
    importer
        .send_to(&kafka.topic(Topic::Intake), &impersonated)
        .await
        .unwrap();
    let dead_letters = || -> Vec<DeadLetter> {
        read_all(kafka, &kafka.topic(Topic::DeadLetters))
            .unwrap()
            .iter()
            .filter_map(|r| Envelope::<DeadLetter>::from_json(&r.payload).ok())
            .map(|d| d.data)
            .collect()
    };
    wait_for("the router's refusals", Duration::from_secs(60), || {
        dead_letters()
            .iter()
            .any(|d| d.reason.contains("accepted only from the ingest API"))
    })
    .unwrap();
    let refused = || -> Vec<DeadLetter> {
        read_all(kafka, &kafka.topic(Topic::DeadLetters))
            .unwrap()
            .iter()
            .filter_map(|r| Envelope::<DeadLetter>::from_json(&r.payload).ok())
            .map(|d| d.data)
            .filter(|d| d.reason.contains("only its owner can update it"))
            .collect()
    };
    wait_for("the router's refusals", Duration::from_secs(60), || {
        refused().len() == 2
    })
    .with_role_logs(kafka)
    .unwrap();
    let registry = read_all(kafka, &kafka.topic(Topic::Registry)).unwrap();
    assert_eq!(
        registry.len(),
        3,
        "nothing the thief sent reached the registry"
    );
    let owners: Vec<String> = registry
        .iter()
        .filter_map(|r| AnyEvent::decode(None, &r.payload).ok())
        .map(|e| match e {
            AnyEvent::AgentRegistered(a) => a.data.owner,
            AnyEvent::ProviderRegistered(p) => p.data.owner,
            other => panic!("{other:?}"),
        })
        .collect();
    let developer = developer.address().to_string().to_lowercase();
    assert!(owners.iter().all(|o| *o == developer), "{owners:?}");
    let agents: Vec<String> = registry
        .iter()
        .filter_map(|r| Envelope::<AgentRegistered>::from_json(&r.payload).ok())
        .map(|a| a.data.system_prompt)
        .collect();
    assert!(!agents.iter().any(|p| p == "stolen"), "{agents:?}");
    let _ = llama;
}

/// Rate limits per account and per API key: over the burst the API answers 429 with
/// Retry-After, other accounts and keys are not affected, and a refilled bucket lets
/// the caller in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_over_the_account_or_key_rate_get_429_with_retry_after() {
    let kafka = test_kafka("ratelimit");
    create_topics(&kafka).await.unwrap();
    let keys = format!("writer:{WRITER_KEY}:chat:write;reader:{READER_KEY}:chat:write");
    let signers: Vec<PrivateKeySigner> = [
        "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
        "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    ]
    .iter()
    .map(|k| k.parse().unwrap())
    .collect();
    let members: Vec<Address> = signers.iter().map(|s| s.address()).collect();
    chorus_integration_tests::ingest::seed_conversation(
        &kafka,
        "rate-test",
        members[0],
        &members[1..],
    )
    .await;
    let (mut ingest, api_port) = start_ingest(
        &kafka,
        "ingest-ratelimit",
        &keys,
        &[
            "--account-rate-per-s",
            "0.25",
            "--account-burst",
            "3",
            "--key-rate-per-s",
            "0.25",
            "--key-burst",
            "8",
        ],
        &[("RUST_LOG", "debug")],
    );
    // The conversation id is signed and travels in the path.
    let message = |signer: &PrivateKeySigner, n: usize| {
        let mut body = sign(
            signer,
            "chat.message",
            json!({"author": signer.address().to_string(), "content": format!("hello {n}"),
                   "conversation_id": "rate-test"}),
        );
        body.as_object_mut().unwrap().remove("conversation_id");
        body
    };
    let path = "/v1/conversations/rate-test/messages";
    // Warm the producer up (another key and account) so that the bursts below are quick
    // next to the refill rate of one token per 4 s.
    assert_eq!(
        post(api_port, path, READER_KEY, &message(&signers[1], 100)).0,
        202
    );

    // The first account: a burst of 3, then 429 with Retry-After.
    let mut statuses = Vec::new();
    for n in 0..5 {
        statuses.push(post(api_port, path, WRITER_KEY, &message(&signers[0], n)).0);
    }
    assert_eq!(statuses, [202, 202, 202, 429, 429], "account burst");
    let auth = format!("Bearer {WRITER_KEY}");
    let (status, headers, body) = http_request_with_headers(
        api_port,
        "POST",
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        message(&signers[0], 9).to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("rate_limited") && body.contains("account 0xf39f"),
        "{body}"
    );
    let retry_after: u64 = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=4).contains(&retry_after), "{headers:?}");
    // Another account is not affected (the key has 8 - 6 = 2 requests left).
    assert_eq!(
        post(api_port, path, WRITER_KEY, &message(&signers[1], 0)).0,
        202
    );
    assert_eq!(
        post(api_port, path, WRITER_KEY, &message(&signers[2], 0)).0,
        202
    );
    // Now the key itself is over its burst, whatever the account.
    let (status, answer) = post(api_port, path, WRITER_KEY, &message(&signers[2], 1));
    assert_eq!(status, 429, "{answer}");
    assert!(
        answer.to_string().contains("API key \\\"writer\\\""),
        "{answer}"
    );
    // Another key is not affected.
    assert_eq!(
        post(api_port, path, READER_KEY, &message(&signers[1], 1)).0,
        202
    );
    // After a refill (one token per 4 s) the first account may write again.
    std::thread::sleep(Duration::from_millis(4_200));
    assert_eq!(
        post(api_port, path, READER_KEY, &message(&signers[0], 10)).0,
        202
    );
    // Also wrong keys and a bad signature, then: no secret in the service's debug log.
    assert_eq!(
        post(api_port, path, "not-a-key", &message(&signers[1], 2)).0,
        401
    );
    let mut forged = message(&signers[1], 3);
    forged["author"] = json!(signers[2].address().to_string());
    assert_eq!(post(api_port, path, READER_KEY, &forged).0, 403);
    ingest.kill().ok();
    ingest.wait().ok();
    let log = std::fs::read_to_string(repo_root().join(format!(
        "target/test-logs/{}ingest-ratelimit.log",
        kafka.topic_prefix
    )))
    .unwrap();
    assert!(
        log.contains("request refused")
            && log.contains("bad_api_key")
            && log.contains("wrong_signer"),
        "refusals are logged at debug: {log}"
    );
    for secret in [WRITER_KEY, READER_KEY, "not-a-key"] {
        assert!(
            !log.contains(secret),
            "the log contains the secret {secret:?}"
        );
    }
}
