//! Chorus on chain: contract bindings and event decoding, a nonce-safe signing client,
//! deployment, RPC failover, and the claim Merkle tree.

mod client;
pub mod contracts;
pub mod merkle;
pub mod rpc;

pub use client::{
    ANVIL_DEV_KEY, ChainClient, ChainError, DeployPlan, Deployment, anvil_advance_time,
    anvil_dev_signer, deploy_all, id_from_name, load_signer, read_only_provider, sponsor_bonds,
};
pub use contracts::{ContractKind, EventDecoder, LogDecodeError};
pub use rpc::{RpcFailure, RpcPool, RpcPoolConfig};
