//! Who may write: API keys with scopes, and EIP-712 signatures for actions taken as a
//! wallet account (or by a session key the wallet granted).
//!
//! API keys are configured from a file or the environment only, and kept as Keccak-256
//! hashes; a request presents `Authorization: Bearer <key>`. A signed request carries
//! `signature` (65-byte hex) over the action's EIP-712 typed data
//! ([`chorus_signing::typed`]) under the deployment's domain, and a `timestamp` (unix
//! seconds) within the replay window. The legacy EIP-191 personal message
//! `chorus:<action>\n<canonical JSON of the body without "signature">` is accepted only
//! when configured.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::str::FromStr;

use alloy::primitives::{Address, B256, keccak256};
pub use chorus_signing::Domain;
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

/// How signed requests are checked: the EIP-712 domain (one chain, one deployment),
/// whether the legacy EIP-191 text is still accepted, and the replay window.
#[derive(Debug, Clone, Copy)]
pub struct SignaturePolicy {
    pub domain: Domain,
    /// Accept `chorus:<action>\n<canonical JSON>` EIP-191 signatures too (existing
    /// clients); the replay identity is then the EIP-191 digest.
    pub accept_eip191: bool,
    pub window_seconds: i64,
}

/// Why a signature was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SignatureError {
    #[error("the request is not signed (add \"signature\")")]
    Missing,
    #[error(transparent)]
    Unusable(#[from] chorus_signing::SignatureError),
    #[error(
        "\"timestamp\" is missing or outside the {window}s window around the server time {now}"
    )]
    Stale { window: i64, now: i64 },
    #[error(
        "the signature was made by {recovered}, not by {claimed} nor a session key it granted (check the EIP-712 domain: name Chorus, version 1, this deployment's chainId and verifyingContract, and the action's type)"
    )]
    WrongSigner {
        claimed: Address,
        recovered: Address,
    },
    #[error("session key {key} of {wallet}: {reason}")]
    Session {
        wallet: Address,
        key: Address,
        reason: String,
    },
}

/// A verified signature: whose action it is (`author`), which key signed it (the author
/// or a session key the author granted) and the digest signed. Every spelling of one
/// signature (v as 0/1 or 27/28, upper- or lower-case hex, with or without `0x`)
/// verifies to the same triple, and (signer, digest), never the signature's text, is the
/// request's identity for replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    pub author: Address,
    pub signer: Address,
    pub digest: B256,
}

/// What a session-key lookup says about `key` signing `action` for a wallet: `Ok` if
/// granted and live, `Err(None)` if the key was never granted, `Err(Some(reason))` if it
/// was, but is revoked, expired or not granted this action.
pub type Delegation<'a> = &'a dyn Fn(Address) -> Result<(), Option<String>>;

/// The legacy EIP-191 text an account signs for `action` with `body`.
pub fn signing_message(action: &str, body: &Value) -> String {
    chorus_signing::eip191_message(action, body)
}

/// Checks that `body` (with `signature` and `timestamp`) was signed for `action`, whose
/// EIP-712 digest is `typed_digest`, by `claimed` or by a session key `delegated`
/// accepts, within the window, with a low-s signature.
pub fn verify_signed(
    policy: &SignaturePolicy,
    action: &str,
    typed_digest: B256,
    body: &Value,
    claimed: Address,
    now: i64,
    delegated: Option<Delegation<'_>>,
) -> Result<Signed, SignatureError> {
    let text = body
        .get("signature")
        .and_then(Value::as_str)
        .ok_or(SignatureError::Missing)?;
    let signature = chorus_signing::parse_signature(text)?;
    let window = policy.window_seconds;
    let timestamp = body
        .get("timestamp")
        .and_then(Value::as_i64)
        .filter(|t| *t >= 0)
        .ok_or(SignatureError::Stale { window, now })?;
    if now.abs_diff(timestamp) > window.unsigned_abs() {
        return Err(SignatureError::Stale { window, now });
    }
    let recovered = chorus_signing::recover(&signature, &typed_digest)?;
    let signed = |signer, digest| Signed {
        author: claimed,
        signer,
        digest,
    };
    if recovered == claimed {
        return Ok(signed(recovered, typed_digest));
    }
    if policy.accept_eip191 {
        let digest = chorus_signing::eip191_digest(action, body);
        if chorus_signing::recover(&signature, &digest)? == claimed {
            return Ok(signed(claimed, digest));
        }
    }
    if let Some(delegated) = delegated {
        match delegated(recovered) {
            Ok(()) => return Ok(signed(recovered, typed_digest)),
            Err(Some(reason)) => {
                return Err(SignatureError::Session {
                    wallet: claimed,
                    key: recovered,
                    reason,
                });
            }
            Err(None) => {}
        }
    }
    Err(SignatureError::WrongSigner { claimed, recovered })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::signers::SignerSync;
    use alloy::signers::local::PrivateKeySigner;
    use chorus_signing::typed;
    use serde_json::json;

    fn policy(accept_eip191: bool) -> SignaturePolicy {
        SignaturePolicy {
            domain: Domain {
                chain_id: 56,
                verifying_contract: Address::repeat_byte(0x11),
            },
            accept_eip191,
            window_seconds: 300,
        }
    }

    fn typed_message(author: Address, content: &str) -> typed::ChatMessage {
        typed::ChatMessage {
            author,
            conversationId: "c".into(),
            content: content.into(),
            mentions: vec![],
            replyTo: String::new(),
            timestamp: 1000,
        }
    }

    fn body(signature: &str) -> Value {
        json!({"content": "hi", "timestamp": 1000, "signature": signature})
    }

    #[test]
    fn typed_signatures_bind_signer_content_time_and_domain() {
        let wallet = PrivateKeySigner::random();
        let policy = policy(false);
        let digest = policy.domain.digest(&typed_message(wallet.address(), "hi"));
        let signature = wallet.sign_hash_sync(&digest).unwrap().to_string();
        let verified = verify_signed(
            &policy,
            "chat.message",
            digest,
            &body(&signature),
            wallet.address(),
            1000,
            None,
        )
        .unwrap();
        assert_eq!(
            (verified.signer, verified.digest),
            (wallet.address(), digest)
        );
        let tampered = policy.domain.digest(&typed_message(wallet.address(), "HI"));
        assert!(matches!(
            verify_signed(
                &policy,
                "chat.message",
                tampered,
                &body(&signature),
                wallet.address(),
                1000,
                None
            ),
            Err(SignatureError::WrongSigner { .. })
        ));
        assert!(matches!(
            verify_signed(
                &policy,
                "chat.message",
                digest,
                &body(&signature),
                wallet.address(),
                2000,
                None
            ),
            Err(SignatureError::Stale { .. })
        ));
        assert_eq!(
            verify_signed(
                &policy,
                "chat.message",
                digest,
                &json!({"timestamp": 1000}),
                wallet.address(),
                1000,
                None
            ),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn eip191_only_behind_the_flag_and_session_keys_only_when_granted() {
        let wallet = PrivateKeySigner::random();
        let unsigned = json!({"content": "hi", "timestamp": 1000});
        let legacy = wallet
            .sign_message_sync(signing_message("chat.message", &unsigned).as_bytes())
            .unwrap()
            .to_string();
        let digest = policy(true)
            .domain
            .digest(&typed_message(wallet.address(), "hi"));
        let refused = verify_signed(
            &policy(false),
            "chat.message",
            digest,
            &body(&legacy),
            wallet.address(),
            1000,
            None,
        );
        assert!(matches!(refused, Err(SignatureError::WrongSigner { .. })));
        let accepted = verify_signed(
            &policy(true),
            "chat.message",
            digest,
            &body(&legacy),
            wallet.address(),
            1000,
            None,
        )
        .unwrap();
        assert_eq!(
            accepted.digest,
            chorus_signing::eip191_digest("chat.message", &unsigned)
        );

        let app_key = PrivateKeySigner::random();
        let by_key = app_key.sign_hash_sync(&digest).unwrap().to_string();
        let granted = |key: Address| {
            if key == app_key.address() {
                Ok(())
            } else {
                Err(None)
            }
        };
        let verified = verify_signed(
            &policy(false),
            "chat.message",
            digest,
            &body(&by_key),
            wallet.address(),
            1000,
            Some(&granted),
        )
        .unwrap();
        assert_eq!(
            (verified.author, verified.signer),
            (wallet.address(), app_key.address())
        );
        let revoked = |_: Address| Err(Some("revoked".to_owned()));
        assert!(matches!(
            verify_signed(
                &policy(false),
                "chat.message",
                digest,
                &body(&by_key),
                wallet.address(),
                1000,
                Some(&revoked)
            ),
            Err(SignatureError::Session { .. })
        ));
        let never = |_: Address| Err(None);
        assert!(matches!(
            verify_signed(
                &policy(false),
                "chat.message",
                digest,
                &body(&by_key),
                wallet.address(),
                1000,
                Some(&never)
            ),
            Err(SignatureError::WrongSigner { .. })
        ));
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
