#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The Chorus contracts on a real anvil (chain id 56), the Merkle tree against the
//! OpenZeppelin JS library, and the checked-in artifacts against a fresh solc-js build.

use std::process::Command;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;

use chorus_chain::contracts::{AgentRegistry, ChorusToken, PoiDistributor, ProviderRegistry};
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
async fn registries_staking_checkpoints_and_claims_follow_their_rules() {
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

    // Distributor: only the checkpointer posts, once per epoch, epochs increase.
    let accounts: Vec<Address> = (1..=5u8)
        .map(Address::repeat_byte)
        .chain([other.address()])
        .collect();
    let claims: Vec<Claim> = accounts
        .iter()
        .enumerate()
        .map(|(i, a)| Claim {
            account: *a,
            cumulative_amount: U256::from(100 * (i as u64 + 1)),
        })
        .collect();
    let tree = ClaimTree::build(&claims).unwrap();
    let total: U256 = claims.iter().map(|c| c.cumulative_amount).sum();
    owner
        .transact(
            "fund",
            deployment.token,
            &ChorusToken::mintCall {
                to: deployment.poi_distributor,
                amount: U256::from(1_000_000u64),
            },
        )
        .await
        .unwrap();
    let checkpoint = |epoch: u64, root: B256| PoiDistributor::checkpointCall {
        epoch,
        root,
        manifestHash: B256::repeat_byte(0xee),
        cumulativeTotal: total,
    };
    assert!(
        other
            .transact(
                "unauthorised",
                deployment.poi_distributor,
                &checkpoint(1, tree.root())
            )
            .await
            .is_err()
    );
    owner
        .transact(
            "checkpoint 1",
            deployment.poi_distributor,
            &checkpoint(1, tree.root()),
        )
        .await
        .unwrap();
    assert!(
        owner
            .transact(
                "again",
                deployment.poi_distributor,
                &checkpoint(1, tree.root())
            )
            .await
            .is_err()
    );
    assert!(
        owner
            .transact(
                "older",
                deployment.poi_distributor,
                &checkpoint(0, tree.root())
            )
            .await
            .is_err()
    );
    let distributor = PoiDistributor::new(deployment.poi_distributor, owner.provider());
    assert_eq!(distributor.rootOf(1).call().await.unwrap(), tree.root());

    // Claims: a valid proof pays; a second claim and a wrong proof are refused.
    let (claim, proof) = tree.proof(other.address()).unwrap();
    let call = PoiDistributor::claimCall {
        epoch: 1,
        account: claim.account,
        cumulativeAmount: claim.cumulative_amount,
        proof: proof.clone(),
    };
    let before = token.balanceOf(other.address()).call().await.unwrap();
    owner
        .transact("claim", deployment.poi_distributor, &call)
        .await
        .unwrap();
    assert_eq!(
        token.balanceOf(other.address()).call().await.unwrap() - before,
        claim.cumulative_amount
    );
    assert!(
        owner
            .transact("claim twice", deployment.poi_distributor, &call)
            .await
            .is_err()
    );
    let (_, wrong_proof) = tree.proof(Address::repeat_byte(1)).unwrap();
    let forged = PoiDistributor::claimCall {
        epoch: 1,
        account: Address::repeat_byte(2),
        cumulativeAmount: U256::from(200u64),
        proof: wrong_proof,
    };
    assert!(
        owner
            .transact("wrong proof", deployment.poi_distributor, &forged)
            .await
            .is_err()
    );

    // Next epoch: cumulative amounts grow; a claim pays only the difference.
    let grown: Vec<Claim> = claims
        .iter()
        .map(|c| Claim {
            account: c.account,
            cumulative_amount: c.cumulative_amount + U256::from(7u64),
        })
        .collect();
    let tree2 = ClaimTree::build(&grown).unwrap();
    owner
        .transact(
            "checkpoint 2",
            deployment.poi_distributor,
            &checkpoint(2, tree2.root()),
        )
        .await
        .unwrap();
    let (claim2, proof2) = tree2.proof(other.address()).unwrap();
    let before = token.balanceOf(other.address()).call().await.unwrap();
    owner
        .transact(
            "claim 2",
            deployment.poi_distributor,
            &PoiDistributor::claimCall {
                epoch: 2,
                account: claim2.account,
                cumulativeAmount: claim2.cumulative_amount,
                proof: proof2,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        token.balanceOf(other.address()).call().await.unwrap() - before,
        U256::from(7u64)
    );
    assert!(owner.provider().get_block_number().await.unwrap() > 10);
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
    assert_eq!(compared, 5);
    let _ = std::fs::remove_dir_all(out);
}
