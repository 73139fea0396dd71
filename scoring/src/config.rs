//! The versioned scoring config (`infra/poi/scoring-v1.toml`) and its hash.

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
