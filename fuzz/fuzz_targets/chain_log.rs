//! Chain logs as the indexer gets them from an RPC node: any contract kind, up to four
//! 32-byte topics (often a real event selector, so decoding goes past the lookup) and
//! arbitrary data.
#![no_main]
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

use alloy_primitives::{B256, Bytes, LogData};
use chorus_chain::contracts::{ContractKind, EventDecoder};

static DECODER: LazyLock<Option<EventDecoder>> = LazyLock::new(|| EventDecoder::new().ok());
static SELECTORS: LazyLock<Vec<B256>> = LazyLock::new(|| {
    // keccak256 of a few real event signatures of the contracts.
    [
        "Transfer(address,address,uint256)",
        "Approval(address,address,uint256)",
        "ProviderRegistered(bytes32,address,uint256)",
        "Checkpointed(uint256,bytes32,bytes32,uint256)",
        "Claimed(uint256,address,uint256)",
    ]
    .iter()
    .map(|s| alloy_primitives::keccak256(s.as_bytes()))
    .collect()
});

fuzz_target!(|data: &[u8]| {
    let Some(decoder) = DECODER.as_ref() else {
        return;
    };
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let kind = ContractKind::ALL[(head as usize) % ContractKind::ALL.len()];
    let topic_count = ((head >> 3) % 5) as usize;
    let mut topics = Vec::new();
    let mut rest = rest;
    for i in 0..topic_count {
        if i == 0 && head & 0x80 != 0 {
            topics.push(SELECTORS[(head as usize >> 4) % SELECTORS.len()]);
            continue;
        }
        if rest.len() < 32 {
            break;
        }
        topics.push(B256::from_slice(&rest[..32]));
        rest = &rest[32..];
    }
    let log = LogData::new_unchecked(topics, Bytes::copy_from_slice(rest));
    let _ = decoder.decode(kind, &log);
});
