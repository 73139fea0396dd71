//! The state every handler shares: settings, keys, the producer, rate limiters and the
//! idempotency cache; signature checks and producing a request's events exactly once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::Value;
use uuid::Uuid;

use chorus_runtime::Shutdown;
use chorus_runtime::kafka::{EventProducer, KafkaArgs, await_delivery};
use chorus_schemas::{Envelope, EventData};

use super::error::ApiError;
use super::extract::{ApiResult, accepted, address, now};
use super::idempotency::{IdempotencyCache, Reservation};
use crate::auth::{ApiKeys, Delegation, Domain, SignaturePolicy, Signed, verify_signed};
use crate::directory::Directory;
use crate::limits::{RateLimit, RateLimiter};

/// Limits and timeouts of the API.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Longest chat message, in characters.
    pub max_message_chars: usize,
    /// Signed requests must carry a timestamp within this many seconds of the server's.
    pub signature_window_seconds: i64,
    /// The EIP-712 domain signatures must be made for (this chain, this deployment).
    pub domain: Domain,
    /// Also accept the legacy EIP-191 text signatures.
    pub accept_eip191: bool,
    /// How long a post waits for the log to show its author's membership (a
    /// conversation created or joined a moment ago) before answering 403.
    pub membership_wait: Duration,
    /// Longest a session grant may run, in seconds.
    pub max_session_seconds: i64,
    /// How long a write may wait for the producer queue, then for the broker's ack,
    /// before the API answers 503.
    pub produce_timeout: Duration,
    pub source: String,
    /// Requests per API key (all routes that need a key).
    pub key_rate: RateLimit,
    /// Signed writes per account.
    pub account_rate: RateLimit,
}

/// Rate-limit buckets kept before idle ones are forgotten.
const RATE_LIMIT_CAPACITY: usize = 100_000;

/// Shared state of the handlers.
pub struct ApiState {
    pub(super) settings: ApiSettings,
    pub(super) keys: ApiKeys,
    producer: EventProducer,
    pub(super) kafka: KafkaArgs,
    idempotency: Mutex<IdempotencyCache>,
    pub(super) key_limits: RateLimiter,
    account_limits: RateLimiter,
    /// Ends live streams on shutdown (graceful shutdown waits for open connections).
    pub(super) shutdown: Shutdown,
    /// Owners, members and session keys, as the log says.
    pub(super) directory: Arc<Directory>,
}

/// Where a request's events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// Straight to the event's own topic (messages, feedback, sessions).
    Own,
    /// To the API's intake topic, where the router decides them (registrations,
    /// conversation changes).
    Intake,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    pub fn new(
        settings: ApiSettings,
        keys: ApiKeys,
        producer: EventProducer,
        kafka: KafkaArgs,
        shutdown: Shutdown,
        directory: Arc<Directory>,
    ) -> Self {
        super::metrics::register();
        ApiState {
            key_limits: RateLimiter::new(settings.key_rate, RATE_LIMIT_CAPACITY),
            account_limits: RateLimiter::new(settings.account_rate, RATE_LIMIT_CAPACITY),
            settings,
            keys,
            producer,
            kafka,
            idempotency: Mutex::new(IdempotencyCache::default()),
            shutdown,
            directory,
        }
    }

    /// The EIP-712 digest of `action` over a parsed request body, under this deployment's
    /// domain (one mapping from JSON to typed data, [`crate::typed_body`], for the API and
    /// its Rust clients). A value the typed data cannot hold (a negative timestamp) gets
    /// no digest: the signature check then refuses the request (a stale timestamp).
    pub(super) fn digest(&self, action: &str, body: &Value) -> alloy::primitives::B256 {
        crate::typed_body::digest(&self.settings.domain, action, body).unwrap_or_default()
    }

    /// Checks the request's signature for `action` (EIP-712 digest `typed_digest`) by
    /// `account`, or, when `delegable`, by a live session key `account` granted; then
    /// the account's rate.
    pub(super) fn verify(
        &self,
        action: &str,
        typed_digest: alloy::primitives::B256,
        body: &Value,
        account: &str,
        delegable: bool,
    ) -> Result<Signed, ApiError> {
        let claimed = address("the signing account", account)?;
        let now = now();
        let policy = SignaturePolicy {
            domain: self.settings.domain,
            // Session grants and revocations are checked again by every reader of the
            // log, as EIP-712: the legacy form is not accepted for them.
            accept_eip191: self.settings.accept_eip191 && !action.starts_with("session."),
            window_seconds: self.settings.signature_window_seconds,
        };
        let sessions = &self.directory.sessions;
        let check = |key| sessions.check(claimed, key, action, now);
        let delegated: Option<Delegation<'_>> = if delegable { Some(&check) } else { None };
        let signed = verify_signed(&policy, action, typed_digest, body, claimed, now, delegated)?;
        let account = claimed.to_string().to_lowercase();
        self.account_limits
            .check(&account)
            .map_err(|wait| ApiError::rate_limited(format!("account {account}"), wait))?;
        Ok(signed)
    }

    /// Event ids for this request. Its identity is the signer and the digest it signed
    /// (never the signature's spelling, nor a header), so a replay, respelled or not, sent
    /// here or to any other replica, gets the same ids and is not produced again once
    /// Kafka acknowledged it. An `Idempotency-Key` is scoped to the API key and signer and
    /// names one request: reused for a different body it is 422.
    pub(super) fn reserve(
        &self,
        key_name: &str,
        headers: &HeaderMap,
        signed: &Signed,
        body: &Value,
        count: usize,
    ) -> Result<Reservation, ApiError> {
        let identity = format!("{:#x}/{:#x}", signed.signer, signed.digest);
        let mut cache = self.idempotency.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(idempotency_key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok())
        {
            let scoped = format!("{key_name}/{:#x}/{idempotency_key}", signed.signer);
            if let Some(first) = cache.bind_key(&scoped, &identity) {
                return Err(ApiError::invalid(format!(
                    "Idempotency-Key {idempotency_key:?} was used for another request by this key and signer (digest {first}); use a new key for a new request"
                )));
            }
        }
        // The ids take the request's own (signed) time.
        let unix_ms = body
            .get("timestamp")
            .and_then(Value::as_u64)
            .map(|seconds| seconds.saturating_mul(1000))
            .unwrap_or_else(|| u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0));
        let (ids, delivered) = cache.ids_for(&identity, unix_ms, count);
        Ok(Reservation {
            ids,
            cache_key: Some(identity),
            delivered,
        })
    }

    /// Produces a reserved request's events unless they were delivered already.
    pub(super) async fn produce_once<T: EventData>(
        &self,
        reservation: &Reservation,
        events: Vec<Envelope<T>>,
        route: Route,
    ) -> Result<Vec<Uuid>, ApiError> {
        if reservation.delivered {
            return Ok(reservation.ids.clone());
        }
        let ids = self.produce(events, route).await?;
        if let Some(key) = &reservation.cache_key {
            self.idempotency
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .mark_delivered(key);
        }
        Ok(ids)
    }

    /// Produces the events (in order, same key) and waits for the broker; 503 when the
    /// producer queue stays full or the broker does not acknowledge in time.
    async fn produce<T: EventData>(
        &self,
        events: Vec<Envelope<T>>,
        route: Route,
    ) -> Result<Vec<Uuid>, ApiError> {
        let timeout = self.settings.produce_timeout;
        let unavailable = ApiError::unavailable;
        let mut pending = Vec::with_capacity(events.len());
        let intake = self.kafka.topic(chorus_schemas::Topic::ApiIntake);
        for event in &events {
            let enqueue = async {
                match route {
                    Route::Own => self.producer.enqueue(event).await,
                    Route::Intake => self.producer.enqueue_to(&intake, event).await,
                }
            };
            let delivery = tokio::time::timeout(timeout, enqueue)
                .await
                .map_err(|_| unavailable("not accepting events fast enough"))?
                .map_err(|e| {
                    tracing::error!(error = %e, "produce failed");
                    unavailable("failing")
                })?;
            pending.push(delivery);
        }
        for delivery in pending {
            tokio::time::timeout(timeout, await_delivery(delivery))
                .await
                .map_err(|_| unavailable("slow to acknowledge"))?
                .map_err(|e| {
                    tracing::error!(error = %e, "delivery failed");
                    unavailable("failing")
                })?;
        }
        Ok(events.iter().map(|e| e.id).collect())
    }

    /// A write of one event: reserve its id under the request's idempotency key, produce
    /// it unless a retry already did, and answer 202 with its id.
    pub(super) async fn accept_one<T: EventData>(
        &self,
        key_name: &str,
        headers: &HeaderMap,
        signed: &Signed,
        body: &Value,
        data: T,
        route: Route,
    ) -> ApiResult {
        let reservation = self.reserve(key_name, headers, signed, body, 1)?;
        let event = self.envelope(reservation.ids[0], data);
        Ok(accepted(
            self.produce_once(&reservation, vec![event], route).await?,
        ))
    }

    pub(super) fn envelope<T: EventData>(&self, id: Uuid, data: T) -> Envelope<T> {
        let mut envelope = Envelope::new(self.settings.source.clone(), data);
        envelope.id = id;
        envelope
    }
}
