//! What Chorus accounts sign. Every signed action is EIP-712 typed data ([`typed`]) under
//! one domain ([`Domain`]: name `Chorus`, version `1`, the chain id and the deployment's
//! contract), so a wallet shows the fields it signs and a signature is valid for one
//! action of one deployment on one chain only. Signatures are 65 bytes; only the low-s
//! form is accepted (EIP-2), so one signature has one meaning whatever its spelling
//! (`0x` or not, upper or lower case, v as 0/1 or 27/28).
//!
//! The legacy EIP-191 form (`chorus:<action>\n<canonical JSON body>`) is
//! [`eip191_digest`]; servers accept it only when configured to.

use std::str::FromStr;

use alloy::primitives::{Address, B256, Signature, U256};
use alloy::sol_types::{Eip712Domain, SolStruct};
use serde_json::Value;

/// The EIP-712 types, one per signed action. Field names are those a wallet shows.
pub mod typed {
    alloy::sol! {
        /// A chat message, by `author` (signed by the author or a session key it granted).
        #[derive(Debug, PartialEq)]
        struct ChatMessage {
            address author;
            string conversationId;
            string content;
            string[] mentions;
            /// The message answered, or empty.
            string replyTo;
            uint64 timestamp;
        }

        /// A rating of one message.
        #[derive(Debug, PartialEq)]
        struct Feedback {
            address account;
            string conversationId;
            string messageId;
            uint8 rating;
            /// Empty when there is none.
            string comment;
            uint64 timestamp;
        }

        /// Registering (or, by its owner, updating) an agent.
        #[derive(Debug, PartialEq)]
        struct AgentRegistration {
            address owner;
            string agentId;
            string name;
            string systemPrompt;
            string model;
            uint64 pricePerCallMicros;
            uint64 timestamp;
        }

        /// Registering (or, by its owner, updating) a model provider.
        #[derive(Debug, PartialEq)]
        struct ProviderRegistration {
            address owner;
            string providerId;
            string endpoint;
            string[] models;
            uint64 pricePer1kTokensMicros;
            uint64 timestamp;
        }

        /// One member of a new conversation.
        #[derive(Debug, PartialEq)]
        struct Member {
            /// `human` or `agent`.
            string kind;
            string id;
        }

        /// Creating a conversation; `actor` becomes its owner and first member.
        #[derive(Debug, PartialEq)]
        struct ConversationCreate {
            address actor;
            string conversationId;
            string title;
            Member[] members;
            uint64 timestamp;
        }

        /// Adding or removing a member (by the conversation's owner, `actor`).
        #[derive(Debug, PartialEq)]
        struct MembershipChange {
            address actor;
            string conversationId;
            /// `add` or `remove`.
            string change;
            Member member;
            uint64 timestamp;
        }

        /// A wallet lets `sessionKey` sign `scopes` for it until `expiresAt`.
        #[derive(Debug, PartialEq)]
        struct SessionGrant {
            address wallet;
            address sessionKey;
            string[] scopes;
            uint64 expiresAt;
            uint64 timestamp;
        }

        /// A wallet revokes a session key.
        #[derive(Debug, PartialEq)]
        struct SessionRevoke {
            address wallet;
            address sessionKey;
            uint64 timestamp;
        }

        /// A member asks to follow a conversation's events until `expiresAt`.
        #[derive(Debug, PartialEq)]
        struct ConversationRead {
            address reader;
            string conversationId;
            uint64 expiresAt;
        }
    }
}

/// The deployment a signature is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Domain {
    pub chain_id: u64,
    /// The deployment's PoI distributor (or registry) contract.
    pub verifying_contract: Address,
}

/// The EIP-712 domain name.
pub const DOMAIN_NAME: &str = "Chorus";
/// The EIP-712 domain version.
pub const DOMAIN_VERSION: &str = "1";

impl Domain {
    pub fn eip712(&self) -> Eip712Domain {
        Eip712Domain::new(
            Some(DOMAIN_NAME.into()),
            Some(DOMAIN_VERSION.into()),
            Some(U256::from(self.chain_id)),
            Some(self.verifying_contract),
            None,
        )
    }

    /// The digest a wallet signs for `value` (EIP-712 `signTypedData`).
    pub fn digest<T: SolStruct>(&self, value: &T) -> B256 {
        value.eip712_signing_hash(&self.eip712())
    }
}

/// Why a signature cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("\"signature\" is not a 65-byte hex signature")]
    Malformed,
    #[error(
        "the signature has a high s value (malleable, EIP-2): sign again, or normalise s to n - s and flip v"
    )]
    HighS,
}

/// Parses a 65-byte signature in any spelling, refusing the high-s form.
pub fn parse_signature(text: &str) -> Result<Signature, SignatureError> {
    let signature = Signature::from_str(text).map_err(|_| SignatureError::Malformed)?;
    // Both (r, s) and (r, n - s) recover the same signer: accept only the low one.
    if signature.normalize_s().is_some() {
        return Err(SignatureError::HighS);
    }
    Ok(signature)
}

/// The address that signed `digest`.
pub fn recover(signature: &Signature, digest: &B256) -> Result<Address, SignatureError> {
    signature
        .recover_address_from_prehash(digest)
        .map_err(|_| SignatureError::Malformed)
}

/// The legacy EIP-191 text of `action` over `body` (without its `signature`): keys
/// sorted, no whitespace.
pub fn eip191_message(action: &str, body: &Value) -> String {
    let mut unsigned = body.clone();
    if let Value::Object(map) = &mut unsigned {
        map.remove("signature");
    }
    // serde_json's map keeps keys sorted, so this is canonical.
    format!("chorus:{action}\n{unsigned}")
}

/// The digest of the legacy EIP-191 form.
pub fn eip191_digest(action: &str, body: &Value) -> B256 {
    alloy::primitives::eip191_hash_message(eip191_message(action, body))
}

/// Verifies that `signature_text` over `digest` was made by `expected` (used for grants
/// carried in events, checked again by every stage that trusts them).
pub fn verify_by(
    signature_text: &str,
    digest: &B256,
    expected: Address,
) -> Result<bool, SignatureError> {
    let signature = parse_signature(signature_text)?;
    Ok(recover(&signature, digest)? == expected)
}

/// The EIP-712 grant a `session.granted` event carries, rebuilt from its fields.
pub fn session_grant(
    wallet: Address,
    session_key: Address,
    scopes: &[String],
    expires_at: u64,
    timestamp: u64,
) -> typed::SessionGrant {
    typed::SessionGrant {
        wallet,
        sessionKey: session_key,
        scopes: scopes.to_vec(),
        expiresAt: expires_at,
        timestamp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::signers::SignerSync;
    use alloy::signers::local::PrivateKeySigner;

    fn domain(chain_id: u64) -> Domain {
        Domain {
            chain_id,
            verifying_contract: Address::repeat_byte(0x11),
        }
    }

    fn message(author: Address) -> typed::ChatMessage {
        typed::ChatMessage {
            author,
            conversationId: "c".into(),
            content: "hi".into(),
            mentions: vec!["helper".into()],
            replyTo: String::new(),
            timestamp: 1000,
        }
    }

    #[test]
    fn a_signature_is_valid_for_one_chain_one_deployment_and_one_action() {
        let wallet = PrivateKeySigner::random();
        let value = message(wallet.address());
        let digest = domain(56).digest(&value);
        let signature = wallet.sign_hash_sync(&digest).unwrap().to_string();
        assert!(verify_by(&signature, &digest, wallet.address()).unwrap());
        for other in [
            domain(1).digest(&value),
            Domain {
                chain_id: 56,
                verifying_contract: Address::repeat_byte(0x22),
            }
            .digest(&value),
            domain(56).digest(&typed::Feedback {
                account: wallet.address(),
                conversationId: "c".into(),
                messageId: String::new(),
                rating: 5,
                comment: String::new(),
                timestamp: 1000,
            }),
        ] {
            assert_ne!(other, digest);
            assert!(!verify_by(&signature, &other, wallet.address()).unwrap());
        }
    }

    #[test]
    fn the_type_string_is_what_wallets_hash() {
        use alloy::sol_types::SolStruct;
        assert_eq!(
            typed::ConversationCreate::eip712_encode_type(),
            "ConversationCreate(address actor,string conversationId,string title,Member[] members,uint64 timestamp)Member(string kind,string id)"
        );
    }

    #[test]
    fn high_s_and_garbage_are_refused() {
        let wallet = PrivateKeySigner::random();
        let digest = domain(56).digest(&message(wallet.address()));
        let signature = wallet.sign_hash_sync(&digest).unwrap();
        let order = U256::from_str_radix(
            "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
            16,
        )
        .unwrap();
        let high = Signature::new(signature.r(), order - signature.s(), !signature.v());
        assert_eq!(
            parse_signature(&high.to_string()),
            Err(SignatureError::HighS)
        );
        assert_eq!(parse_signature("0x1234"), Err(SignatureError::Malformed));
    }
}
