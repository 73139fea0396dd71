//! Ingest request bodies: arbitrary bytes parsed as JSON, then the signature check every
//! signed write goes through (EIP-191 recovery, timestamp window), and the API-key
//! environment format.
#![no_main]
use libfuzzer_sys::fuzz_target;

use alloy_primitives::Address;
use chorus_ingest::auth::{ApiKeys, signing_message, verify_signed};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ApiKeys::parse_env(text);
    }
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = signing_message("chat.message", &body);
    let claimed = body
        .get("author")
        .and_then(|a| a.as_str())
        .and_then(|a| a.parse::<Address>().ok())
        .unwrap_or(Address::ZERO);
    let _ = verify_signed("chat.message", &body, claimed, 1_790_000_000, 300);
});
