//! Ingest request bodies: arbitrary bytes parsed as JSON, then what every signed write
//! goes through (the EIP-712 digest of the body, signature recovery, the timestamp
//! window, the legacy EIP-191 text), and the API-key environment format.
#![no_main]
use libfuzzer_sys::fuzz_target;

use alloy_primitives::Address;
use chorus_ingest::auth::{ApiKeys, Domain, SignaturePolicy, verify_signed};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ApiKeys::parse_env(text);
    }
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let domain = Domain {
        chain_id: 56,
        verifying_contract: Address::ZERO,
    };
    let claimed = body
        .get("author")
        .and_then(|a| a.as_str())
        .and_then(|a| a.parse::<Address>().ok())
        .unwrap_or(Address::ZERO);
    let digest = chorus_ingest::typed_body::digest(&domain, "chat.message", &body)
        .unwrap_or_default();
    let policy = SignaturePolicy {
        domain,
        accept_eip191: true,
        window_seconds: 300,
    };
    let _ = verify_signed(&policy, "chat.message", digest, &body, claimed, 1_790_000_000, None);
});
