//! Idempotency: the event ids of a request are derived from its idempotency key, so a
//! retry (to this instance, another one, or after a crash) produces the same envelope
//! ids and is deduplicated downstream; the cache remembers what Kafka acknowledged.

use std::collections::{HashMap, VecDeque};

use alloy::primitives::keccak256;
use uuid::Uuid;

/// Event ids handed out per (key, idempotency key): a retried request gets the same ids
/// (and the same envelope ids are produced again, so downstream deduplication by event
/// id absorbs a retry after a timeout). The ids are derived from the key
/// ([`request_event_ids`]), so a retry that reaches another ingest instance, or this one
/// after a crash, gets them too; the cache only remembers what Kafka acknowledged.
#[derive(Debug, Default)]
pub(super) struct IdempotencyCache {
    /// Event ids per request key, and whether Kafka acknowledged them.
    ids: HashMap<String, (Vec<Uuid>, bool)>,
    order: VecDeque<String>,
    /// The request identity each scoped `Idempotency-Key` names.
    keys: HashMap<String, String>,
    key_order: VecDeque<String>,
}

const IDEMPOTENCY_CAPACITY: usize = 100_000;

/// The event ids of a request with an idempotency key: UUIDv7s whose time is the
/// request's own (signed) timestamp and whose other bits are keccak256(key, index). Any
/// ingest instance, before or after a restart, derives the same ids for the same
/// request, so a client's retry is deduplicated downstream by event id even when the
/// first attempt was produced and its answer lost.
pub(super) fn request_event_ids(key: &str, unix_ms: u64, count: usize) -> Vec<Uuid> {
    (0..count)
        .map(|index| {
            let digest = keccak256(format!("chorus-event-id\n{key}\n{index}").as_bytes());
            let mut bits = [0u8; 10];
            bits.copy_from_slice(&digest[..10]);
            uuid::Builder::from_unix_timestamp_millis(unix_ms, &bits).into_uuid()
        })
        .collect()
}

impl IdempotencyCache {
    /// The ids for a request key, and whether they were already delivered.
    pub(super) fn ids_for(&mut self, key: &str, unix_ms: u64, count: usize) -> (Vec<Uuid>, bool) {
        if let Some((ids, delivered)) = self.ids.get(key) {
            return (ids.clone(), *delivered);
        }
        let ids = request_event_ids(key, unix_ms, count);
        self.ids.insert(key.to_owned(), (ids.clone(), false));
        self.order.push_back(key.to_owned());
        if self.order.len() > IDEMPOTENCY_CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        (ids, false)
    }

    /// Binds an `Idempotency-Key` (already scoped to API key and signer) to a request
    /// identity; returns the identity it was bound to before if that is another one.
    pub(super) fn bind_key(&mut self, scoped_key: &str, identity: &str) -> Option<String> {
        match self.keys.get(scoped_key) {
            Some(first) if first != identity => Some(first.clone()),
            Some(_) => None,
            None => {
                self.keys.insert(scoped_key.to_owned(), identity.to_owned());
                self.key_order.push_back(scoped_key.to_owned());
                if self.key_order.len() > IDEMPOTENCY_CAPACITY
                    && let Some(old) = self.key_order.pop_front()
                {
                    self.keys.remove(&old);
                }
                None
            }
        }
    }

    pub(super) fn mark_delivered(&mut self, key: &str) {
        if let Some(entry) = self.ids.get_mut(key) {
            entry.1 = true;
        }
    }
}

/// The event ids of one request, reserved under its idempotency key.
#[derive(Debug)]
pub(super) struct Reservation {
    pub(super) ids: Vec<Uuid>,
    pub(super) cache_key: Option<String>,
    pub(super) delivered: bool,
}

#[cfg(test)]
mod tests {
    use super::request_event_ids;

    #[test]
    fn request_event_ids_are_time_ordered_v7_and_the_same_for_the_same_request() {
        let ids = request_event_ids("writer/0xabc", 1_790_000_000_000, 3);
        assert_eq!(ids, request_event_ids("writer/0xabc", 1_790_000_000_000, 3));
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
        let (seconds, nanos) = ids[0]
            .get_timestamp()
            .expect("a v7 id has a timestamp")
            .to_unix();
        assert_eq!((seconds, nanos), (1_790_000_000, 0));
        let other_key = request_event_ids("writer/0xabd", 1_790_000_000_000, 3);
        let distinct: std::collections::HashSet<_> = ids.iter().chain(&other_key).collect();
        assert_eq!(distinct.len(), 6, "another index or key gives another id");
    }
}
