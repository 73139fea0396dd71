//! Proof of Intelligence scoring.
//!
//! An epoch's input is fixed as exact per-partition offset ranges (the manifest), read
//! into a Parquet archive co-partitioned by job and by message, scored with DataFusion
//! SQL bucket by bucket (memory bounded by a bucket and the participants, not the
//! epoch), split into integer wei per role, and committed as a cumulative claim tree
//! whose root goes on chain. `verify` replays the manifest and compares roots.

pub mod archive;
pub mod attacks;
pub mod config;
#[cfg(feature = "ballista")]
pub mod distributed;
pub mod engine;
pub mod epoch;
pub mod payout;
pub mod source;
pub mod sql;
pub mod synthetic;
pub mod watch;

pub use config::ScoringConfig;
pub use engine::{Contribution, EngineConfig};
pub use epoch::{
    ClaimProof, EpochResult, PoiError, Recorded, ScoreOptions, ScoreOutcome, Verification,
    claim_proof, compute, score_epoch, verify_epoch,
};
pub use source::{Manifest, SourceRange};
