//! The indexer's cursor: the next block to index and the recent blocks it has emitted,
//! with their hashes (to detect reorgs) and the logs emitted from them (to retract
//! them). It is written to the compacted cursor topic in the same Kafka transaction as
//! the events it accounts for.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A log emitted from a recent block, enough to retract it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmittedLog {
    pub contract: String,
    pub tx_hash: String,
    pub log_index: u64,
}

/// A recent block as the indexer saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentBlock {
    pub hash: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<EmittedLog>,
}

/// Where the indexer is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub chain_id: u64,
    /// The next block to index: every block below it has been emitted.
    pub next_block: u64,
    /// The most recent blocks (number → hash and emitted logs), at most the reorg
    /// window.
    pub recent: BTreeMap<u64, RecentBlock>,
}

impl Cursor {
    /// A cursor at `start_block` with no history.
    pub fn new(chain_id: u64, start_block: u64) -> Self {
        Cursor {
            chain_id,
            next_block: start_block,
            recent: BTreeMap::new(),
        }
    }

    /// The recorded hash of `block`, if still remembered.
    pub fn hash_of(&self, block: u64) -> Option<&str> {
        self.recent.get(&block).map(|b| b.hash.as_str())
    }

    /// Forgets blocks older than `window` blocks below the next block.
    pub fn trim(&mut self, window: u64) {
        let keep_from = self.next_block.saturating_sub(window);
        self.recent = self.recent.split_off(&keep_from);
    }

    /// Drops every block above `ancestor` and returns them (newest last).
    pub fn rewind_to(&mut self, ancestor: u64) -> Vec<(u64, RecentBlock)> {
        let dropped = self.recent.split_off(&(ancestor + 1));
        self.next_block = ancestor + 1;
        dropped.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_rewinds() {
        let mut cursor = Cursor::new(56, 0);
        for n in 0..10 {
            cursor.recent.insert(
                n,
                RecentBlock {
                    hash: format!("h{n}"),
                    logs: vec![],
                },
            );
        }
        cursor.next_block = 10;
        cursor.trim(4);
        assert_eq!(
            cursor.recent.keys().copied().collect::<Vec<_>>(),
            vec![6, 7, 8, 9]
        );
        let dropped = cursor.rewind_to(7);
        assert_eq!(dropped.iter().map(|d| d.0).collect::<Vec<_>>(), vec![8, 9]);
        assert_eq!(cursor.next_block, 8);
        assert_eq!(cursor.hash_of(7), Some("h7"));
        assert_eq!(cursor.hash_of(8), None);
    }
}
