//! Bindings for the Chorus contracts, generated from the artifacts checked in under
//! `infra/contracts/artifacts` (rebuild them with `node infra/contracts/build.mjs`).

#![allow(missing_docs, clippy::too_many_arguments)]

use std::collections::HashMap;

use alloy::dyn_abi::{DecodedEvent, DynSolValue, EventExt};
use alloy::json_abi::{Event, JsonAbi};
use alloy::primitives::{B256, LogData};
use alloy::sol;
use serde_json::{Map, Value};

sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    ChorusToken,
    "../infra/contracts/artifacts/ChorusToken.json"
);
sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    AgentRegistry,
    "../infra/contracts/artifacts/AgentRegistry.json"
);
sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    ProviderRegistry,
    "../infra/contracts/artifacts/ProviderRegistry.json"
);
sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    PoiDistributor,
    "../infra/contracts/artifacts/PoiDistributor.json"
);
sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    StandingBond,
    "../infra/contracts/artifacts/StandingBond.json"
);
sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    LogFixture,
    "../infra/contracts/artifacts/LogFixture.json"
);

/// The kinds of contract Chorus knows, with their ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContractKind {
    Token,
    AgentRegistry,
    ProviderRegistry,
    PoiDistributor,
    /// Users' and developers' bonds (standing in PoI scoring).
    StandingBond,
    /// A test contract that emits logs on demand (load and fault tests).
    LogFixture,
}

impl ContractKind {
    pub const ALL: [ContractKind; 6] = [
        ContractKind::Token,
        ContractKind::AgentRegistry,
        ContractKind::ProviderRegistry,
        ContractKind::PoiDistributor,
        ContractKind::StandingBond,
        ContractKind::LogFixture,
    ];

    /// The name used in config and in `chain.log` events.
    pub fn name(self) -> &'static str {
        match self {
            ContractKind::Token => "token",
            ContractKind::AgentRegistry => "agent_registry",
            ContractKind::ProviderRegistry => "provider_registry",
            ContractKind::PoiDistributor => "poi_distributor",
            ContractKind::StandingBond => "standing_bond",
            ContractKind::LogFixture => "log_fixture",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    fn artifact(self) -> &'static str {
        match self {
            ContractKind::Token => include_str!("../../infra/contracts/artifacts/ChorusToken.json"),
            ContractKind::AgentRegistry => {
                include_str!("../../infra/contracts/artifacts/AgentRegistry.json")
            }
            ContractKind::ProviderRegistry => {
                include_str!("../../infra/contracts/artifacts/ProviderRegistry.json")
            }
            ContractKind::PoiDistributor => {
                include_str!("../../infra/contracts/artifacts/PoiDistributor.json")
            }
            ContractKind::StandingBond => {
                include_str!("../../infra/contracts/artifacts/StandingBond.json")
            }
            ContractKind::LogFixture => {
                include_str!("../../infra/contracts/artifacts/LogFixture.json")
            }
        }
    }

    /// The contract's ABI, parsed from its artifact.
    pub fn abi(self) -> Result<JsonAbi, serde_json::Error> {
        #[derive(serde::Deserialize)]
        struct Artifact {
            abi: JsonAbi,
        }
        serde_json::from_str::<Artifact>(self.artifact()).map(|a| a.abi)
    }
}

/// Why a log could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum LogDecodeError {
    #[error("log has no topics (anonymous events are not part of any Chorus contract)")]
    NoTopics,
    #[error("unknown event signature {topic0} for a {contract} contract")]
    UnknownSignature {
        topic0: B256,
        contract: &'static str,
    },
    #[error("{event} log does not match its ABI: {reason}")]
    Malformed { event: String, reason: String },
    #[error("contract ABI in the artifact is invalid: {0}")]
    Abi(#[from] serde_json::Error),
}

/// Event decoders by (contract kind, topic0).
#[derive(Debug, Clone)]
pub struct EventDecoder {
    events: HashMap<(ContractKind, B256), Event>,
}

impl EventDecoder {
    /// Decoders for every event of every known contract.
    pub fn new() -> Result<Self, LogDecodeError> {
        let mut events = HashMap::new();
        for kind in ContractKind::ALL {
            for event in kind.abi()?.events() {
                events.insert((kind, event.selector()), event.clone());
            }
        }
        Ok(EventDecoder { events })
    }

    /// Decodes a log of a `kind` contract into its event name and a JSON object of its
    /// parameters (addresses checksummed, integers as decimal strings, bytes as hex).
    pub fn decode(
        &self,
        kind: ContractKind,
        log: &LogData,
    ) -> Result<(String, Value), LogDecodeError> {
        let topic0 = *log.topics().first().ok_or(LogDecodeError::NoTopics)?;
        let event = self
            .events
            .get(&(kind, topic0))
            .ok_or(LogDecodeError::UnknownSignature {
                topic0,
                contract: kind.name(),
            })?;
        let DecodedEvent { indexed, body, .. } =
            event
                .decode_log(log)
                .map_err(|e| LogDecodeError::Malformed {
                    event: event.name.clone(),
                    reason: e.to_string(),
                })?;
        let mut indexed = indexed.into_iter();
        let mut body = body.into_iter();
        let mut fields = Map::new();
        for input in &event.inputs {
            let value = if input.indexed {
                indexed.next()
            } else {
                body.next()
            };
            let value = value.ok_or_else(|| LogDecodeError::Malformed {
                event: event.name.clone(),
                reason: format!("missing value for {}", input.name),
            })?;
            fields.insert(input.name.clone(), to_json(&value));
        }
        Ok((event.name.clone(), Value::Object(fields)))
    }
}

/// A Solidity value as JSON: exact integers as decimal strings (wei amounts overflow
/// f64), addresses checksummed, bytes as `0x` hex.
pub fn to_json(value: &DynSolValue) -> Value {
    match value {
        DynSolValue::Bool(b) => Value::Bool(*b),
        DynSolValue::Int(i, _) => Value::String(i.to_string()),
        DynSolValue::Uint(u, _) => Value::String(u.to_string()),
        DynSolValue::FixedBytes(word, size) => {
            Value::String(format!("0x{}", alloy::hex::encode(&word[..*size])))
        }
        DynSolValue::Address(a) => Value::String(a.to_checksum(None)),
        DynSolValue::Function(f) => Value::String(f.to_string()),
        DynSolValue::Bytes(b) => Value::String(format!("0x{}", alloy::hex::encode(b))),
        DynSolValue::String(s) => Value::String(s.clone()),
        DynSolValue::Array(items) | DynSolValue::FixedArray(items) | DynSolValue::Tuple(items) => {
            Value::Array(items.iter().map(to_json).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{Address, U256};
    use alloy::sol_types::SolEvent;

    #[test]
    fn decodes_a_known_event_and_rejects_unknown_and_malformed() {
        let decoder = EventDecoder::new().unwrap();
        let claimed = PoiDistributor::Claimed {
            account: Address::repeat_byte(7),
            epoch: 3,
            amount: U256::from(10u64),
            cumulativeAmount: U256::from(25u64),
        };
        let data = claimed.encode_log_data();
        let (name, fields) = decoder.decode(ContractKind::PoiDistributor, &data).unwrap();
        assert_eq!(name, "Claimed");
        assert_eq!(fields["epoch"], "3");
        assert_eq!(fields["cumulativeAmount"], "25");

        let err = decoder.decode(ContractKind::Token, &data).unwrap_err();
        assert!(
            matches!(err, LogDecodeError::UnknownSignature { .. }),
            "{err}"
        );

        let truncated = LogData::new_unchecked(data.topics().to_vec(), data.data.slice(0..10));
        let err = decoder
            .decode(ContractKind::PoiDistributor, &truncated)
            .unwrap_err();
        assert!(matches!(err, LogDecodeError::Malformed { .. }), "{err}");
    }
}
