//! One call to an OpenAI-compatible provider, and what its failures mean.

use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{CreateChatCompletionRequest, CreateChatCompletionResponse};
use async_openai::types::embeddings::{CreateEmbeddingRequest, CreateEmbeddingResponse};
use futures::StreamExt;
use serde_json::json;

use chorus_schemas::{FailureKind, InferenceJob, JobKind};

/// What a successful call produced.
#[derive(Debug, Clone, PartialEq)]
pub struct CallOutput {
    pub content: Option<String>,
    pub embedding_dims: Option<u32>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub ttft: Option<Duration>,
    pub elapsed: Duration,
}

/// Tokens a chat template may add per turn (role markers, separators) and per request.
pub const TEMPLATE_TOKENS_PER_TURN: u32 = 8;
pub const TEMPLATE_TOKENS_PER_REQUEST: u32 = 8;

/// Token counts as Chorus meters them: the provider reports its own `usage`, and is
/// believed only up to what the worker can check. A token of a byte-level tokenizer is
/// at least one byte of text, so the prompt counts at most its bytes plus the chat
/// template's markers, and the completion at most the bytes received plus the
/// end-of-sequence token and at most the job's `max_tokens`. Returns the counts and
/// whether the provider's report was clipped.
pub fn metered_usage(
    job: &InferenceJob,
    reported_prompt: u32,
    reported_completion: u32,
    content: Option<&str>,
) -> (u32, u32, bool) {
    let turns = u32::try_from(job.messages.len()).unwrap_or(u32::MAX);
    let prompt_bytes: usize = job
        .messages
        .iter()
        .map(|t| t.content.len() + t.role.len())
        .sum();
    let prompt_bound = u32::try_from(prompt_bytes)
        .unwrap_or(u32::MAX)
        .saturating_add(turns.saturating_mul(TEMPLATE_TOKENS_PER_TURN))
        .saturating_add(TEMPLATE_TOKENS_PER_REQUEST);
    let content_bytes = content.map_or(0, str::len);
    let mut completion_bound = u32::try_from(content_bytes)
        .unwrap_or(u32::MAX)
        .saturating_add(1);
    if content.is_none() {
        completion_bound = 0; // embeddings produce no completion
    }
    if let Some(max_tokens) = job.max_tokens {
        completion_bound = completion_bound.min(max_tokens);
    }
    let prompt = reported_prompt.min(prompt_bound);
    let completion = reported_completion.min(completion_bound);
    (
        prompt,
        completion,
        prompt != reported_prompt || completion != reported_completion,
    )
}

/// A call's output with its usage metered ([`metered_usage`]).
fn metered(job: &InferenceJob, mut output: CallOutput) -> CallOutput {
    let (prompt, completion, clipped) = metered_usage(
        job,
        output.prompt_tokens,
        output.completion_tokens,
        output.content.as_deref(),
    );
    if clipped {
        tracing::warn!(
            job = %job.job_id,
            reported_prompt = output.prompt_tokens,
            reported_completion = output.completion_tokens,
            metered_prompt = prompt,
            metered_completion = completion,
            "the provider reported more tokens than it can have processed; metered to the bound"
        );
    }
    output.prompt_tokens = prompt;
    output.completion_tokens = completion;
    output
}

/// Why a call failed, classified by what the provider's HTTP answer said.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("HTTP {status}: {message}")]
    Status { status: u16, message: String },
    #[error("transport: {0}")]
    Transport(String),
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    #[error("bad job: {0}")]
    BadJob(String),
}

impl CallError {
    /// Worth another attempt (possibly at another provider).
    pub fn retryable(&self) -> bool {
        match self {
            CallError::Timeout(_) | CallError::Transport(_) | CallError::InvalidResponse(_) => true,
            CallError::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            CallError::BadJob(_) => false,
        }
    }

    /// The failure kind reported in the result when this is the last error.
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            CallError::Timeout(_) => FailureKind::Timeout,
            CallError::Status { status: 408, .. } => FailureKind::Timeout,
            CallError::Status { status: 429, .. } => FailureKind::RateLimited,
            CallError::Status { status, .. } if *status >= 500 => FailureKind::ProviderError,
            CallError::Status { .. } | CallError::BadJob(_) => FailureKind::BadRequest,
            CallError::Transport(_) => FailureKind::ProviderError,
            CallError::InvalidResponse(_) => FailureKind::InvalidResponse,
        }
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self.failure_kind() {
            FailureKind::Timeout => "timeout",
            FailureKind::RateLimited => "rate_limited",
            FailureKind::ProviderError => "provider_error",
            FailureKind::BadRequest => "bad_request",
            FailureKind::InvalidResponse => "invalid_response",
            FailureKind::NoProvider => "no_provider",
            FailureKind::CircuitOpen => "circuit_open",
        }
    }
}

/// Maps an async-openai error to a [`CallError`] by HTTP status.
///
/// llama-server reports errors as `{"error":{"code":400,...}}` with an *integer* code,
/// which async-openai's error type (a string code) cannot parse: it surfaces as a
/// deserialisation error carrying the body, so the status is read from that body.
pub fn classify(error: OpenAIError) -> CallError {
    match error {
        OpenAIError::ApiError(response) => CallError::Status {
            status: response.status_code.as_u16(),
            message: truncate(&response.api_error.message),
        },
        OpenAIError::JSONDeserialize(e, body) => match status_from_body(&body) {
            Some((status, message)) => CallError::Status { status, message },
            None => CallError::InvalidResponse(format!("{e}: {}", truncate(&body))),
        },
        OpenAIError::Reqwest(e) => {
            if e.is_timeout() {
                CallError::Timeout(Duration::ZERO)
            } else if let Some(status) = e.status() {
                CallError::Status {
                    status: status.as_u16(),
                    message: truncate(&e.to_string()),
                }
            } else if e.is_decode() || e.is_body() {
                CallError::InvalidResponse(truncate(&e.to_string()))
            } else {
                CallError::Transport(truncate(&e.to_string()))
            }
        }
        OpenAIError::StreamError(e) => CallError::InvalidResponse(truncate(&e.to_string())),
        OpenAIError::InvalidArgument(message) => CallError::BadJob(message),
        other => CallError::Transport(truncate(&other.to_string())),
    }
}

/// `{"error":{"code":<int>,"message":...}}` (llama.cpp style) or `{"code":<int>}`.
pub fn status_from_body(body: &str) -> Option<(u16, String)> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let error = value.get("error").unwrap_or(&value);
    let status = error
        .get("code")?
        .as_u64()
        .filter(|c| (100..600).contains(c))?;
    let message = error
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or("")
        .to_owned();
    Some((status as u16, truncate(&message)))
}

fn truncate(text: &str) -> String {
    const MAX: usize = 300;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// An async-openai client for one provider endpoint (`.../v1`).
pub fn client(endpoint: &str, api_key: Option<&str>) -> Client<OpenAIConfig> {
    let config = OpenAIConfig::new()
        .with_api_base(endpoint.trim_end_matches('/'))
        .with_api_key(api_key.unwrap_or("none"));
    Client::with_config(config)
}

/// Performs the job once against `client`, within `timeout`.
pub async fn call(
    client: &Client<OpenAIConfig>,
    job: &InferenceJob,
    timeout: Duration,
) -> Result<CallOutput, CallError> {
    let started = Instant::now();
    let attempt = async {
        match job.kind {
            JobKind::Chat if job.stream => chat_streamed(client, job, started).await,
            JobKind::Chat => chat(client, job, started).await,
            JobKind::Embedding => embed(client, job, started).await,
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(CallError::Timeout(timeout)),
    }
}

fn chat_request(
    job: &InferenceJob,
    stream: bool,
) -> Result<CreateChatCompletionRequest, CallError> {
    if job.messages.is_empty() {
        return Err(CallError::BadJob(
            "a chat job needs at least one message".into(),
        ));
    }
    let messages: Vec<serde_json::Value> = job
        .messages
        .iter()
        .map(|turn| json!({ "role": turn.role, "content": turn.content }))
        .collect();
    let mut request = json!({ "model": job.model, "messages": messages });
    if let Some(max_tokens) = job.max_tokens {
        request["max_tokens"] = json!(max_tokens);
    }
    if let Some(temperature) = job.temperature {
        request["temperature"] = json!(temperature);
    }
    if stream {
        request["stream"] = json!(true);
        request["stream_options"] = json!({ "include_usage": true });
    }
    serde_json::from_value(request)
        .map_err(|e| CallError::BadJob(format!("building the request: {e}")))
}

async fn chat(
    client: &Client<OpenAIConfig>,
    job: &InferenceJob,
    started: Instant,
) -> Result<CallOutput, CallError> {
    let response: CreateChatCompletionResponse = client
        .chat()
        .create(chat_request(job, false)?)
        .await
        .map_err(classify)?;
    let content = response
        .choices
        .into_iter()
        .next()
        .and_then(|choice| choice.message.content)
        .ok_or_else(|| CallError::InvalidResponse("no choices in the response".into()))?;
    let usage = response
        .usage
        .ok_or_else(|| CallError::InvalidResponse("no usage in the response".into()))?;
    Ok(metered(
        job,
        CallOutput {
            content: Some(content),
            embedding_dims: None,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            ttft: None,
            elapsed: started.elapsed(),
        },
    ))
}

async fn chat_streamed(
    client: &Client<OpenAIConfig>,
    job: &InferenceJob,
    started: Instant,
) -> Result<CallOutput, CallError> {
    let mut stream = client
        .chat()
        .create_stream(chat_request(job, true)?)
        .await
        .map_err(classify)?;
    let mut content = String::new();
    let mut ttft = None;
    let mut usage = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(classify)?;
        for choice in &chunk.choices {
            if let Some(delta) = &choice.delta.content {
                if ttft.is_none() && !delta.is_empty() {
                    ttft = Some(started.elapsed());
                }
                content.push_str(delta);
            }
        }
        if let Some(u) = chunk.usage {
            usage = Some(u);
        }
    }
    let usage =
        usage.ok_or_else(|| CallError::InvalidResponse("the stream ended without usage".into()))?;
    Ok(metered(
        job,
        CallOutput {
            content: Some(content),
            embedding_dims: None,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            ttft,
            elapsed: started.elapsed(),
        },
    ))
}

async fn embed(
    client: &Client<OpenAIConfig>,
    job: &InferenceJob,
    started: Instant,
) -> Result<CallOutput, CallError> {
    let inputs: Vec<String> = job
        .messages
        .iter()
        .map(|turn| turn.content.clone())
        .collect();
    if inputs.is_empty() {
        return Err(CallError::BadJob(
            "an embedding job needs at least one input".into(),
        ));
    }
    let request: CreateEmbeddingRequest =
        serde_json::from_value(json!({ "model": job.model, "input": inputs }))
            .map_err(|e| CallError::BadJob(format!("building the request: {e}")))?;
    let response: CreateEmbeddingResponse = client
        .embeddings()
        .create(request)
        .await
        .map_err(classify)?;
    let dims = response
        .data
        .first()
        .map(|e| e.embedding.len() as u32)
        .ok_or_else(|| CallError::InvalidResponse("no embeddings in the response".into()))?;
    if response.data.len() != inputs.len() {
        return Err(CallError::InvalidResponse(format!(
            "{} embeddings for {} inputs",
            response.data.len(),
            inputs.len()
        )));
    }
    Ok(metered(
        job,
        CallOutput {
            content: None,
            embedding_dims: Some(dims),
            prompt_tokens: response.usage.prompt_tokens,
            completion_tokens: 0,
            ttft: None,
            elapsed: started.elapsed(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_is_believed_only_up_to_what_it_can_have_processed() {
        let job = InferenceJob {
            job_id: uuid::Uuid::now_v7(),
            kind: JobKind::Chat,
            model: "m".into(),
            messages: vec![chorus_schemas::ChatTurn {
                role: "user".into(),
                content: "hello there".into(), // 11 bytes + 4 of role
            }],
            max_tokens: Some(64),
            temperature: None,
            stream: false,
            provider_ids: vec![],
            call_id: None,
            conversation_id: None,
            agent_id: None,
            deadline_ms: None,
            reply_to: None,
            hop: 0,
        };
        // An honest report passes unchanged.
        assert_eq!(
            metered_usage(&job, 20, 5, Some("Hi! How are you?")),
            (20, 5, false)
        );
        // An inflated one is cut to the bounds: 15 bytes + 8 + 8 of prompt, and the
        // completion to its 3 bytes + 1.
        assert_eq!(
            metered_usage(&job, 100_000, 100_000, Some("Hi!")),
            (31, 4, true)
        );
        // Never more than max_tokens, whatever was received.
        let long = "x".repeat(1000);
        assert_eq!(metered_usage(&job, 1, 1000, Some(&long)).1, 64);
        // Embeddings have no completion.
        assert_eq!(metered_usage(&job, 3, 9, None), (3, 0, true));
    }

    #[test]
    fn llama_integer_error_codes_are_read_as_http_status() {
        let body = r#"{"error":{"code":400,"message":"'messages' must be an array","type":"invalid_request_error"}}"#;
        let parse_error = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let error = classify(OpenAIError::JSONDeserialize(parse_error, body.into()));
        assert_eq!(
            error,
            CallError::Status {
                status: 400,
                message: "'messages' must be an array".into()
            }
        );
        assert!(!error.retryable());
        assert_eq!(error.failure_kind(), FailureKind::BadRequest);
    }

    #[test]
    fn statuses_map_to_retryability_and_kinds() {
        let status = |s| CallError::Status {
            status: s,
            message: String::new(),
        };
        assert!(status(503).retryable());
        assert_eq!(status(503).failure_kind(), FailureKind::ProviderError);
        assert!(status(429).retryable());
        assert_eq!(status(429).failure_kind(), FailureKind::RateLimited);
        assert!(status(408).retryable());
        assert!(!status(404).retryable());
        assert!(CallError::Transport("refused".into()).retryable());
        assert!(CallError::InvalidResponse("garbage".into()).retryable());
        assert!(!CallError::BadJob("empty".into()).retryable());
    }

    #[test]
    fn garbage_bodies_are_invalid_responses() {
        let parse_error = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let error = classify(OpenAIError::JSONDeserialize(
            parse_error,
            "<html>oops</html>".into(),
        ));
        assert!(matches!(error, CallError::InvalidResponse(_)));
        assert_eq!(status_from_body(r#"{"code":"x"}"#), None);
        assert_eq!(
            status_from_body(r#"{"code":503,"message":"busy"}"#),
            Some((503, "busy".into()))
        );
    }
}
