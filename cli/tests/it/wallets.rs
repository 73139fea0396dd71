#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Signed as an outsider would: viem (npm), not alloy, signs every request below from
//! the EIP-712 types `docs/security.md` publishes (`tests/wallets/sign_typed.mjs`); the
//! real ingest API on the real broker decides.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};

use chorus_integration_tests::ingest::{
    TEST_CHAIN_ID, TEST_VERIFYING_CONTRACT, post, seed_conversation, start_ingest,
};
use chorus_integration_tests::*;
use chorus_schemas::*;

const KEY: &str = "wallet-app-key";

/// Signs each (private key, chain id, verifying contract, primary type, message) with
/// viem; the 65-byte hex signatures in order.
fn viem_sign(requests: &[(&PrivateKeySigner, u64, &str, &str, Value)]) -> Vec<String> {
    let script = chorus_home().join("npm/sign_typed.mjs");
    std::fs::copy(repo_root().join("tests/wallets/sign_typed.mjs"), &script).unwrap();
    let input: Vec<Value> = requests
        .iter()
        .map(|(signer, chain_id, contract, primary, message)| {
            json!({
                "key": alloy::hex::encode_prefixed(signer.to_bytes()),
                "chainId": chain_id, "verifyingContract": contract,
                "primaryType": primary, "message": message,
            })
        })
        .collect();
    let mut child = Command::new("node")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs (infra/scripts/install.sh installs viem)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(Value::Array(input).to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "viem failed");
    serde_json::from_slice(&output.stdout).unwrap()
}

fn ours(signer: &PrivateKeySigner, primary: &str, message: Value) -> String {
    viem_sign(&[(
        signer,
        TEST_CHAIN_ID,
        TEST_VERIFYING_CONTRACT,
        primary,
        message,
    )])
    .remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_library_signatures_messages_session_keys_and_ratings_end_to_end() {
    let kafka = test_kafka("wallets");
    create_topics(&kafka).await.unwrap();
    let wallet = PrivateKeySigner::random();
    let app_key = PrivateKeySigner::random();
    let conversation = "wallets";
    seed_conversation(&kafka, conversation, wallet.address(), &[]).await;
    let keys = format!("app:{KEY}:chat:write+feedback:write");
    let (mut ingest, port) = start_ingest(&kafka, "ingest-wallets", &keys, &[], &[]);
    let now = chrono::Utc::now().timestamp();
    let author = wallet.address().to_string();
    let path = format!("/v1/conversations/{conversation}/messages");
    let typed_message = |content: &str| {
        json!({"author": author, "conversationId": conversation, "content": content,
               "mentions": [], "replyTo": "", "timestamp": now})
    };
    let body = |content: &str, signature: &str| json!({"author": author, "content": content, "timestamp": now, "signature": signature});

    // An EIP-712 chat message signed by the wallet.
    let signature = ours(&wallet, "ChatMessage", typed_message("hello from viem"));
    let (status, first) = post(port, &path, KEY, &body("hello from viem", &signature));
    assert_eq!(status, 202, "{first}");
    // Respelled (upper case, no 0x; v as 0/1): the same request, the same id.
    let mut bytes = alloy::hex::decode(&signature).unwrap();
    bytes[64] -= 27;
    for spelling in [
        signature.trim_start_matches("0x").to_uppercase(),
        alloy::hex::encode_prefixed(&bytes),
    ] {
        let (status, again) = post(port, &path, KEY, &body("hello from viem", &spelling));
        assert_eq!(
            (status, &again["event_id"]),
            (202, &first["event_id"]),
            "{spelling}"
        );
    }

    // Made for chain 1, or for another deployment on this chain: refused.
    let other_chain = viem_sign(&[(
        &wallet,
        1,
        TEST_VERIFYING_CONTRACT,
        "ChatMessage",
        typed_message("wrong chain"),
    )])
    .remove(0);
    let (status, answer) = post(port, &path, KEY, &body("wrong chain", &other_chain));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (403, Some("wrong_signer")),
        "{answer}"
    );
    let other_deployment = viem_sign(&[(
        &wallet,
        TEST_CHAIN_ID,
        "0x000000000000000000000000000000000000dead",
        "ChatMessage",
        typed_message("wrong deployment"),
    )])
    .remove(0);
    let (status, answer) = post(
        port,
        &path,
        KEY,
        &body("wrong deployment", &other_deployment),
    );
    assert_eq!(status, 403, "{answer}");

    // The wallet grants the app key chat messages and ratings for an hour.
    let expires_at = now + 3600;
    let scopes = ["chat.message", "feedback"];
    let grant = ours(
        &wallet,
        "SessionGrant",
        json!({"wallet": author, "sessionKey": app_key.address().to_string(), "scopes": scopes,
               "expiresAt": expires_at, "timestamp": now}),
    );
    let (status, answer) = post(
        port,
        "/v1/sessions",
        KEY,
        &json!({"wallet": author, "session_key": app_key.address().to_string(), "scopes": scopes,
                "expires_at": expires_at, "timestamp": now, "signature": grant}),
    );
    assert_eq!(status, 202, "{answer}");
    // A message the app key signs is the wallet's.
    let by_key = ours(
        &app_key,
        "ChatMessage",
        typed_message("sent by the app key"),
    );
    let (status, second) = post(port, &path, KEY, &body("sent by the app key", &by_key));
    assert_eq!(status, 202, "{second}");
    let message_id = first["event_id"].as_str().unwrap().to_owned();
    // A rating by the app key, for the wallet.
    let typed_rating = json!({"account": author, "conversationId": conversation, "messageId": message_id,
                              "rating": 5, "comment": "", "timestamp": now});
    let rating_signature = ours(&app_key, "Feedback", typed_rating);
    let rating = json!({"conversation_id": conversation, "message_id": message_id, "account": author,
                        "rating": 5, "timestamp": now, "signature": rating_signature});
    let (status, answer) = post(port, "/v1/feedback", KEY, &rating);
    assert_eq!(status, 202, "{answer}");
    // The rating's signature presented as a chat message: another type, refused.
    let (status, answer) = post(
        port,
        &path,
        KEY,
        &body("sent by the app key", &rating_signature),
    );
    assert_eq!(status, 403, "{answer}");

    // The wallet revokes the key: what it signs from then on is refused.
    let revoke = ours(
        &wallet,
        "SessionRevoke",
        json!({"wallet": author, "sessionKey": app_key.address().to_string(), "timestamp": now + 1}),
    );
    let (status, answer) = post(
        port,
        "/v1/sessions/revoke",
        KEY,
        &json!({"wallet": author, "session_key": app_key.address().to_string(),
                "timestamp": now + 1, "signature": revoke}),
    );
    assert_eq!(status, 202, "{answer}");
    let after = ours(
        &app_key,
        "ChatMessage",
        typed_message("after the revocation"),
    );
    let (status, answer) = post(port, &path, KEY, &body("after the revocation", &after));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (403, Some("session_key")),
        "{answer}"
    );
    // Replaying the old grant does not revive the key.
    let (status, _) = post(
        port,
        "/v1/sessions",
        KEY,
        &json!({"wallet": author, "session_key": app_key.address().to_string(), "scopes": scopes,
                "expires_at": expires_at, "timestamp": now, "signature": grant}),
    );
    assert_eq!(status, 202, "the same grant again is the same request");
    let (status, _) = post(port, &path, KEY, &body("after the revocation", &after));
    assert_eq!(status, 403, "a replayed grant does not undo the revocation");
    terminate(&mut ingest, Duration::from_secs(30)).unwrap();

    // In the log: two messages, both the wallet's; one rating, the wallet's.
    let messages: BTreeSet<(String, String)> = read_all(&kafka, &kafka.topic(Topic::ChatMessages))
        .unwrap()
        .iter()
        .filter_map(|r| Envelope::<ChatMessage>::from_json(&r.payload).ok())
        .map(|m| (m.id.to_string(), m.data.author_id))
        .collect();
    let wallet_lower = author.to_lowercase();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages.iter().all(|(_, a)| *a == wallet_lower),
        "{messages:?}"
    );
    let ratings: Vec<Feedback> = read_all(&kafka, &kafka.topic(Topic::Feedback))
        .unwrap()
        .iter()
        .filter_map(|r| Envelope::<Feedback>::from_json(&r.payload).ok())
        .map(|e| e.data)
        .collect();
    assert_eq!(ratings.len(), 1);
    assert_eq!(ratings[0].account, wallet_lower);
}
