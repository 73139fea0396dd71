//! A signing client that cannot wedge on nonces, and contract deployment.
//!
//! alloy's default nonce filler caches the next nonce locally; a send that fails after
//! the nonce was taken leaves a gap and every later transaction waits forever. This
//! client asks the node for the pending nonce on every send (`SimpleNonceManager`),
//! estimates gas first (a transaction that would revert fails before it takes a nonce),
//! and serialises sends from one key, so a failed send never leaves a gap.

use std::path::{Path, PathBuf};

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, TxHash, U256};
use alloy::providers::{DynProvider, PendingTransactionError, Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolConstructor};
use alloy::transports::{RpcError, TransportErrorKind};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::contracts::{
    AgentRegistry, ChorusToken, LogFixture, PoiDistributor, ProviderRegistry, StandingBond,
};

/// Chain access errors.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("RPC error during {what}: {source}")]
    Rpc {
        what: String,
        #[source]
        source: RpcError<TransportErrorKind>,
    },
    #[error("waiting for the receipt of {what}: {source}")]
    Receipt {
        what: String,
        #[source]
        source: PendingTransactionError,
    },
    #[error("{what} reverted in transaction {tx}")]
    Reverted { what: String, tx: TxHash },
    #[error("{what} did not create a contract (tx {tx})")]
    NoContract { what: String, tx: TxHash },
    #[error("signing key: {0}")]
    Key(String),
    #[error("invalid RPC URL: {0}")]
    Url(String),
    #[error("deployment file {path}: {reason}")]
    DeploymentFile { path: PathBuf, reason: String },
}

/// Loads a private key from an environment variable's value or from a file holding the
/// hex key (the file must not be readable by group or others). The key is never logged.
pub fn load_signer(
    env_value: Option<&str>,
    key_file: Option<&Path>,
) -> Result<PrivateKeySigner, ChainError> {
    let text = match (env_value, key_file) {
        (Some(value), _) if !value.trim().is_empty() => value.trim().to_string(),
        (_, Some(path)) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let meta = std::fs::metadata(path)
                    .map_err(|e| ChainError::Key(format!("key file {}: {e}", path.display())))?;
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(ChainError::Key(format!(
                        "key file {} has mode {mode:03o}, readable by group or others; chmod 600 it",
                        path.display()
                    )));
                }
            }
            std::fs::read_to_string(path)
                .map_err(|e| ChainError::Key(format!("key file {}: {e}", path.display())))?
                .trim()
                .to_string()
        }
        _ => {
            return Err(ChainError::Key(
                "no key: set CHORUS_CHAIN_KEY or pass --key-file (a file of mode 600); on a local anvil node, --dev-key".into(),
            ));
        }
    };
    text.parse::<PrivateKeySigner>()
        .map_err(|_| ChainError::Key("not a valid hex secp256k1 private key".into()))
}

/// A provider that signs with one key.
pub struct ChainClient {
    provider: DynProvider,
    address: Address,
    send_lock: Mutex<()>,
}

impl ChainClient {
    /// Connects to `url` signing with `signer` for `chain_id`.
    pub fn new(url: &str, signer: PrivateKeySigner, chain_id: u64) -> Result<Self, ChainError> {
        let parsed = url.parse().map_err(|e| ChainError::Url(format!("{e}")))?;
        let address = signer.address();
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_gas_estimation()
            .with_simple_nonce_management()
            .with_chain_id(chain_id)
            .wallet(EthereumWallet::from(signer))
            .connect_http(parsed)
            .erased();
        Ok(ChainClient {
            provider,
            address,
            send_lock: Mutex::new(()),
        })
    }

    /// The signer's address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The underlying provider (reads and `sol!` calls).
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// Sends a transaction and waits for its receipt; a revert is an error.
    pub async fn send(
        &self,
        what: &str,
        request: TransactionRequest,
    ) -> Result<TransactionReceipt, ChainError> {
        let request = request.with_from(self.address);
        let pending = {
            let _one_at_a_time = self.send_lock.lock().await;
            self.provider
                .send_transaction(request)
                .await
                .map_err(|source| ChainError::Rpc {
                    what: what.to_string(),
                    source,
                })?
        };
        let receipt = pending
            .get_receipt()
            .await
            .map_err(|source| ChainError::Receipt {
                what: what.to_string(),
                source,
            })?;
        if !receipt.status() {
            return Err(ChainError::Reverted {
                what: what.to_string(),
                tx: receipt.transaction_hash,
            });
        }
        Ok(receipt)
    }

    /// Calls a contract function in a transaction.
    pub async fn transact<C: SolCall>(
        &self,
        what: &str,
        to: Address,
        call: &C,
    ) -> Result<TransactionReceipt, ChainError> {
        let request = TransactionRequest::default()
            .with_to(to)
            .with_input(call.abi_encode());
        self.send(what, request).await
    }

    /// Deploys `creation_code` followed by the ABI-encoded constructor arguments.
    pub async fn deploy(
        &self,
        what: &str,
        creation_code: &Bytes,
        constructor_args: Vec<u8>,
    ) -> Result<(Address, TransactionReceipt), ChainError> {
        let mut code = creation_code.to_vec();
        code.extend_from_slice(&constructor_args);
        let request = TransactionRequest::default().with_deploy_code(code);
        let receipt = self.send(what, request).await?;
        let address = receipt.contract_address.ok_or(ChainError::NoContract {
            what: what.to_string(),
            tx: receipt.transaction_hash,
        })?;
        Ok((address, receipt))
    }
}

/// Where the Chorus contracts live on one chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub chain_id: u64,
    pub deployer: Address,
    pub checkpointer: Address,
    pub token: Address,
    pub agent_registry: Address,
    pub provider_registry: Address,
    pub poi_distributor: Address,
    /// The users' and developers' bonds (deployment files from before it have none).
    #[serde(default)]
    pub standing_bond: Option<Address>,
    /// The account allowed to revoke pending roots and pause claims.
    #[serde(default)]
    pub guardian: Option<Address>,
    /// Seconds a posted root stays pending (revocable) before claims against it pay.
    #[serde(default)]
    pub challenge_window_seconds: u64,
    #[serde(default)]
    pub log_fixture: Option<Address>,
    /// The block of the first deployment transaction (where indexing can start).
    pub start_block: u64,
}

impl Deployment {
    /// Reads a deployment file.
    pub fn load(path: &Path) -> Result<Self, ChainError> {
        let text = std::fs::read_to_string(path).map_err(|e| ChainError::DeploymentFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| ChainError::DeploymentFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Writes the deployment file (pretty JSON).
    pub fn save(&self, path: &Path) -> Result<(), ChainError> {
        let error = |reason: String| ChainError::DeploymentFile {
            path: path.to_path_buf(),
            reason,
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| error(e.to_string()))?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| error(e.to_string()))?;
        }
        std::fs::write(path, text + "\n").map_err(|e| error(e.to_string()))
    }

    /// The contracts by kind, for the indexer.
    pub fn contracts(&self) -> Vec<(crate::ContractKind, Address)> {
        use crate::ContractKind as K;
        let mut list = vec![
            (K::Token, self.token),
            (K::AgentRegistry, self.agent_registry),
            (K::ProviderRegistry, self.provider_registry),
            (K::PoiDistributor, self.poi_distributor),
        ];
        if let Some(bond) = self.standing_bond {
            list.push((K::StandingBond, bond));
        }
        if let Some(fixture) = self.log_fixture {
            list.push((K::LogFixture, fixture));
        }
        list
    }
}

/// What to deploy.
#[derive(Debug, Clone)]
pub struct DeployPlan {
    pub chain_id: u64,
    /// The account allowed to post checkpoints.
    pub checkpointer: Address,
    /// Minimum provider stake, in token wei.
    pub min_stake: U256,
    /// The account allowed to revoke pending roots and pause claims.
    pub guardian: Address,
    /// Seconds a posted root stays pending before it pays (longer than the indexer's
    /// confirmations plus the time to recompute an epoch).
    pub challenge_window_seconds: u64,
    /// The most one epoch may add to the distributor's cumulative total, in token wei.
    pub epoch_budget: U256,
    /// The first epoch the distributor pays.
    pub first_epoch: u64,
    /// The token's supply cap, in wei.
    pub token_cap: U256,
    /// Seconds a change of the distributor's admin waits (AccessControlDefaultAdminRules).
    pub admin_delay_seconds: u64,
    /// Also deploy the log fixture (tests and benchmarks).
    pub with_log_fixture: bool,
}

impl DeployPlan {
    /// A plan for a local chain (anvil): the deployer checkpoints, `guardian` guards, a
    /// challenge window of `challenge_window_seconds`, a budget of 1,000,000 CHR per
    /// epoch from epoch 0, a supply cap of 1,000,000,000 CHR and no admin-change delay.
    pub fn local(
        chain_id: u64,
        checkpointer: Address,
        guardian: Address,
        challenge_window_seconds: u64,
        min_stake: U256,
    ) -> DeployPlan {
        let chr = U256::from(10u64).pow(U256::from(18u64));
        DeployPlan {
            chain_id,
            checkpointer,
            min_stake,
            guardian,
            challenge_window_seconds,
            epoch_budget: U256::from(1_000_000u64) * chr,
            first_epoch: 0,
            token_cap: U256::from(1_000_000_000u64) * chr,
            admin_delay_seconds: 0,
            with_log_fixture: false,
        }
    }
}

/// Deploys the token, both registries and the distributor (and the log fixture when
/// asked), in that order.
pub async fn deploy_all(client: &ChainClient, plan: &DeployPlan) -> Result<Deployment, ChainError> {
    let owner = client.address();
    let (token, receipt) = client
        .deploy(
            "deploy ChorusToken",
            &ChorusToken::BYTECODE,
            ChorusToken::constructorCall {
                initialOwner: owner,
                cap_: plan.token_cap,
            }
            .abi_encode(),
        )
        .await?;
    let start_block = receipt.block_number.unwrap_or_default();
    let (agent_registry, _) = client
        .deploy("deploy AgentRegistry", &AgentRegistry::BYTECODE, Vec::new())
        .await?;
    let (provider_registry, _) = client
        .deploy(
            "deploy ProviderRegistry",
            &ProviderRegistry::BYTECODE,
            ProviderRegistry::constructorCall {
                token_: token,
                minStake_: plan.min_stake,
            }
            .abi_encode(),
        )
        .await?;
    let (poi_distributor, _) = client
        .deploy(
            "deploy PoiDistributor",
            &PoiDistributor::BYTECODE,
            PoiDistributor::constructorCall {
                token_: token,
                admin: owner,
                checkpointer: plan.checkpointer,
                guardian: plan.guardian,
                challengeWindow_: plan.challenge_window_seconds,
                epochBudget_: plan.epoch_budget,
                firstEpoch_: plan.first_epoch,
                adminDelay: alloy::primitives::Uint::<48, 1>::from(plan.admin_delay_seconds),
            }
            .abi_encode(),
        )
        .await?;
    let (standing_bond, _) = client
        .deploy(
            "deploy StandingBond",
            &StandingBond::BYTECODE,
            StandingBond::constructorCall { token_: token }.abi_encode(),
        )
        .await?;
    let log_fixture = if plan.with_log_fixture {
        Some(
            client
                .deploy("deploy LogFixture", &LogFixture::BYTECODE, Vec::new())
                .await?
                .0,
        )
    } else {
        None
    };
    Ok(Deployment {
        chain_id: plan.chain_id,
        deployer: owner,
        checkpointer: plan.checkpointer,
        token,
        agent_registry,
        provider_registry,
        poi_distributor,
        standing_bond: Some(standing_bond),
        guardian: Some(plan.guardian),
        challenge_window_seconds: plan.challenge_window_seconds,
        log_fixture,
        start_block,
    })
}

/// Bonds `amount` for each account in the standing bond, paid by `owner` (the token's
/// owner, which mints it first): how a local chain gives its users and developers
/// standing (poi-v3). A real deployment's users bond their own tokens.
pub async fn sponsor_bonds(
    owner: &ChainClient,
    deployment: &Deployment,
    bonds: &[(Address, U256)],
) -> Result<(), ChainError> {
    let Some(bond) = deployment.standing_bond else {
        return Err(ChainError::DeploymentFile {
            path: PathBuf::from("(deployment)"),
            reason: "the deployment has no standing bond".into(),
        });
    };
    let total: U256 = bonds.iter().map(|(_, amount)| *amount).sum();
    owner
        .transact(
            "mint bonds",
            deployment.token,
            &ChorusToken::mintCall {
                to: owner.address(),
                amount: total,
            },
        )
        .await?;
    owner
        .transact(
            "approve bonds",
            deployment.token,
            &ChorusToken::approveCall {
                spender: bond,
                value: total,
            },
        )
        .await?;
    for (account, amount) in bonds {
        owner
            .transact(
                "bond",
                bond,
                &StandingBond::bondForCall {
                    account: *account,
                    amount: *amount,
                },
            )
            .await?;
    }
    Ok(())
}

/// Moves a local anvil's clock `seconds` forward and mines a block (`evm_increaseTime`,
/// `evm_mine`): how the demo and the tests pass a challenge window without waiting.
pub async fn anvil_advance_time(client: &ChainClient, seconds: u64) -> Result<(), ChainError> {
    let provider = client.provider();
    let _: serde_json::Value = provider
        .raw_request("evm_increaseTime".into(), [seconds])
        .await
        .map_err(|source| ChainError::Rpc {
            what: "evm_increaseTime".into(),
            source,
        })?;
    let _: serde_json::Value = provider
        .raw_request("evm_mine".into(), Vec::<u64>::new())
        .await
        .map_err(|source| ChainError::Rpc {
            what: "evm_mine".into(),
            source,
        })?;
    Ok(())
}

/// A 32-byte id from a readable name (`keccak256(name)`), as the registries use.
pub fn id_from_name(name: &str) -> B256 {
    alloy::primitives::keccak256(name.as_bytes())
}

/// The first dev account of anvil's default mnemonic. It is public and only ever
/// accepted for loopback endpoints (the local demo and benchmarks); real chains need
/// `CHORUS_CHAIN_KEY` or a key file.
pub const ANVIL_DEV_KEY: &str =
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// anvil's public dev key, only for a node that says it is anvil (`web3_clientVersion`):
/// asked for explicitly (`--dev-key`), never a fallback, whatever the URL looks like.
pub async fn anvil_dev_signer(url: &str) -> Result<PrivateKeySigner, ChainError> {
    let provider = read_only_provider(url)?;
    let label = url
        .parse::<alloy::transports::http::reqwest::Url>()
        .map(|u| crate::rpc::endpoint_label(&u))
        .unwrap_or_else(|_| "the RPC endpoint".into());
    let version = provider
        .get_client_version()
        .await
        .map_err(|e| ChainError::Key(format!("the dev key needs an anvil node, but {label} did not say what it is (web3_clientVersion): {e}")))?;
    if !version.to_ascii_lowercase().starts_with("anvil") {
        return Err(ChainError::Key(format!(
            "the dev key is public and only for a local anvil node; {label} is {version:?}: configure CHORUS_CHAIN_KEY or --key-file"
        )));
    }
    ANVIL_DEV_KEY
        .parse()
        .map_err(|_| ChainError::Key("the built-in anvil key does not parse".into()))
}

/// A provider for reads only (no key).
pub fn read_only_provider(url: &str) -> Result<DynProvider, ChainError> {
    let parsed = url.parse().map_err(|e| ChainError::Url(format!("{e}")))?;
    Ok(ProviderBuilder::new().connect_http(parsed).erased())
}
