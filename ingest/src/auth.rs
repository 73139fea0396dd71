//! Who may write: API keys with scopes, and EIP-191 signatures for actions taken as a
//! wallet account.
//!
//! API keys are configured from a file or the environment only, and kept as Keccak-256
//! hashes; a request presents `Authorization: Bearer <key>`. A signed request carries
//! `signature` (65-byte hex) over the EIP-191 personal message
//! `chorus:<action>\n<canonical JSON of the body without "signature">` (canonical: keys
//! sorted, no whitespace), and a `timestamp` (unix seconds) within the replay window.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::str::FromStr;

use alloy::primitives::{Address, B256, Signature, keccak256};
use serde::Deserialize;
use serde_json::Value;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub enum Scope {
    #[serde(rename = "chat:write")]
    ChatWrite,
    #[serde(rename = "feedback:write")]
    FeedbackWrite,
    #[serde(rename = "agents:write")]
    AgentsWrite,
    #[serde(rename = "providers:write")]
    ProvidersWrite,
    #[serde(rename = "events:read")]
    EventsRead,
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(Value::String(s.to_owned()))
            .map_err(|_| format!("unknown scope {s:?}"))
    }
}

/// A configured key (never its secret).
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub name: String,
    pub scopes: BTreeSet<Scope>,
}

/// The key store, by secret hash.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    by_hash: HashMap<B256, ApiKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    key: Vec<KeyEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    /// Keccak-256 of the secret, 0x hex (preferred: the file then holds no secret).
    #[serde(default)]
    secret_keccak256: Option<String>,
    /// The secret itself (for development files only).
    #[serde(default)]
    secret: Option<String>,
    scopes: Vec<Scope>,
}

impl ApiKeys {
    pub fn insert(&mut self, name: &str, secret: &str, scopes: impl IntoIterator<Item = Scope>) {
        self.by_hash.insert(
            keccak256(secret.as_bytes()),
            ApiKey {
                name: name.to_owned(),
                scopes: scopes.into_iter().collect(),
            },
        );
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// `name:secret:scope+scope;name:secret:scope` (the `CHORUS_API_KEYS` format).
    pub fn parse_env(value: &str) -> Result<Self, String> {
        let mut keys = ApiKeys::default();
        for entry in value.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let mut parts = entry.splitn(3, ':');
            let (Some(name), Some(secret), Some(scopes)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!(
                    "API key entry for {:?} is not name:secret:scopes",
                    entry.split(':').next().unwrap_or("")
                ));
            };
            let scopes: Vec<Scope> = scopes
                .split('+')
                .map(Scope::from_str)
                .collect::<Result<_, _>>()?;
            keys.insert(name, secret, scopes);
        }
        Ok(keys)
    }

    /// A TOML file of `[[key]]` entries with `name`, `secret_keccak256` (or `secret`), `scopes`.
    pub fn load_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let file: KeyFile =
            toml::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))?;
        let mut keys = ApiKeys::default();
        for entry in file.key {
            let hash = match (&entry.secret_keccak256, &entry.secret) {
                (Some(hex), _) => B256::from_str(hex)
                    .map_err(|e| format!("key {}: secret_keccak256: {e}", entry.name))?,
                (None, Some(secret)) => keccak256(secret.as_bytes()),
                (None, None) => {
                    return Err(format!(
                        "key {} has neither secret_keccak256 nor secret",
                        entry.name
                    ));
                }
            };
            keys.by_hash.insert(
                hash,
                ApiKey {
                    name: entry.name,
                    scopes: entry.scopes.into_iter().collect(),
                },
            );
        }
        Ok(keys)
    }

    /// The key a bearer secret belongs to. Comparison is of fixed-size hashes.
    pub fn authenticate(&self, secret: &str) -> Option<&ApiKey> {
        self.by_hash.get(&keccak256(secret.as_bytes()))
    }
}

/// Why a signature was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SignatureError {
    #[error("the request is not signed (add \"signature\")")]
    Missing,
    #[error("\"signature\" is not a 65-byte hex signature")]
    Malformed,
    #[error(
        "\"timestamp\" is missing or outside the {window}s window around the server time {now}"
    )]
    Stale { window: i64, now: i64 },
    #[error("the signature was made by {recovered}, not by {claimed}")]
    WrongSigner {
        claimed: Address,
        recovered: Address,
    },
    #[error(
        "the signature has a high s value (malleable, EIP-2): sign again, or normalise s to n - s and flip v"
    )]
    HighS,
}

/// A verified signature: who signed, and what (the EIP-191 digest of the signed text).
/// Every spelling of one signature (v as 0/1 or 27/28, upper- or lower-case hex, with or
/// without `0x`) verifies to the same pair, and the pair, never the signature's text, is
/// the request's identity for replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    pub signer: Address,
    pub digest: B256,
}

/// The text an account signs (EIP-191 personal message) for `action` with `body`.
pub fn signing_message(action: &str, body: &Value) -> String {
    let mut unsigned = body.clone();
    if let Value::Object(map) = &mut unsigned {
        map.remove("signature");
    }
    // serde_json's map keeps keys sorted, so this is canonical.
    format!("chorus:{action}\n{unsigned}")
}

/// Checks that `body` was signed by `claimed` for `action` within `window_seconds`, with
/// a low-s signature; returns the signer and the digest it signed.
pub fn verify_signed(
    action: &str,
    body: &Value,
    claimed: Address,
    now: i64,
    window_seconds: i64,
) -> Result<Signed, SignatureError> {
    let signature = body
        .get("signature")
        .and_then(Value::as_str)
        .ok_or(SignatureError::Missing)?;
    let signature = Signature::from_str(signature).map_err(|_| SignatureError::Malformed)?;
    let timestamp = body
        .get("timestamp")
        .and_then(Value::as_i64)
        .ok_or(SignatureError::Stale {
            window: window_seconds,
            now,
        })?;
    if (now - timestamp).abs() > window_seconds {
        return Err(SignatureError::Stale {
            window: window_seconds,
            now,
        });
    }
    // Both (r, s) and (r, n - s) recover the same signer: accept only the low one, so a
    // signature has one form (EIP-2, as Ethereum transactions do).
    if signature.normalize_s().is_some() {
        return Err(SignatureError::HighS);
    }
    let digest = alloy::primitives::eip191_hash_message(signing_message(action, body));
    let recovered = signature
        .recover_address_from_prehash(&digest)
        .map_err(|_| SignatureError::Malformed)?;
    if recovered != claimed {
        return Err(SignatureError::WrongSigner { claimed, recovered });
    }
    Ok(Signed {
        signer: recovered,
        digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::signers::SignerSync;
    use alloy::signers::local::PrivateKeySigner;
    use serde_json::json;

    fn signed(signer: &PrivateKeySigner, action: &str, mut body: Value) -> Value {
        let signature = signer
            .sign_message_sync(signing_message(action, &body).as_bytes())
            .unwrap();
        body["signature"] = json!(signature.to_string());
        body
    }

    #[test]
    fn signatures_bind_signer_action_body_and_time() {
        let signer = PrivateKeySigner::random();
        let body = signed(
            &signer,
            "chat.message",
            json!({"content": "hi", "timestamp": 1000, "author": signer.address().to_string()}),
        );
        let verified = verify_signed("chat.message", &body, signer.address(), 1000, 300).unwrap();
        assert_eq!(verified.signer, signer.address());
        assert!(matches!(
            verify_signed("feedback", &body, signer.address(), 1000, 300),
            Err(SignatureError::WrongSigner { .. })
        ));
        let other = PrivateKeySigner::random();
        assert!(matches!(
            verify_signed("chat.message", &body, other.address(), 1000, 300),
            Err(SignatureError::WrongSigner { .. })
        ));
        let mut tampered = body.clone();
        tampered["content"] = json!("HI");
        assert!(matches!(
            verify_signed("chat.message", &tampered, signer.address(), 1000, 300),
            Err(SignatureError::WrongSigner { .. })
        ));
        assert!(matches!(
            verify_signed("chat.message", &body, signer.address(), 2000, 300),
            Err(SignatureError::Stale { .. })
        ));
        let mut unsigned = body.clone();
        unsigned.as_object_mut().unwrap().remove("signature");
        assert_eq!(
            verify_signed("chat.message", &unsigned, signer.address(), 1000, 300),
            Err(SignatureError::Missing)
        );
        unsigned["signature"] = json!("0x1234");
        assert_eq!(
            verify_signed("chat.message", &unsigned, signer.address(), 1000, 300),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn every_spelling_of_a_signature_is_one_request_and_high_s_is_refused() {
        let signer = PrivateKeySigner::random();
        let body = signed(
            &signer,
            "chat.message",
            json!({"content": "hi", "timestamp": 1000, "author": signer.address().to_string()}),
        );
        let text = body["signature"].as_str().unwrap().to_owned();
        let first = verify_signed("chat.message", &body, signer.address(), 1000, 300).unwrap();
        let bytes = alloy::hex::decode(&text).unwrap();
        let v = bytes[64];
        let mut spellings = vec![
            text.to_uppercase().replace("0X", "0x"),
            text.trim_start_matches("0x").to_owned(),
        ];
        // v as 0/1 instead of 27/28.
        let mut low_v = bytes.clone();
        low_v[64] = v - 27;
        spellings.push(alloy::hex::encode_prefixed(&low_v));
        for spelling in spellings {
            let mut respelled = body.clone();
            respelled["signature"] = json!(spelling);
            assert_eq!(
                verify_signed("chat.message", &respelled, signer.address(), 1000, 300),
                Ok(first),
                "{spelling}"
            );
        }
        // (r, n - s) with v flipped recovers the same signer: refused.
        let signature = Signature::from_str(&text).unwrap();
        let order = alloy::primitives::U256::from_str_radix(
            "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
            16,
        )
        .unwrap();
        let high = Signature::new(signature.r(), order - signature.s(), !signature.v());
        let mut malleated = body.clone();
        malleated["signature"] = json!(high.to_string());
        assert_eq!(
            verify_signed("chat.message", &malleated, signer.address(), 1000, 300),
            Err(SignatureError::HighS)
        );
    }

    #[test]
    fn keys_from_env_and_scopes() {
        let keys = ApiKeys::parse_env("app:s3cret:chat:write+events:read; ops:other:agents:write")
            .unwrap();
        let key = keys.authenticate("s3cret").unwrap();
        assert_eq!(key.name, "app");
        assert!(key.scopes.contains(&Scope::ChatWrite) && key.scopes.contains(&Scope::EventsRead));
        assert!(!key.scopes.contains(&Scope::AgentsWrite));
        assert!(keys.authenticate("wrong").is_none());
        assert!(ApiKeys::parse_env("bad").is_err());
        assert!(ApiKeys::parse_env("a:b:nope").is_err());
    }
}
