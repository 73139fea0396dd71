//! `chorus verify --watch`: the watcher that makes "anyone can verify" protect anyone.
//!
//! It follows the distributor's `Checkpointed` logs through the indexer's chain events
//! (`chorus.chain.events`), and for each root that is still pending on chain recomputes
//! the epoch from the log: the recorded checkpoint's manifest replayed with the scoring
//! config ([`verify_epoch`]). A root matches only if the replay gives the recorded root,
//! and the chain's root and manifest hash are the recorded ones; a root for which no
//! Chorus scorer recorded a checkpoint was not computed here and does not match. With a
//! guardian key, the watcher revokes a root that does not match while its challenge
//! window is open. Every outcome is counted in `chorus_poi_watch_roots_total{outcome}`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider};
use prometheus::{IntCounterVec, IntGaugeVec};

use chorus_chain::ChainClient;
use chorus_chain::contracts::PoiDistributor;
use chorus_runtime::Shutdown;
use chorus_runtime::kafka::KafkaArgs;
use chorus_runtime::kafka::follow::{ApplyRecord, follow_topic};
use chorus_runtime::metrics::Readiness;
use chorus_schemas::{AnyEvent, Topic};

use crate::config::ScoringConfig;
use crate::engine::EngineConfig;
use crate::epoch::{PoiError, verify_epoch};

static WATCHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    chorus_runtime::metrics::counter(
        "chorus_poi_watch_roots_total",
        "Posted PoI roots the watcher checked, by outcome: ok (the log gives it), mismatch (it does not), revoked (a mismatch the watcher revoked), revoke_failed, too_late (a mismatch past its challenge window), superseded (no longer pending on chain).",
        &["outcome"],
    )
});

static LAST_EPOCH: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    chorus_runtime::metrics::gauge(
        "chorus_poi_watch_last_epoch",
        "The last epoch the watcher checked, by outcome.",
        &["outcome"],
    )
});

/// Creates the watcher's series at zero, so a scrape sees them before the first root.
pub fn register_metrics() {
    for outcome in [
        "ok",
        "mismatch",
        "revoked",
        "revoke_failed",
        "too_late",
        "superseded",
    ] {
        WATCHED.with_label_values(&[outcome]);
    }
}

/// A root posted on chain, from a `Checkpointed` log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PostedRoot {
    pub epoch: u64,
    pub root: B256,
    pub manifest_hash: B256,
}

/// The posted root in a chain-events record, if it is the distributor's `Checkpointed`.
pub fn posted_root(payload: &[u8]) -> Option<PostedRoot> {
    let Ok(AnyEvent::ChainLog(log)) = AnyEvent::decode(None, payload) else {
        return None;
    };
    if log.data.contract != "poi_distributor"
        || log.data.event_name.as_deref() != Some("Checkpointed")
    {
        return None;
    }
    let decoded: serde_json::Value = serde_json::from_str(log.data.decoded.as_deref()?).ok()?;
    Some(PostedRoot {
        epoch: decoded.get("epoch")?.as_str()?.parse().ok()?,
        root: decoded.get("root")?.as_str()?.parse().ok()?,
        manifest_hash: decoded.get("manifestHash")?.as_str()?.parse().ok()?,
    })
}

/// What the watcher needs.
pub struct Watcher {
    pub kafka: KafkaArgs,
    pub config: ScoringConfig,
    pub work_dir: PathBuf,
    pub engine: EngineConfig,
    pub reader: DynProvider,
    pub distributor: Address,
    /// The guardian's client: without it the watcher only reports.
    pub guardian: Option<ChainClient>,
}

/// What the watcher concluded about one posted root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Superseded,
    /// The root does not match and was left alone (no guardian key); why.
    Mismatch(String),
    Revoked {
        reason: String,
        tx: String,
    },
    RevokeFailed {
        reason: String,
        error: String,
    },
    TooLate(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Superseded => "superseded",
            Outcome::Mismatch(_) => "mismatch",
            Outcome::Revoked { .. } => "revoked",
            Outcome::RevokeFailed { .. } => "revoke_failed",
            Outcome::TooLate(_) => "too_late",
        }
    }
}

impl Watcher {
    /// Follows the chain events until `shutdown`, checking each posted root once.
    pub async fn run(self, shutdown: Shutdown, readiness: Readiness) -> Result<(), PoiError> {
        register_metrics();
        let (sender, mut posted) = tokio::sync::mpsc::unbounded_channel();
        let apply: ApplyRecord = Arc::new(move |_, _, payload| {
            if let Some(root) = posted_root(payload) {
                let _ = sender.send(root);
            }
        });
        let topic = self.kafka.topic(Topic::ChainEvents);
        follow_topic(&self.kafka, &topic, "poi-watcher", apply, shutdown.clone())
            .await
            .map_err(|e| PoiError::Kafka(format!("following {topic}: {e}")))?;
        readiness.set(true);
        tracing::info!(distributor = %self.distributor, guardian = self.guardian.is_some(), "watching posted PoI roots");
        let mut checked = BTreeSet::new();
        loop {
            let root = tokio::select! {
                _ = shutdown.triggered() => return Ok(()),
                root = posted.recv() => match root {
                    Some(root) => root,
                    None => return Ok(()),
                },
            };
            if !checked.insert(root) {
                continue;
            }
            let outcome = match self.check(root).await {
                Ok(outcome) => outcome,
                Err(error) => {
                    // Not a verdict: retried when the root is seen again after a restart.
                    tracing::error!(epoch = root.epoch, root = %root.root, %error, "could not check a posted root");
                    checked.remove(&root);
                    continue;
                }
            };
            WATCHED.with_label_values(&[outcome.label()]).inc();
            LAST_EPOCH
                .with_label_values(&[outcome.label()])
                .set(i64::try_from(root.epoch).unwrap_or(i64::MAX));
            match &outcome {
                Outcome::Ok => {
                    tracing::info!(epoch = root.epoch, root = %root.root, "posted root matches the log")
                }
                Outcome::Superseded => {
                    tracing::info!(epoch = root.epoch, root = %root.root, "posted root is no longer pending")
                }
                Outcome::Mismatch(reason) => {
                    tracing::error!(epoch = root.epoch, root = %root.root, %reason, "posted root does NOT match the log; no guardian key to revoke it")
                }
                Outcome::Revoked { reason, tx } => {
                    tracing::warn!(epoch = root.epoch, root = %root.root, %reason, %tx, "posted root does not match the log: revoked")
                }
                Outcome::RevokeFailed { reason, error } => {
                    tracing::error!(epoch = root.epoch, root = %root.root, %reason, %error, "posted root does not match the log and revoking it FAILED")
                }
                Outcome::TooLate(reason) => {
                    tracing::error!(epoch = root.epoch, root = %root.root, %reason, "posted root does not match the log and its challenge window has passed")
                }
            }
        }
    }

    /// Checks one posted root and, if it does not match and may still be revoked,
    /// revokes it with the guardian key.
    pub async fn check(&self, posted: PostedRoot) -> Result<Outcome, PoiError> {
        let contract = PoiDistributor::new(self.distributor, &self.reader);
        let state = contract
            .checkpointOf(posted.epoch)
            .call()
            .await
            .map_err(|e| PoiError::ChainRead(e.to_string()))?;
        // Status 1 is Pending (0 None, 2 Revoked).
        if state.status != 1 || state.root != posted.root {
            return Ok(Outcome::Superseded);
        }
        let Some(reason) = self.mismatch(posted).await? else {
            return Ok(Outcome::Ok);
        };
        let window = contract
            .challengeWindow()
            .call()
            .await
            .map_err(|e| PoiError::ChainRead(e.to_string()))?;
        let now = self
            .reader
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(|e| PoiError::ChainRead(e.to_string()))?
            .map(|b| b.header.timestamp)
            .unwrap_or_default();
        if now >= state.postedAt.saturating_add(window) {
            return Ok(Outcome::TooLate(reason));
        }
        let Some(guardian) = &self.guardian else {
            return Ok(Outcome::Mismatch(reason));
        };
        match guardian
            .transact(
                &format!("revoke epoch {}", posted.epoch),
                self.distributor,
                &PoiDistributor::revokeCall {
                    epoch: posted.epoch,
                },
            )
            .await
        {
            Ok(receipt) => Ok(Outcome::Revoked {
                reason,
                tx: format!("{:#x}", receipt.transaction_hash),
            }),
            Err(error) => Ok(Outcome::RevokeFailed {
                reason,
                error: error.to_string(),
            }),
        }
    }

    /// Why `posted` is not the root the log gives, or `None` when it is.
    async fn mismatch(&self, posted: PostedRoot) -> Result<Option<String>, PoiError> {
        let verification = match verify_epoch(
            &self.kafka,
            &self.config,
            posted.epoch,
            &self.work_dir.join(format!("watch-{}", posted.epoch)),
            &self.engine,
            None,
        )
        .await
        {
            Ok(verification) => verification,
            Err(PoiError::NoCheckpoint(epoch)) => {
                return Ok(Some(format!(
                    "no Chorus scorer recorded a checkpoint of epoch {epoch}: the root was not computed from the log"
                )));
            }
            Err(e @ PoiError::ConfigMismatch { .. }) => return Ok(Some(e.to_string())),
            Err(e) => return Err(e),
        };
        if !verification.ok {
            return Ok(Some(verification.problems.join("; ")));
        }
        let root = format!("{:#x}", posted.root);
        if !root.eq_ignore_ascii_case(&verification.computed_root) {
            return Ok(Some(format!(
                "the chain holds root {root}, the log gives {}",
                verification.computed_root
            )));
        }
        let manifest = format!("{:#x}", posted.manifest_hash);
        if !manifest.eq_ignore_ascii_case(&verification.recorded_manifest_hash) {
            return Ok(Some(format!(
                "the chain holds manifest {manifest}, the recorded epoch has {}",
                verification.recorded_manifest_hash
            )));
        }
        Ok(None)
    }
}
