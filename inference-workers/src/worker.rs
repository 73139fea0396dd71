//! The inference worker transform: one job in, exactly one result out.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec};
use uuid::Uuid;

use chorus_runtime::kafka::{InputRecord, OutputRecord, ProcessError, Transform};
use chorus_runtime::metrics;
use chorus_schemas::{Envelope, FailureKind, InferenceJob, InferenceResult, JobStatus};

use crate::breaker::CircuitState;
use crate::call::{self, CallError, CallOutput};
use crate::providers::{Provider, ProviderDirectory};

static PROVIDER_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    metrics::counter(
        "chorus_provider_requests_total",
        "Provider calls, by provider and outcome.",
        &["provider", "outcome"],
    )
});
static PROVIDER_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    metrics::histogram(
        "chorus_provider_latency_seconds",
        "Latency of successful provider calls, by provider.",
        &["provider"],
        vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0],
    )
});
static PROVIDER_TTFT: LazyLock<HistogramVec> = LazyLock::new(|| {
    metrics::histogram(
        "chorus_provider_ttft_seconds",
        "Time to first token of streamed calls, by provider.",
        &["provider"],
        vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
    )
});
static PROVIDER_CIRCUIT_OPEN: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    metrics::gauge(
        "chorus_provider_circuit_open",
        "1 while a provider's circuit breaker is open.",
        &["provider"],
    )
});
static TOKENS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    metrics::counter(
        "chorus_inference_tokens_total",
        "Tokens metered, by provider and kind (prompt, completion).",
        &["provider", "kind"],
    )
});
static RESULTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    metrics::counter(
        "chorus_inference_results_total",
        "Job results, by status and failure kind.",
        &["status", "failure_kind"],
    )
});
static DUPLICATE_JOBS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    metrics::counter(
        "chorus_inference_duplicate_jobs_total",
        "Job events skipped because their job id was already served.",
        &["stage"],
    )
});

/// Forces the worker's metrics into the registry (so dashboards see them at zero).
pub fn register_metrics() {
    LazyLock::force(&PROVIDER_REQUESTS);
    LazyLock::force(&PROVIDER_LATENCY);
    LazyLock::force(&PROVIDER_TTFT);
    LazyLock::force(&PROVIDER_CIRCUIT_OPEN);
    LazyLock::force(&TOKENS);
    LazyLock::force(&RESULTS);
    LazyLock::force(&DUPLICATE_JOBS);
}

/// How a worker treats jobs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Longest one provider call may take.
    pub attempt_timeout: Duration,
    /// Most provider calls per job (across providers).
    pub max_attempts: u32,
    /// Deadline of a job that sets none.
    pub default_deadline: Duration,
    /// First retry delay; doubles per attempt, with ±50% jitter.
    pub backoff_base: Duration,
    /// Largest provider answer (content bytes) written as a result; a longer one sends
    /// the job to the dead-letter topic.
    pub max_output_bytes: usize,
    /// The `source` of result envelopes.
    pub source: String,
    pub topic_prefix: String,
}

/// Job ids recently served (bounded), to skip a job event repeated under another event id.
#[derive(Debug, Default)]
struct SeenJobs {
    by_job: HashMap<Uuid, Uuid>,
    order: VecDeque<Uuid>,
}

const SEEN_CAPACITY: usize = 200_000;

/// The transform run by `chorus inference-worker`.
#[derive(Debug)]
pub struct InferenceWorker {
    settings: WorkerSettings,
    directory: Arc<ProviderDirectory>,
    seen: Mutex<SeenJobs>,
}

impl InferenceWorker {
    pub fn new(settings: WorkerSettings, directory: Arc<ProviderDirectory>) -> Self {
        register_metrics();
        InferenceWorker {
            settings,
            directory,
            seen: Mutex::new(SeenJobs::default()),
        }
    }

    /// True when this job id was already served under a different event id. The same
    /// event id seen again is a replay after an aborted transaction: serve it again.
    fn is_duplicate(&self, job_id: Uuid, event_id: Uuid) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.by_job.get(&job_id) {
            Some(first) if *first != event_id => true,
            Some(_) => false,
            None => {
                seen.by_job.insert(job_id, event_id);
                seen.order.push_back(job_id);
                if seen.order.len() > SEEN_CAPACITY
                    && let Some(old) = seen.order.pop_front()
                {
                    seen.by_job.remove(&old);
                }
                false
            }
        }
    }

    /// Serves a job: route, call, retry, fall back; always returns a result.
    pub async fn serve(&self, job: &InferenceJob) -> InferenceResult {
        let started = Instant::now();
        let deadline = started
            + job
                .deadline_ms
                .map(Duration::from_millis)
                .unwrap_or(self.settings.default_deadline);
        let candidates = self.directory.candidates(job);
        if candidates.is_empty() {
            return failure(
                job,
                started,
                0,
                None,
                FailureKind::NoProvider,
                format!("no provider serves model {:?}", job.model),
            );
        }
        let mut attempts = 0u32;
        let mut last: Option<(Arc<Provider>, CallError)> = None;
        while attempts < self.settings.max_attempts.max(1) {
            // Rotate through the candidates: attempt n starts at candidate n, so a
            // retry falls back to the next provider.
            let offset = attempts as usize % candidates.len();
            let chosen = candidates
                .iter()
                .cycle()
                .skip(offset)
                .take(candidates.len())
                .find(|p| p.breaker.try_acquire())
                .cloned();
            let Some(provider) = chosen else {
                for p in &candidates {
                    PROVIDER_CIRCUIT_OPEN.with_label_values(&[&p.id]).set(1);
                }
                return match last {
                    Some((provider, error)) => failure(
                        job,
                        started,
                        attempts,
                        Some(&provider.id),
                        error.failure_kind(),
                        error.to_string(),
                    ),
                    None => failure(
                        job,
                        started,
                        0,
                        None,
                        FailureKind::CircuitOpen,
                        "every provider's circuit is open".into(),
                    ),
                };
            };
            let now = Instant::now();
            if now >= deadline {
                let (provider_id, message) = match &last {
                    Some((p, e)) => (
                        Some(p.id.as_str()),
                        format!("deadline passed; last error: {e}"),
                    ),
                    None => (None, "deadline passed before the first attempt".to_owned()),
                };
                return failure(
                    job,
                    started,
                    attempts,
                    provider_id,
                    FailureKind::Timeout,
                    message,
                );
            }
            let timeout = self.settings.attempt_timeout.min(deadline - now);
            attempts += 1;
            match call::call(&provider.client, job, timeout).await {
                Ok(output) => {
                    provider.breaker.record_success();
                    PROVIDER_CIRCUIT_OPEN
                        .with_label_values(&[&provider.id])
                        .set(0);
                    PROVIDER_REQUESTS
                        .with_label_values(&[&provider.id, "success"])
                        .inc();
                    PROVIDER_LATENCY
                        .with_label_values(&[&provider.id])
                        .observe(output.elapsed.as_secs_f64());
                    if let Some(ttft) = output.ttft {
                        PROVIDER_TTFT
                            .with_label_values(&[&provider.id])
                            .observe(ttft.as_secs_f64());
                    }
                    TOKENS
                        .with_label_values(&[&provider.id, "prompt"])
                        .inc_by(u64::from(output.prompt_tokens));
                    TOKENS
                        .with_label_values(&[&provider.id, "completion"])
                        .inc_by(u64::from(output.completion_tokens));
                    return success(job, started, attempts, &provider, output);
                }
                Err(error) => {
                    PROVIDER_REQUESTS
                        .with_label_values(&[&provider.id, error.label()])
                        .inc();
                    tracing::debug!(job = %job.job_id, provider = %provider.id, attempt = attempts, %error, "provider call failed");
                    if !error.retryable() {
                        // The job is at fault, not the provider.
                        provider.breaker.record_success();
                        return failure(
                            job,
                            started,
                            attempts,
                            Some(&provider.id),
                            error.failure_kind(),
                            error.to_string(),
                        );
                    }
                    provider.breaker.record_failure();
                    if provider.breaker.state() == CircuitState::Open {
                        PROVIDER_CIRCUIT_OPEN
                            .with_label_values(&[&provider.id])
                            .set(1);
                    }
                    last = Some((provider, error));
                    let backoff = jittered(self.settings.backoff_base, attempts);
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    tokio::time::sleep(backoff.min(remaining)).await;
                }
            }
        }
        match last {
            Some((provider, error)) => failure(
                job,
                started,
                attempts,
                Some(&provider.id),
                error.failure_kind(),
                format!("gave up after {attempts} attempts: {error}"),
            ),
            None => failure(
                job,
                started,
                attempts,
                None,
                FailureKind::ProviderError,
                "no attempt was made".into(),
            ),
        }
    }
}

/// `base * 2^(attempt-1)`, scaled by a factor in [0.5, 1.5).
fn jittered(base: Duration, attempt: u32) -> Duration {
    let exponential = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(10));
    let entropy = (Uuid::now_v7().as_u128() & 0xFFFF) as f64 / 65536.0;
    exponential.mul_f64(0.5 + entropy)
}

fn base_result(
    job: &InferenceJob,
    started: Instant,
    attempts: u32,
    provider_id: Option<&str>,
) -> InferenceResult {
    InferenceResult {
        job_id: job.job_id,
        status: JobStatus::Failed,
        failure_kind: None,
        error: None,
        provider_id: provider_id.map(str::to_owned),
        model: job.model.clone(),
        content: None,
        embedding_dims: None,
        prompt_tokens: 0,
        completion_tokens: 0,
        latency_ms: started.elapsed().as_millis() as u64,
        ttft_ms: None,
        gpu_seconds: 0.0,
        attempts,
        call_id: job.call_id,
        conversation_id: job.conversation_id.clone(),
        agent_id: job.agent_id.clone(),
        reply_to: job.reply_to,
        hop: job.hop,
    }
}

fn success(
    job: &InferenceJob,
    started: Instant,
    attempts: u32,
    provider: &Provider,
    output: CallOutput,
) -> InferenceResult {
    RESULTS.with_label_values(&["succeeded", ""]).inc();
    InferenceResult {
        status: JobStatus::Succeeded,
        content: output.content,
        embedding_dims: output.embedding_dims,
        prompt_tokens: output.prompt_tokens,
        completion_tokens: output.completion_tokens,
        ttft_ms: output.ttft.map(|t| t.as_millis() as u64),
        gpu_seconds: output.elapsed.as_secs_f64(),
        ..base_result(job, started, attempts, Some(&provider.id))
    }
}

fn failure(
    job: &InferenceJob,
    started: Instant,
    attempts: u32,
    provider_id: Option<&str>,
    kind: FailureKind,
    message: String,
) -> InferenceResult {
    let label = serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    RESULTS.with_label_values(&["failed", &label]).inc();
    InferenceResult {
        failure_kind: Some(kind),
        error: Some(message),
        ..base_result(job, started, attempts, provider_id)
    }
}

impl Transform for InferenceWorker {
    async fn process(&self, record: &InputRecord<'_>) -> Result<Vec<OutputRecord>, ProcessError> {
        let payload = record
            .payload
            .filter(|p| !p.is_empty())
            .ok_or_else(|| ProcessError::Reject("record has no value".into()))?;
        let job = Envelope::<InferenceJob>::from_json(payload)
            .map_err(|e| ProcessError::Reject(e.to_string()))?;
        if self.is_duplicate(job.data.job_id, job.id) {
            DUPLICATE_JOBS
                .with_label_values(&["inference-worker"])
                .inc();
            tracing::info!(job = %job.data.job_id, event = %job.id, "skipping a repeated job event");
            return Ok(Vec::new());
        }
        let result = self.serve(&job.data).await;
        let answer_bytes = result.content.as_ref().map_or(0, String::len);
        if answer_bytes > self.settings.max_output_bytes {
            RESULTS
                .with_label_values(&["dead_lettered", "output_too_large"])
                .inc();
            return Err(ProcessError::Reject(format!(
                "provider {} answered job {} with {answer_bytes} bytes, over the output cap of {} bytes (--max-output-bytes); the answer is dropped",
                result.provider_id.as_deref().unwrap_or("?"),
                job.data.job_id,
                self.settings.max_output_bytes
            )));
        }
        let event = Envelope::new(self.settings.source.clone(), result);
        let output = OutputRecord::event(&self.settings.topic_prefix, &event)
            .map_err(|e| ProcessError::Retry(format!("encoding the result: {e}")))?;
        Ok(vec![output])
    }
}
