//! What the API knows from the log: who owns registry ids and conversations, who is a
//! member of which conversation (both as the router decided them: [`Ownership`]), and
//! which session keys wallets granted ([`Sessions`]). Followed from the registry, the
//! chat log and the sessions topic (read committed) from their beginning, then live.
//!
//! It lets the API answer 409 and 403 where it can know; the router and the
//! orchestrator decide in log order where only the log can.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use alloy::primitives::Address;
use rdkafka::error::KafkaError;

use chorus_router::Ownership;
use chorus_runtime::Shutdown;
use chorus_runtime::kafka::KafkaArgs;
use chorus_runtime::kafka::follow::follow_topic;
use chorus_schemas::{AnyEvent, SessionGranted, SessionRevoked, Topic};
use chorus_signing::{Domain, session_grant, typed, verify_by};

/// The actions a session key may be granted.
pub const SESSION_SCOPES: [&str; 3] = ["chat.message", "feedback", "conversation.read"];

#[derive(Debug, Clone, Default)]
struct SessionState {
    /// The pair's first grant by signed time: (granted_at, expires_at, scopes). A later
    /// grant for the same pair does not replace it: other scopes take another key, so
    /// that a replayed grant can never widen what a key may do.
    grant: Option<(i64, i64, Vec<String>)>,
    /// When the pair was revoked. A revocation is final: the key never signs again for
    /// this wallet, whatever grant is read before or after it.
    revoked_at: Option<i64>,
}

/// Session keys granted by wallets. Every grant and revocation is checked against the
/// wallet's EIP-712 signature before it counts, wherever it was read from.
#[derive(Debug)]
pub struct Sessions {
    domain: Domain,
    by_pair: RwLock<HashMap<(Address, Address), SessionState>>,
}

impl Sessions {
    pub fn new(domain: Domain) -> Self {
        Sessions {
            domain,
            by_pair: RwLock::new(HashMap::new()),
        }
    }

    /// Applies a grant whose signature is the wallet's; only the pair's earliest grant
    /// counts. Returns whether the signature held.
    pub fn apply_grant(&self, grant: &SessionGranted) -> bool {
        let (Ok(wallet), Ok(key)) = (grant.wallet.parse(), grant.session_key.parse()) else {
            return false;
        };
        let (Ok(expires_at), Ok(granted_at)) = (
            u64::try_from(grant.expires_at),
            u64::try_from(grant.granted_at),
        ) else {
            return false;
        };
        let digest = self.domain.digest(&session_grant(
            wallet,
            key,
            &grant.scopes,
            expires_at,
            granted_at,
        ));
        if !verify_by(&grant.signature, &digest, wallet).unwrap_or(false) {
            tracing::warn!(wallet = %wallet, key = %key, "ignoring a session grant the wallet did not sign");
            return false;
        }
        let mut all = self.by_pair.write().unwrap_or_else(|p| p.into_inner());
        let state = all.entry((wallet, key)).or_default();
        if state
            .grant
            .as_ref()
            .is_none_or(|(at, _, _)| *at < grant.granted_at)
        {
            state.grant = Some((grant.granted_at, grant.expires_at, grant.scopes.clone()));
        }
        true
    }

    /// Applies a revocation whose signature is the wallet's.
    pub fn apply_revocation(&self, revocation: &SessionRevoked) -> bool {
        let (Ok(wallet), Ok(key)) = (revocation.wallet.parse(), revocation.session_key.parse())
        else {
            return false;
        };
        let Ok(timestamp) = u64::try_from(revocation.revoked_at) else {
            return false;
        };
        let digest = self.domain.digest(&typed::SessionRevoke {
            wallet,
            sessionKey: key,
            timestamp,
        });
        if !verify_by(&revocation.signature, &digest, wallet).unwrap_or(false) {
            tracing::warn!(wallet = %wallet, key = %key, "ignoring a session revocation the wallet did not sign");
            return false;
        }
        let mut all = self.by_pair.write().unwrap_or_else(|p| p.into_inner());
        let state = all.entry((wallet, key)).or_default();
        state.revoked_at = Some(
            state
                .revoked_at
                .map_or(revocation.revoked_at, |at| at.min(revocation.revoked_at)),
        );
        true
    }

    /// Whether `key` may sign `action` for `wallet` at `now`: `Err(None)` if it was
    /// never granted, `Err(Some(reason))` if revoked, expired or out of scope.
    pub fn check(
        &self,
        wallet: Address,
        key: Address,
        action: &str,
        now: i64,
    ) -> Result<(), Option<String>> {
        let all = self.by_pair.read().unwrap_or_else(|p| p.into_inner());
        let state = all.get(&(wallet, key)).ok_or(None)?;
        if let Some(revoked_at) = state.revoked_at {
            return Err(Some(format!("revoked at {revoked_at}")));
        }
        let (_, expires_at, scopes) = state.grant.as_ref().ok_or(None)?;
        if now >= *expires_at {
            return Err(Some(format!("expired at {expires_at}")));
        }
        if !scopes.iter().any(|s| s == action) {
            return Err(Some(format!("not granted {action} (scopes {scopes:?})")));
        }
        Ok(())
    }

    fn apply(&self, payload: &[u8]) {
        match AnyEvent::decode(None, payload) {
            Ok(AnyEvent::SessionGranted(e)) => {
                self.apply_grant(&e.data);
            }
            Ok(AnyEvent::SessionRevoked(e)) => {
                self.apply_revocation(&e.data);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "skipping an undecodable session record"),
        }
    }
}

/// Everything the API follows from the log.
#[derive(Debug)]
pub struct Directory {
    pub ownership: Arc<Ownership>,
    pub sessions: Arc<Sessions>,
}

impl Directory {
    pub fn new(domain: Domain) -> Self {
        Directory {
            ownership: Arc::new(Ownership::default()),
            sessions: Arc::new(Sessions::new(domain)),
        }
    }

    /// Loads the registry, the chat log's membership changes and the sessions, then
    /// keeps following them until `shutdown`.
    pub async fn follow(&self, kafka: &KafkaArgs, shutdown: Shutdown) -> Result<(), KafkaError> {
        for (topic, client) in [
            (Topic::Registry, "ingest-registry"),
            (Topic::ChatMessages, "ingest-conversations"),
        ] {
            let ownership = self.ownership.clone();
            follow_topic(
                kafka,
                &kafka.topic(topic),
                client,
                Arc::new(move |_, _, payload| ownership.apply_decided(payload)),
                shutdown.clone(),
            )
            .await?;
        }
        let sessions = self.sessions.clone();
        follow_topic(
            kafka,
            &kafka.topic(Topic::Sessions),
            "ingest-sessions",
            Arc::new(move |_, _, payload| sessions.apply(payload)),
            shutdown,
        )
        .await?;
        Ok(())
    }

    /// Whether `id` is a member of `conversation_id`, waiting up to `wait` for the log
    /// to catch up when it is not yet (a conversation just created, a member just
    /// added): `None` if the conversation is still unknown then.
    pub async fn is_member(
        &self,
        conversation_id: &str,
        kind: chorus_schemas::AuthorKind,
        id: &str,
        wait: Duration,
    ) -> Option<bool> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let answer = self.ownership.is_member(conversation_id, kind, id);
            if answer == Some(true) || tokio::time::Instant::now() >= deadline {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::signers::SignerSync;
    use alloy::signers::local::PrivateKeySigner;

    fn domain() -> Domain {
        Domain {
            chain_id: 56,
            verifying_contract: Address::repeat_byte(0x11),
        }
    }

    fn grant(wallet: &PrivateKeySigner, key: Address, at: i64, expires: i64) -> SessionGranted {
        let scopes = vec!["chat.message".to_owned()];
        let digest = domain().digest(&session_grant(
            wallet.address(),
            key,
            &scopes,
            expires as u64,
            at as u64,
        ));
        SessionGranted {
            wallet: wallet.address().to_string(),
            session_key: key.to_string(),
            scopes,
            granted_at: at,
            expires_at: expires,
            signature: wallet.sign_hash_sync(&digest).unwrap().to_string(),
        }
    }

    fn revoke(wallet: &PrivateKeySigner, key: Address, at: i64) -> SessionRevoked {
        let digest = domain().digest(&typed::SessionRevoke {
            wallet: wallet.address(),
            sessionKey: key,
            timestamp: at as u64,
        });
        SessionRevoked {
            wallet: wallet.address().to_string(),
            session_key: key.to_string(),
            revoked_at: at,
            signature: wallet.sign_hash_sync(&digest).unwrap().to_string(),
        }
    }

    #[test]
    fn a_grant_counts_until_it_expires_or_is_revoked_and_a_replayed_grant_does_not_revive_it() {
        let sessions = Sessions::new(domain());
        let wallet = PrivateKeySigner::random();
        let key = PrivateKeySigner::random().address();
        let w = wallet.address();
        assert_eq!(sessions.check(w, key, "chat.message", 100), Err(None));
        let first = grant(&wallet, key, 100, 1000);
        assert!(sessions.apply_grant(&first));
        assert_eq!(sessions.check(w, key, "chat.message", 200), Ok(()));
        assert!(
            sessions
                .check(w, key, "feedback", 200)
                .unwrap_err()
                .is_some()
        );
        assert!(
            sessions
                .check(w, key, "chat.message", 1000)
                .unwrap_err()
                .is_some()
        );
        // A later grant for the pair does not replace the first (no widening by replay).
        let wider = SessionGranted {
            scopes: vec!["chat.message".into(), "feedback".into()],
            ..grant(&wallet, key, 150, 5000)
        };
        sessions.apply_grant(&wider);
        assert!(sessions.check(w, key, "feedback", 200).is_err());
        assert!(sessions.apply_revocation(&revoke(&wallet, key, 300)));
        assert!(
            sessions
                .check(w, key, "chat.message", 400)
                .unwrap_err()
                .is_some()
        );
        // A revocation is final: neither the old grant replayed nor a new one revives
        // the key, in whatever order they are read.
        assert!(sessions.apply_grant(&first));
        assert!(sessions.check(w, key, "chat.message", 400).is_err());
        assert!(sessions.apply_grant(&grant(&wallet, key, 500, 1000)));
        assert!(sessions.check(w, key, "chat.message", 600).is_err());
        // A grant somebody else signed for this wallet is ignored.
        let forger = PrivateKeySigner::random();
        let mut forged = grant(&forger, PrivateKeySigner::random().address(), 100, 1000);
        forged.wallet = w.to_string();
        assert!(!sessions.apply_grant(&forged));
    }
}
