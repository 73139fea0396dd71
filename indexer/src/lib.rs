//! `chorus indexer`: Chorus contract logs from BSC into Kafka.
//!
//! - **Backfill** from a start block in adaptive ranges: a range halves when the node
//!   refuses its size or times out, and doubles while steps stay fast. Below the reorg
//!   window the ranges are pipelined: up to four `eth_getLogs` ranges are fetched at
//!   once and applied strictly in block order, and the Kafka transaction of one range
//!   commits while the next ones are being fetched (one transaction at a time). Inside
//!   the reorg window, one range at a time.
//! - **Live follow** by polling the head.
//! - **Confirmation modes**: `confirmed` emits a block only once it is N blocks deep;
//!   `eager` emits at once and retracts on reorg. Reorgs are found by comparing block
//!   hashes with the chain recorded in the cursor (a new block's parent hash, and the
//!   last emitted block's hash while idle), never by `removed` flags. Both modes retract
//!   logs of blocks that a reorg drops.
//! - **Exactly once**: the events of a range and the cursor that accounts for them are
//!   one Kafka transaction; a restart resumes from the committed cursor and never skips
//!   or repeats a log. Event ids are derived from (chain id, block hash, log index), so
//!   even a re-index from scratch produces the same ids.
//! - **Bad logs** (unknown signature, data that does not match the ABI) become dead
//!   letters with the reason; they never stop the indexer.

mod cursor;
mod indexer;
mod progress;

pub use cursor::{Cursor, EmittedLog, RecentBlock};
pub use indexer::{
    EmitMode, IndexerError, IndexerReport, IndexerSettings, log_event_id, run_indexer,
};
