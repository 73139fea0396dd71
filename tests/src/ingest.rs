//! Driving the ingest API as a client does: EIP-191 signed bodies, API keys, and
//! `chorus ingest` started on a chosen or free port.

use std::process::Child;
use std::time::Duration;

use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use chorus_runtime::kafka::KafkaArgs;
use serde_json::{Value, json};

use crate::{RoleCommand, free_port, http_get, http_request, spawn_role_with_env, wait_for};

/// Adds `timestamp` and the EIP-191 `signature` of `chorus:<action>\n<body>` to `body`.
pub fn sign(signer: &PrivateKeySigner, action: &str, mut body: Value) -> Value {
    body["timestamp"] = json!(chrono::Utc::now().timestamp());
    let mut unsigned = body.clone();
    unsigned.as_object_mut().unwrap().remove("signature");
    let message = format!("chorus:{action}\n{unsigned}");
    body["signature"] = json!(
        signer
            .sign_message_sync(message.as_bytes())
            .unwrap()
            .to_string()
    );
    body
}

/// POSTs JSON with an API key; returns the status and the JSON (or text) answer.
pub fn post(port: u16, path: &str, key: &str, body: &Value) -> (u16, Value) {
    try_post(port, path, key, body).unwrap()
}

/// Like [`post`], but a connection failure is an error instead of a panic.
pub fn try_post(port: u16, path: &str, key: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    let auth = format!("Bearer {key}");
    let (status, text) = http_request(
        port,
        "POST",
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// Starts `chorus ingest` on a free port with `keys` (and `extra` flags and env) and
/// waits until it answers; returns the process and its port.
pub fn start_ingest(
    kafka: &KafkaArgs,
    log_name: &str,
    keys: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Child, u16) {
    let port = free_port();
    (
        start_ingest_on(kafka, log_name, keys, port, extra, env),
        port,
    )
}

/// Starts `chorus ingest` on `port` (e.g. again after a kill) and waits until it answers.
pub fn start_ingest_on(
    kafka: &KafkaArgs,
    log_name: &str,
    keys: &str,
    port: u16,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Child {
    let listen = format!("127.0.0.1:{port}");
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let role = RoleCommand::new(&["ingest"])
        .metrics_addr(&metrics_addr)
        .flag("--listen", &listen)
        .args(extra);
    let mut all_env = vec![("CHORUS_API_KEYS", keys)];
    all_env.extend_from_slice(env);
    let ingest = spawn_role_with_env(kafka, log_name, &role, &all_env).unwrap();
    wait_for("ingest API", Duration::from_secs(60), || {
        http_get(port, "/openapi.json")
            .map(|(s, _)| s == 200)
            .unwrap_or(false)
    })
    .unwrap();
    ingest
}
