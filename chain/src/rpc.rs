//! JSON-RPC access with several endpoints: failover, a request-rate limit, timeouts and
//! backoff.
//!
//! Every call goes to the active endpoint. A transport failure (connection refused, HTTP
//! 5xx/429, a timeout, an unreadable answer) moves the pool to the next endpoint and the
//! call is tried there; after a full round without success it backs off exponentially.
//! "Too many results" answers are returned to the caller at once so it can shrink its
//! block range; other JSON-RPC errors are returned as they are.
//!
//! Endpoint URLs often carry API keys in the path or query; logs and metrics only ever
//! show `scheme://host:port`.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::transports::{RpcError, TransportErrorKind};
use prometheus::IntCounterVec;
use tokio::sync::Mutex;

/// Why an RPC call failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcFailure {
    /// The node refuses the request's size (too many logs, range too wide).
    #[error("{method}: the node refused the size of the request: {message}")]
    TooLarge {
        method: &'static str,
        message: String,
    },
    /// The request timed out (the caller may shrink it).
    #[error("{method}: timed out after {after:?} at {endpoint}")]
    Timeout {
        method: &'static str,
        endpoint: String,
        after: Duration,
    },
    /// Every endpoint failed at the transport level for a whole round.
    #[error("{method}: every endpoint failed; last error at {endpoint}: {message}")]
    Unavailable {
        method: &'static str,
        endpoint: String,
        message: String,
    },
    /// The node answered with an error that retrying elsewhere will not fix.
    #[error("{method}: {message}")]
    Rejected {
        method: &'static str,
        message: String,
    },
}

impl RpcFailure {
    /// Whether the request should be made smaller before trying again.
    pub fn wants_smaller_request(&self) -> bool {
        matches!(
            self,
            RpcFailure::TooLarge { .. } | RpcFailure::Timeout { .. }
        )
    }
}

static RPC_ERRORS: std::sync::LazyLock<IntCounterVec> = std::sync::LazyLock::new(|| {
    chorus_runtime::metrics::counter(
        "chorus_rpc_errors_total",
        "Failed JSON-RPC requests by endpoint and kind.",
        &["endpoint", "kind"],
    )
});

static RPC_REQUESTS: std::sync::LazyLock<IntCounterVec> = std::sync::LazyLock::new(|| {
    chorus_runtime::metrics::counter(
        "chorus_rpc_requests_total",
        "JSON-RPC requests by endpoint and method.",
        &["endpoint", "method"],
    )
});

/// Pool settings.
#[derive(Debug, Clone)]
pub struct RpcPoolConfig {
    /// Maximum requests per second over all endpoints (0 = unlimited).
    pub max_requests_per_second: u32,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// Full rounds over all endpoints before a call gives up.
    pub rounds: u32,
    /// Backoff after the first failed round; doubles per round, capped at 10 s.
    pub backoff: Duration,
}

impl Default for RpcPoolConfig {
    fn default() -> Self {
        RpcPoolConfig {
            max_requests_per_second: 0,
            request_timeout: Duration::from_secs(10),
            rounds: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

struct Endpoint {
    label: String,
    provider: DynProvider,
}

/// Several RPC endpoints serving the same chain, used one at a time.
pub struct RpcPool {
    endpoints: Vec<Endpoint>,
    active: AtomicUsize,
    next_slot: Mutex<Instant>,
    config: RpcPoolConfig,
    errors: IntCounterVec,
    requests: IntCounterVec,
}

/// `scheme://host:port` of an endpoint: safe to log.
pub fn endpoint_label(url: &reqwest_url::Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or("?"),
        url.port_or_known_default().unwrap_or(0)
    )
}

mod reqwest_url {
    pub use alloy::transports::http::reqwest::Url;
}

impl RpcPool {
    /// A pool over `urls` (in failover order).
    pub fn new(urls: &[String], config: RpcPoolConfig) -> Result<Self, RpcFailure> {
        let mut endpoints = Vec::with_capacity(urls.len());
        for url in urls {
            let parsed: reqwest_url::Url = url.parse().map_err(|e| RpcFailure::Rejected {
                method: "config",
                message: format!("invalid RPC URL #{}: {e}", endpoints.len() + 1),
            })?;
            let label = endpoint_label(&parsed);
            let provider = ProviderBuilder::new()
                .disable_recommended_fillers()
                .connect_http(parsed)
                .erased();
            endpoints.push(Endpoint { label, provider });
        }
        if endpoints.is_empty() {
            return Err(RpcFailure::Rejected {
                method: "config",
                message: "at least one RPC URL is needed".into(),
            });
        }
        let errors = RPC_ERRORS.clone();
        for endpoint in &endpoints {
            for kind in ["timeout", "too_large", "rejected", "unavailable"] {
                errors.with_label_values(&[endpoint.label.as_str(), kind]);
            }
        }
        Ok(RpcPool {
            endpoints,
            active: AtomicUsize::new(0),
            next_slot: Mutex::new(Instant::now()),
            config,
            errors,
            requests: RPC_REQUESTS.clone(),
        })
    }

    /// The label of the endpoint in use.
    pub fn active_endpoint(&self) -> &str {
        &self.endpoints[self.active.load(Ordering::Relaxed) % self.endpoints.len()].label
    }

    async fn pace(&self) {
        if self.config.max_requests_per_second == 0 {
            return;
        }
        let interval = Duration::from_secs(1) / self.config.max_requests_per_second;
        let wait = {
            let mut next = self.next_slot.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + interval;
            slot.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    fn fail_over(&self, from: usize) {
        let to = (from + 1) % self.endpoints.len();
        if self
            .active
            .compare_exchange(from, to, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
            && to != from
        {
            tracing::warn!(
                from = %self.endpoints[from].label,
                to = %self.endpoints[to].label,
                "RPC endpoint failed; switching to the next one"
            );
        }
    }

    /// Runs `op` against the active endpoint, failing over on transport errors.
    pub async fn call<T, F, Fut>(&self, method: &'static str, op: F) -> Result<T, RpcFailure>
    where
        F: Fn(DynProvider) -> Fut,
        Fut: Future<Output = Result<T, RpcError<TransportErrorKind>>>,
    {
        let count = self.endpoints.len();
        let attempts = count * self.config.rounds.max(1) as usize;
        let mut last = String::new();
        let mut last_endpoint = String::new();
        for attempt in 0..attempts {
            if attempt > 0 && attempt % count == 0 {
                let round = (attempt / count) as u32;
                let backoff = self
                    .config
                    .backoff
                    .saturating_mul(1 << round.min(6))
                    .min(Duration::from_secs(10));
                tokio::time::sleep(backoff).await;
            }
            self.pace().await;
            let index = self.active.load(Ordering::SeqCst) % count;
            let endpoint = &self.endpoints[index];
            self.requests
                .with_label_values(&[endpoint.label.as_str(), method])
                .inc();
            let outcome =
                tokio::time::timeout(self.config.request_timeout, op(endpoint.provider.clone()))
                    .await;
            let error = match outcome {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(error)) => error,
                Err(_) => {
                    self.errors
                        .with_label_values(&[endpoint.label.as_str(), "timeout"])
                        .inc();
                    self.fail_over(index);
                    return Err(RpcFailure::Timeout {
                        method,
                        endpoint: endpoint.label.clone(),
                        after: self.config.request_timeout,
                    });
                }
            };
            match classify(&error) {
                ErrorClass::TooLarge => {
                    self.errors
                        .with_label_values(&[endpoint.label.as_str(), "too_large"])
                        .inc();
                    return Err(RpcFailure::TooLarge {
                        method,
                        message: error.to_string(),
                    });
                }
                ErrorClass::Rejected => {
                    self.errors
                        .with_label_values(&[endpoint.label.as_str(), "rejected"])
                        .inc();
                    return Err(RpcFailure::Rejected {
                        method,
                        message: error.to_string(),
                    });
                }
                ErrorClass::Unavailable => {
                    self.errors
                        .with_label_values(&[endpoint.label.as_str(), "unavailable"])
                        .inc();
                    tracing::debug!(endpoint = %endpoint.label, method, error = %error, "RPC transport error");
                    last = error.to_string();
                    last_endpoint = endpoint.label.clone();
                    self.fail_over(index);
                }
            }
        }
        Err(RpcFailure::Unavailable {
            method,
            endpoint: last_endpoint,
            message: last,
        })
    }
}

enum ErrorClass {
    TooLarge,
    Rejected,
    Unavailable,
}

fn classify(error: &RpcError<TransportErrorKind>) -> ErrorClass {
    match error {
        RpcError::ErrorResp(payload) => {
            let message = payload.message.to_ascii_lowercase();
            let too_large = payload.code == -32005
                || [
                    "too many",
                    "more than",
                    "limit exceeded",
                    "response size",
                    "range too",
                    "block range",
                    "query timeout",
                ]
                .iter()
                .any(|needle| message.contains(needle));
            if too_large {
                ErrorClass::TooLarge
            } else if payload.code == -32603
                || payload.code == -32601
                || payload.code == 429
                || message.contains("rate")
                || message.contains("not available")
                || message.contains("disabled")
                || message.contains("unsupported")
            {
                // The node is overloaded or does not serve this method (public BSC
                // endpoints disable eth_getLogs): another endpoint may.
                ErrorClass::Unavailable
            } else {
                ErrorClass::Rejected
            }
        }
        RpcError::Transport(kind) => match kind {
            TransportErrorKind::HttpError(http) if http.status == 413 => ErrorClass::TooLarge,
            _ => ErrorClass::Unavailable,
        },
        RpcError::DeserError { .. } | RpcError::NullResp => ErrorClass::Unavailable,
        _ => ErrorClass::Rejected,
    }
}
