//! The versioned scoring configs (`infra/poi/scoring-v1.toml`, `scoring-v2.toml`,
//! `scoring-v3.toml`) and their hash.

use std::collections::BTreeMap;
use std::path::Path;

use alloy::primitives::{B256, U256, keccak256};
use serde::{Deserialize, Serialize};

/// Everything that determines scores besides the events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoringConfig {
    pub version: String,
    pub epoch: EpochConfig,
    pub pool: PoolConfig,
    pub weights: KindValues,
    pub caps: KindValues,
    pub feedback: FeedbackConfig,
    pub default_model: ModelPrice,
    #[serde(default)]
    pub models: BTreeMap<String, ModelPrice>,
    /// The rules added after `poi-v1` (issue 18). Absent in v1 (none of them applies),
    /// and then left out of the canonical form, so v1's hash is what it always was.
    #[serde(default, skip_serializing_if = "Rules::is_v1")]
    pub rules: Rules,
    /// Standing (added in `poi-v3`): user and developer units count only for accounts
    /// bonded in `StandingBond` at the epoch's end, capped in proportion to the bond,
    /// with the self-dealing rules that come with it (see [`StandingConfig`]). Absent
    /// before v3, and then left out of the canonical form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing: Option<StandingConfig>,
}

/// What a bond buys, per whole CHR bonded at the epoch's end (the latest `Bonded` /
/// `Unbonded` total of the account in the epoch's chain events). With it:
/// - an account's `message_used`, `feedback_given` and `agent_call` units are capped at
///   its bond times these (on top of `[caps]`); an account without a bond earns none;
/// - a served call counts for its agent's owner only if a bonded human other than the
///   owner sent the message that triggered it (agent-triggered calls pay providers only);
/// - a message counts for its author only if it triggered a call and its author owns no
///   agent called in that conversation;
/// - a rating carries weight (stars and `feedback_given`) only if its rater sent the
///   message the rated reply answers, is bonded, and owns no agent called in the
///   conversation.
///
/// Units linear in the bond make splitting one bond over N addresses earn what it earns
/// from one address: sum_i min(u_i, r * b_i) <= min(sum_i u_i, r * sum_i b_i).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandingConfig {
    pub agent_call_per_chr: u64,
    /// The call units one asker's messages can earn an agent owner, per whole CHR of
    /// the asker's bond: a sock-puppet user earns its developer no more than its own
    /// bond buys, however many messages it sends.
    pub agent_call_per_asker_chr: u64,
    pub message_used_per_chr: u64,
    pub feedback_given_per_chr: u64,
}

/// Rules against paying for what is not real work (issue 18); all off in `poi-v1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Pay a provider only if its stake on chain (the latest `ProviderRegistered`,
    /// `Staked` or `Unstaked` total in the epoch's chain events) is above zero at the
    /// epoch's end: a provider that unstakes to zero is not paid for the epoch.
    #[serde(default)]
    pub providers_paid_only_if_staked_at_epoch_end: bool,
    /// Count one rating per (rater, reply), the first (lowest event id, so the earliest):
    /// rating a reply again and again adds neither stars nor units.
    #[serde(default)]
    pub one_rating_per_rater_and_reply: bool,
    /// Pay a provider only for jobs that name it (the orchestrator's assignment): a job
    /// that names no provider pays none, so undercutting to take every job of a model
    /// earns nothing (poi-v3; left out of the canonical form when off, so v2's hash is
    /// unchanged).
    #[serde(default, skip_serializing_if = "is_false")]
    pub providers_paid_only_for_assigned_jobs: bool,
    /// Meter inference by what Chorus sent and received, not by the provider's `usage`:
    /// a job's prompt units are the bytes of the prompt the orchestrator built, its
    /// completion units the bytes of the content the worker received, at most 4 per
    /// token of the job's `max_tokens`; the `[models]` prices are then per byte. A
    /// provider that reports more than it served earns exactly what an honest one does
    /// (poi-v3; left out of the canonical form when off).
    #[serde(default, skip_serializing_if = "is_false")]
    pub inference_metered_in_bytes: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl Rules {
    fn is_v1(&self) -> bool {
        *self == Rules::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochConfig {
    pub genesis_ms: i64,
    pub length_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Decimal wei.
    pub reward_wei_per_epoch: String,
    pub provider_share_bps: u32,
    pub agent_developer_share_bps: u32,
    pub user_share_bps: u32,
}

/// One value per item kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindValues {
    pub inference: u64,
    pub agent_call: u64,
    pub message_used: u64,
    pub feedback_given: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackConfig {
    pub base_percent: u64,
    pub per_star_percent: u64,
    pub max_percent: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub prompt: u64,
    pub completion: u64,
}

/// A config that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("invalid scoring config: {0}")]
    Invalid(String),
}

impl ScoringConfig {
    /// Reads and checks a TOML config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&text)
    }

    /// Parses and checks TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: ScoringConfig =
            toml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let shares = u64::from(self.pool.provider_share_bps)
            + u64::from(self.pool.agent_developer_share_bps)
            + u64::from(self.pool.user_share_bps);
        if shares != 10_000 {
            return Err(ConfigError::Invalid(format!(
                "pool shares add up to {shares} basis points, not 10000"
            )));
        }
        self.reward_pool()?;
        if self.epoch.length_seconds == 0 {
            return Err(ConfigError::Invalid(
                "epoch.length_seconds must be > 0".into(),
            ));
        }
        for model in self.models.keys() {
            if model.contains('\'') {
                return Err(ConfigError::Invalid(format!(
                    "model name {model:?} contains a quote"
                )));
            }
        }
        Ok(())
    }

    /// The pool in wei.
    pub fn reward_pool(&self) -> Result<U256, ConfigError> {
        U256::from_str_radix(self.pool.reward_wei_per_epoch.trim(), 10).map_err(|e| {
            ConfigError::Invalid(format!(
                "pool.reward_wei_per_epoch is not a decimal integer: {e}"
            ))
        })
    }

    /// keccak256 of the canonical JSON of the parsed config: formatting and comments do
    /// not change it, any value does.
    pub fn hash(&self) -> B256 {
        keccak256(serde_json::to_vec(self).unwrap_or_default())
    }

    /// The record-time window `[start, end)` of an epoch, in ms.
    pub fn window(&self, epoch: u64) -> (i64, i64) {
        let length = (self.epoch.length_seconds as i64).saturating_mul(1000);
        let start = self
            .epoch
            .genesis_ms
            .saturating_add(length.saturating_mul(epoch as i64));
        (start, start.saturating_add(length))
    }

    /// The epoch that contains `time_ms`.
    pub fn epoch_at(&self, time_ms: i64) -> u64 {
        let length = (self.epoch.length_seconds as i64)
            .saturating_mul(1000)
            .max(1);
        (time_ms.saturating_sub(self.epoch.genesis_ms).max(0) / length) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_parses_and_its_hash_ignores_formatting() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../infra/poi/scoring-v1.toml"
        ))
        .unwrap();
        let config = ScoringConfig::parse(&text).unwrap();
        let reformatted = ScoringConfig::parse(&text.replace(" = ", "=")).unwrap();
        assert_eq!(config.hash(), reformatted.hash());
        let mut changed = config.clone();
        changed.weights.inference += 1;
        assert_ne!(config.hash(), changed.hash());
        let (start, end) = config.window(2);
        assert_eq!(end - start, 86_400_000);
        assert_eq!(config.epoch_at(start), 2);
        assert_eq!(config.epoch_at(end - 1), 2);
    }

    #[test]
    fn v2_adds_the_stake_rule_and_v1_hashes_as_it_always_did() {
        let read = |name: &str| {
            std::fs::read_to_string(format!(
                "{}/../infra/poi/{name}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap()
        };
        let v1 = ScoringConfig::parse(&read("scoring-v1.toml")).unwrap();
        let v2 = ScoringConfig::parse(&read("scoring-v2.toml")).unwrap();
        assert_eq!(v1.rules, Rules::default());
        assert!(v2.rules.providers_paid_only_if_staked_at_epoch_end);
        assert!(v2.rules.one_rating_per_rater_and_reply);
        // v1's canonical form is the one before the rules existed: its hash is unchanged.
        let canonical = serde_json::to_string(&v1).unwrap();
        assert!(!canonical.contains("rules"), "{canonical}");
        assert_ne!(v1.hash(), v2.hash());
    }

    #[test]
    fn v3_adds_standing_and_v2_hashes_as_it_always_did() {
        let read = |name: &str| {
            std::fs::read_to_string(format!(
                "{}/../infra/poi/{name}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap()
        };
        let v2 = ScoringConfig::parse(&read("scoring-v2.toml")).unwrap();
        let v3 = ScoringConfig::parse(&read("scoring-v3.toml")).unwrap();
        assert!(v2.standing.is_none());
        assert!(!v2.rules.providers_paid_only_for_assigned_jobs);
        assert!(!v2.rules.inference_metered_in_bytes);
        let canonical = serde_json::to_string(&v2).unwrap();
        for added in ["standing", "assigned_jobs", "metered_in_bytes"] {
            assert!(!canonical.contains(added), "{canonical}");
        }
        assert!(v3.standing.is_some());
        assert!(
            v3.rules.providers_paid_only_for_assigned_jobs && v3.rules.inference_metered_in_bytes
        );
        assert_ne!(v2.hash(), v3.hash());
    }

    #[test]
    fn rejects_bad_shares_and_unknown_keys() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../infra/poi/scoring-v1.toml"
        ))
        .unwrap();
        assert!(
            ScoringConfig::parse(&text.replace("user_share_bps = 2000", "user_share_bps = 2001"))
                .is_err()
        );
        assert!(ScoringConfig::parse(&format!("{text}\nsurprise = 1\n")).is_err());
    }
}
