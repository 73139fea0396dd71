#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The Chorus contracts on a real anvil (chain id 56), the Merkle tree against the
//! OpenZeppelin JS library, and the checked-in artifacts against a fresh solc-js build.

use std::process::Command;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;

use chorus_chain::contracts::{
    AgentRegistry, ChorusToken, PoiDistributor, ProviderRegistry, StandingBond,
};
use chorus_chain::merkle::{Claim, ClaimTree};
use chorus_chain::{ChainClient, id_from_name};
use chorus_integration_tests::chain::{Anvil, DEV_KEY_1, deploy};
use chorus_integration_tests::*;

fn npm_modules() -> std::path::PathBuf {
    let home = std::env::var("CHORUS_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".chorus")
        });
    home.join("npm/node_modules")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registries_staking_bonds_and_the_token_cap_follow_their_rules() {
    let anvil = Anvil::start().unwrap();
    let owner = anvil.client();
    let (deployment, _) = deploy(&owner, "contracts-test").await.unwrap();
    let other = ChainClient::new(&anvil.url(), DEV_KEY_1.parse().unwrap(), 56).unwrap();
    let token = ChorusToken::new(deployment.token, owner.provider());

    // Agents: a second registration of one id is refused; batches work.
    let agent = id_from_name("agent:summarizer");
    let register = AgentRegistry::registerCall {
        agentId: agent,
        metadataUri: "ipfs://a".into(),
    };
    owner
        .transact("register", deployment.agent_registry, &register)
        .await
        .unwrap();
    assert!(
        other
            .transact("register again", deployment.agent_registry, &register)
            .await
            .is_err()
    );
    let ids: Vec<B256> = (0..3)
        .map(|i| id_from_name(&format!("agent:{i}")))
        .collect();
    let uris = vec!["u0".to_string(), "u1".into(), "u2".into()];
    owner
        .transact(
            "batch",
            deployment.agent_registry,
            &AgentRegistry::registerBatchCall {
                agentIds: ids,
                metadataUris: uris,
            },
        )
        .await
        .unwrap();

    // Providers stake at least the minimum (100 wei in the test deployment).
    owner
        .transact(
            "mint",
            deployment.token,
            &ChorusToken::mintCall {
                to: other.address(),
                amount: U256::from(1_000u64),
            },
        )
        .await
        .unwrap();
    other
        .transact(
            "approve",
            deployment.token,
            &ChorusToken::approveCall {
                spender: deployment.provider_registry,
                value: U256::from(1_000u64),
            },
        )
        .await
        .unwrap();
    let provider_id = id_from_name("provider:llama");
    let low = ProviderRegistry::registerCall {
        providerId: provider_id,
        endpoint: "http://gpu".into(),
        stake_: U256::from(99u64),
    };
    let error = other
        .transact("low stake", deployment.provider_registry, &low)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("revert"), "{error}");
    let ok = ProviderRegistry::registerCall {
        providerId: provider_id,
        endpoint: "http://gpu".into(),
        stake_: U256::from(150u64),
    };
    other
        .transact("register provider", deployment.provider_registry, &ok)
        .await
        .unwrap();
    let registry = ProviderRegistry::new(deployment.provider_registry, owner.provider());
    assert_eq!(
        registry.stakeOf(provider_id).call().await.unwrap(),
        U256::from(150u64)
    );
    assert_eq!(
        token.balanceOf(other.address()).call().await.unwrap(),
        U256::from(850u64)
    );
    // A failed send must not wedge the nonce: the next transaction goes through.
    let unstake_too_much = ProviderRegistry::unstakeCall {
        providerId: provider_id,
        amount: U256::from(500u64),
    };
    assert!(
        other
            .transact(
                "unstake too much",
                deployment.provider_registry,
                &unstake_too_much
            )
            .await
            .is_err()
    );
    other
        .transact(
            "stake more",
            deployment.provider_registry,
            &ProviderRegistry::stakeCall {
                providerId: provider_id,
                amount: U256::from(50u64),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        registry.stakeOf(provider_id).call().await.unwrap(),
        U256::from(200u64)
    );

    // Standing bonds: the total follows bond and unbond; unbonding more is refused.
    let bond_contract = deployment
        .standing_bond
        .expect("the standing bond is deployed");
    owner
        .transact(
            "mint for bond",
            deployment.token,
            &ChorusToken::mintCall {
                to: other.address(),
                amount: U256::from(1_000u64),
            },
        )
        .await
        .unwrap();
    other
        .transact(
            "approve bond",
            deployment.token,
            &ChorusToken::approveCall {
                spender: bond_contract,
                value: U256::from(1_000u64),
            },
        )
        .await
        .unwrap();
    other
        .transact(
            "bond",
            bond_contract,
            &StandingBond::bondCall {
                amount: U256::from(300u64),
            },
        )
        .await
        .unwrap();
    other
        .transact(
            "unbond",
            bond_contract,
            &StandingBond::unbondCall {
                amount: U256::from(100u64),
            },
        )
        .await
        .unwrap();
    let bonds = StandingBond::new(bond_contract, owner.provider());
    assert_eq!(
        bonds.bondOf(other.address()).call().await.unwrap(),
        U256::from(200u64)
    );
    assert!(
        other
            .transact(
                "unbond too much",
                bond_contract,
                &StandingBond::unbondCall {
                    amount: U256::from(201u64),
                },
            )
            .await
            .is_err()
    );
    // The token's supply is capped.
    let cap = token.cap().call().await.unwrap();
    let supply = token.totalSupply().call().await.unwrap();
    assert!(
        owner
            .transact(
                "mint past the cap",
                deployment.token,
                &ChorusToken::mintCall {
                    to: other.address(),
                    amount: cap - supply + U256::from(1u64),
                },
            )
            .await
            .is_err()
    );
    assert!(owner.provider().get_block_number().await.unwrap() > 10);
}

/// Every brake of the distributor (issue 18) on anvil, with its clock moved instead of
/// waited for: posting is the checkpointer's, in sequence, within the budget; roots are
/// pending for the challenge window, revocable by the guardian only, and a revocation
/// takes the later pending roots with it and makes the epoch postable again; claims pay
/// only after the window, exactly the difference, never beyond the epoch's cumulative
/// total, and not while paused; only the admin unpauses; the admin role moves in two
/// steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_distributor_brakes_hold() {
    use chorus_integration_tests::chain::{CHALLENGE_WINDOW_SECONDS, DEV_KEY_2, advance_time};
    let anvil = Anvil::start().unwrap();
    let owner = anvil.client();
    let (deployment, _) = deploy(&owner, "distributor-test").await.unwrap();
    let other = ChainClient::new(&anvil.url(), DEV_KEY_1.parse().unwrap(), 56).unwrap();
    let guardian = ChainClient::new(&anvil.url(), DEV_KEY_2.parse().unwrap(), 56).unwrap();
    let token = ChorusToken::new(deployment.token, owner.provider());
    let distributor = PoiDistributor::new(deployment.poi_distributor, owner.provider());
    let at = deployment.poi_distributor;
    let chr = U256::from(10u64).pow(U256::from(18u64));
    let budget = distributor.epochBudget().call().await.unwrap();
    assert_eq!(budget, U256::from(1_000_000u64) * chr);
    owner
        .transact(
            "fund",
            deployment.token,
            &ChorusToken::mintCall {
                to: at,
                amount: U256::from(10_000_000u64) * chr,
            },
        )
        .await
        .unwrap();
    let accounts: Vec<Address> = (1..=5u8)
        .map(Address::repeat_byte)
        .chain([other.address()])
        .collect();
    let tree_of = |extra: u64| {
        let claims: Vec<Claim> = accounts
            .iter()
            .enumerate()
            .map(|(i, a)| Claim {
                account: *a,
                cumulative_amount: U256::from(100 * (i as u64 + 1) + extra),
            })
            .collect();
        let total: U256 = claims.iter().map(|c| c.cumulative_amount).sum();
        (ClaimTree::build(&claims).unwrap(), total)
    };
    let (tree0, total0) = tree_of(0);
    let checkpoint = |epoch: u64, root: B256, total: U256| PoiDistributor::checkpointCall {
        epoch,
        root,
        manifestHash: B256::repeat_byte(0xee),
        cumulativeTotal: total,
    };
    let refused =
        |result: Result<alloy::rpc::types::TransactionReceipt, chorus_chain::ChainError>,
         what: &str| {
            assert!(result.is_err(), "{what} was accepted");
        };
    // Posting: the checkpointer only, the next epoch only (0 first; no far-future epoch
    // can block later ones), within the budget.
    refused(
        other
            .transact("unauthorised", at, &checkpoint(0, tree0.root(), total0))
            .await,
        "a checkpoint by another account",
    );
    refused(
        owner
            .transact("skip", at, &checkpoint(1, tree0.root(), total0))
            .await,
        "epoch 1 before epoch 0",
    );
    refused(
        owner
            .transact("far", at, &checkpoint(u64::MAX, tree0.root(), total0))
            .await,
        "epoch 2^64-1",
    );
    refused(
        owner
            .transact(
                "over budget",
                at,
                &checkpoint(0, tree0.root(), budget + U256::from(1u64)),
            )
            .await,
        "a total over one epoch's budget",
    );
    owner
        .transact("checkpoint 0", at, &checkpoint(0, tree0.root(), total0))
        .await
        .unwrap();
    refused(
        owner
            .transact("again", at, &checkpoint(0, tree0.root(), total0))
            .await,
        "epoch 0 twice",
    );
    // Pending: no claim before the window ends.
    let claim_of = |tree: &ClaimTree, epoch: u64, account: Address| {
        let (claim, proof) = tree.proof(account).unwrap();
        PoiDistributor::claimCall {
            epoch,
            account: claim.account,
            cumulativeAmount: claim.cumulative_amount,
            proof,
        }
    };
    refused(
        owner
            .transact("early claim", at, &claim_of(&tree0, 0, other.address()))
            .await,
        "a claim inside the challenge window",
    );
    // A wrong epoch 1 (its total decreasing is refused; a growing one is posted), then
    // the guardian revokes epoch 0, which takes epoch 1 with it.
    let (wrong1, wrong_total) = tree_of(1_000);
    refused(
        owner
            .transact(
                "decreasing",
                at,
                &checkpoint(1, wrong1.root(), total0 - U256::from(1u64)),
            )
            .await,
        "a cumulative total that decreases",
    );
    owner
        .transact(
            "checkpoint 1",
            at,
            &checkpoint(1, wrong1.root(), wrong_total),
        )
        .await
        .unwrap();
    refused(
        other
            .transact(
                "revoke by another",
                at,
                &PoiDistributor::revokeCall { epoch: 0 },
            )
            .await,
        "a revocation by another account",
    );
    guardian
        .transact("revoke 0", at, &PoiDistributor::revokeCall { epoch: 0 })
        .await
        .unwrap();
    assert_eq!(distributor.rootOf(0).call().await.unwrap(), B256::ZERO);
    assert_eq!(distributor.rootOf(1).call().await.unwrap(), B256::ZERO);
    assert_eq!(distributor.nextEpoch().call().await.unwrap(), 0);
    advance_time(&owner, CHALLENGE_WINDOW_SECONDS + 1)
        .await
        .unwrap();
    refused(
        owner
            .transact("claim revoked", at, &claim_of(&wrong1, 1, other.address()))
            .await,
        "a claim against a revoked root, after its window",
    );
    // The revoked epoch is posted again, correctly; it pays after its window, exactly.
    owner
        .transact(
            "checkpoint 0 again",
            at,
            &checkpoint(0, tree0.root(), total0),
        )
        .await
        .unwrap();
    refused(
        owner
            .transact("early claim", at, &claim_of(&tree0, 0, other.address()))
            .await,
        "a claim inside the new root's window",
    );
    advance_time(&owner, CHALLENGE_WINDOW_SECONDS + 1)
        .await
        .unwrap();
    refused(
        guardian
            .transact("late revoke", at, &PoiDistributor::revokeCall { epoch: 0 })
            .await,
        "a revocation after the window",
    );
    let before = token.balanceOf(other.address()).call().await.unwrap();
    let call = claim_of(&tree0, 0, other.address());
    owner.transact("claim", at, &call).await.unwrap();
    assert_eq!(
        token.balanceOf(other.address()).call().await.unwrap() - before,
        call.cumulativeAmount
    );
    refused(
        owner.transact("claim twice", at, &call).await,
        "a second claim",
    );
    let (_, wrong_proof) = tree0.proof(Address::repeat_byte(1)).unwrap();
    refused(
        owner
            .transact(
                "wrong proof",
                at,
                &PoiDistributor::claimCall {
                    epoch: 0,
                    account: Address::repeat_byte(2),
                    cumulativeAmount: U256::from(200u64),
                    proof: wrong_proof,
                },
            )
            .await,
        "a claim with another account's proof",
    );
    // Paused by the guardian: no claim; only the admin unpauses.
    guardian
        .transact("pause", at, &PoiDistributor::pauseCall {})
        .await
        .unwrap();
    let call2 = claim_of(&tree0, 0, Address::repeat_byte(2));
    refused(
        owner.transact("paused claim", at, &call2).await,
        "a claim while paused",
    );
    refused(
        guardian
            .transact("guardian unpause", at, &PoiDistributor::unpauseCall {})
            .await,
        "an unpause by the guardian",
    );
    owner
        .transact("unpause", at, &PoiDistributor::unpauseCall {})
        .await
        .unwrap();
    owner
        .transact("claim after unpause", at, &call2)
        .await
        .unwrap();
    // Next epoch: a claim pays only the difference.
    let (tree1, total1) = tree_of(7);
    owner
        .transact("checkpoint 1", at, &checkpoint(1, tree1.root(), total1))
        .await
        .unwrap();
    advance_time(&owner, CHALLENGE_WINDOW_SECONDS + 1)
        .await
        .unwrap();
    let before = token.balanceOf(other.address()).call().await.unwrap();
    owner
        .transact("claim 1", at, &claim_of(&tree1, 1, other.address()))
        .await
        .unwrap();
    assert_eq!(
        token.balanceOf(other.address()).call().await.unwrap() - before,
        U256::from(7u64)
    );
    // Claims never pay beyond the epoch's cumulative total: a tree whose leaves add up
    // to more than the total posted with it pays until the total is reached.
    let (tree2, _) = tree_of(1_000_000);
    let claimed = distributor.totalClaimed().call().await.unwrap();
    let small_total = total1 + U256::from(1_000u64);
    owner
        .transact(
            "checkpoint 2",
            at,
            &checkpoint(2, tree2.root(), small_total),
        )
        .await
        .unwrap();
    advance_time(&owner, CHALLENGE_WINDOW_SECONDS + 1)
        .await
        .unwrap();
    assert!(small_total - claimed < U256::from(2_000_000u64));
    refused(
        owner
            .transact("over the total", at, &claim_of(&tree2, 2, other.address()))
            .await,
        "a claim beyond the epoch's cumulative total",
    );
    // The admin role moves in two steps (AccessControlDefaultAdminRules): granting it
    // directly is refused; begin, then accept after the (zero) delay.
    let admin_role = distributor.DEFAULT_ADMIN_ROLE().call().await.unwrap();
    refused(
        owner
            .transact(
                "grant admin",
                at,
                &PoiDistributor::grantRoleCall {
                    role: admin_role,
                    account: other.address(),
                },
            )
            .await,
        "granting the admin role directly",
    );
    owner
        .transact(
            "begin admin transfer",
            at,
            &PoiDistributor::beginDefaultAdminTransferCall {
                newAdmin: other.address(),
            },
        )
        .await
        .unwrap();
    advance_time(&owner, 2).await.unwrap();
    other
        .transact(
            "accept admin",
            at,
            &PoiDistributor::acceptDefaultAdminTransferCall {},
        )
        .await
        .unwrap();
    assert_eq!(
        distributor.defaultAdmin().call().await.unwrap(),
        other.address()
    );
}

#[test]
fn merkle_tree_matches_openzeppelin_standard_merkle_tree() {
    let claims: Vec<Claim> = (1..=11u8)
        .map(|i| Claim {
            account: Address::repeat_byte(i.wrapping_mul(23)),
            cumulative_amount: U256::from(u64::from(i) * 1_000_000_007),
        })
        .collect();
    let tree = ClaimTree::build(&claims).unwrap();
    let values: Vec<serde_json::Value> = claims
        .iter()
        .map(|c| serde_json::json!([c.account.to_checksum(None), c.cumulative_amount.to_string()]))
        .collect();
    let script = format!(
        r#"const {{ StandardMerkleTree }} = require("@openzeppelin/merkle-tree");
const values = {values};
const tree = StandardMerkleTree.of(values, ["address", "uint256"]);
const proofs = {{}};
for (const [i, v] of tree.entries()) proofs[v[0].toLowerCase()] = tree.getProof(i);
console.log(JSON.stringify({{ root: tree.root, proofs }}));"#,
        values = serde_json::Value::Array(values)
    );
    let output = Command::new("node")
        .arg("-e")
        .arg(script)
        .env("NODE_PATH", npm_modules())
        .output()
        .expect("node (installed with the npm tools)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let js: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(js["root"].as_str().unwrap(), format!("{:#x}", tree.root()));
    for claim in &claims {
        let (_, proof) = tree.proof(claim.account).unwrap();
        let ours: Vec<String> = proof.iter().map(|p| format!("{p:#x}")).collect();
        let theirs: Vec<String> =
            serde_json::from_value(js["proofs"][format!("{:#x}", claim.account)].clone()).unwrap();
        assert_eq!(ours, theirs, "proof of {}", claim.account);
    }
}

#[test]
fn checked_in_artifacts_match_a_fresh_solc_build() {
    let out = std::env::temp_dir().join(format!(
        "chorus-artifacts-{}",
        uuid::Uuid::now_v7().simple()
    ));
    let status = Command::new("node")
        .arg(repo_root().join("infra/contracts/build.mjs"))
        .arg(&out)
        .status()
        .expect("node");
    assert!(status.success());
    let checked_in = repo_root().join("infra/contracts/artifacts");
    let mut compared = 0;
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        let fresh = std::fs::read(&path).unwrap();
        let stored = std::fs::read(checked_in.join(name)).unwrap_or_else(|_| {
            panic!("{name:?} is not checked in; run node infra/contracts/build.mjs")
        });
        assert!(
            fresh == stored,
            "{name:?} is stale; run node infra/contracts/build.mjs"
        );
        compared += 1;
    }
    assert_eq!(compared, 6);
    let _ = std::fs::remove_dir_all(out);
}
