//! The Merkle tree of cumulative claims, compatible with OpenZeppelin's
//! `StandardMerkleTree.of(values, ["address", "uint256"])` (merkle-tree 1.x) and
//! `MerkleProof.verify` in the contracts.
//!
//! - leaf = `keccak256(bytes.concat(keccak256(abi.encode(account, amount))))`
//!   (double hashing keeps a leaf from ever being read as an inner node);
//! - leaves are sorted by their hash, then laid out at the end of a flat array in
//!   reverse, the way the OpenZeppelin library does it;
//! - an inner node is `keccak256(min(a, b) ++ max(a, b))` (sorted pairs, so a proof is
//!   just the list of siblings).
//!
//! Because of the sort, the root does not depend on the order the values are given in.

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::sol_types::SolValue;

/// One claim: an account and its cumulative amount in wei.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Claim {
    pub account: Address,
    pub cumulative_amount: U256,
}

/// The leaf hash of a claim, as the distributor contract computes it.
pub fn leaf_hash(claim: &Claim) -> B256 {
    let encoded = (claim.account, claim.cumulative_amount).abi_encode();
    keccak256(keccak256(encoded))
}

fn hash_pair(a: &B256, b: &B256) -> B256 {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(low.as_slice());
    buf[32..].copy_from_slice(high.as_slice());
    keccak256(buf)
}

/// Why a tree could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MerkleError {
    #[error("a Merkle tree needs at least one claim")]
    Empty,
    #[error("account {0} appears more than once")]
    DuplicateAccount(Address),
}

/// A built tree: the flat node array plus where each account's leaf sits.
#[derive(Debug, Clone)]
pub struct ClaimTree {
    nodes: Vec<B256>,
    /// (account, cumulative amount, index of its leaf in `nodes`), sorted by account.
    leaves: Vec<(Claim, usize)>,
}

impl ClaimTree {
    /// Builds the tree. Each account may appear once.
    pub fn build(claims: &[Claim]) -> Result<Self, MerkleError> {
        if claims.is_empty() {
            return Err(MerkleError::Empty);
        }
        let mut sorted_by_account: Vec<Claim> = claims.to_vec();
        sorted_by_account.sort();
        for pair in sorted_by_account.windows(2) {
            if pair[0].account == pair[1].account {
                return Err(MerkleError::DuplicateAccount(pair[0].account));
            }
        }
        let mut hashed: Vec<(B256, Claim)> = sorted_by_account
            .iter()
            .map(|claim| (leaf_hash(claim), *claim))
            .collect();
        hashed.sort_by_key(|a| a.0);

        let leaf_count = hashed.len();
        let node_count = 2 * leaf_count - 1;
        let mut nodes = vec![B256::ZERO; node_count];
        let mut leaves = Vec::with_capacity(leaf_count);
        for (i, (hash, claim)) in hashed.iter().enumerate() {
            let index = node_count - 1 - i;
            nodes[index] = *hash;
            leaves.push((*claim, index));
        }
        for index in (0..node_count - leaf_count).rev() {
            nodes[index] = hash_pair(&nodes[2 * index + 1], &nodes[2 * index + 2]);
        }
        leaves.sort_by_key(|a| a.0.account);
        Ok(ClaimTree { nodes, leaves })
    }

    /// The root the distributor stores.
    pub fn root(&self) -> B256 {
        self.nodes[0]
    }

    /// Number of claims.
    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    /// Whether the tree has no claims (never true for a built tree).
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// Every claim, ordered by account.
    pub fn claims(&self) -> impl Iterator<Item = &Claim> {
        self.leaves.iter().map(|(claim, _)| claim)
    }

    /// The claim of `account` and its proof (siblings from the leaf up).
    pub fn proof(&self, account: Address) -> Option<(Claim, Vec<B256>)> {
        let position = self
            .leaves
            .binary_search_by(|(claim, _)| claim.account.cmp(&account))
            .ok()?;
        let (claim, mut index) = self.leaves[position];
        let mut proof = Vec::new();
        while index > 0 {
            let sibling = if index % 2 == 1 { index + 1 } else { index - 1 };
            proof.push(self.nodes[sibling]);
            index = (index - 1) / 2;
        }
        Some((claim, proof))
    }
}

/// Checks a proof the way OpenZeppelin's `MerkleProof.verify` does.
pub fn verify(root: B256, claim: &Claim, proof: &[B256]) -> bool {
    let computed = proof
        .iter()
        .fold(leaf_hash(claim), |acc, sibling| hash_pair(&acc, sibling));
    computed == root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(byte: u8, amount: u64) -> Claim {
        Claim {
            account: Address::repeat_byte(byte),
            cumulative_amount: U256::from(amount),
        }
    }

    #[test]
    fn every_proof_verifies_and_order_does_not_matter() {
        let claims: Vec<Claim> = (1..=37).map(|i| claim(i, u64::from(i) * 1000)).collect();
        let tree = ClaimTree::build(&claims).unwrap();
        for c in &claims {
            let (found, proof) = tree.proof(c.account).unwrap();
            assert_eq!(&found, c);
            assert!(verify(tree.root(), c, &proof));
            let mut wrong = *c;
            wrong.cumulative_amount += U256::from(1);
            assert!(!verify(tree.root(), &wrong, &proof));
        }
        let mut reversed = claims.clone();
        reversed.reverse();
        assert_eq!(ClaimTree::build(&reversed).unwrap().root(), tree.root());
    }

    #[test]
    fn single_leaf_tree_is_its_leaf() {
        let c = claim(9, 5);
        let tree = ClaimTree::build(&[c]).unwrap();
        assert_eq!(tree.root(), leaf_hash(&c));
        assert!(tree.proof(c.account).unwrap().1.is_empty());
    }

    #[test]
    fn rejects_empty_and_duplicates() {
        assert_eq!(ClaimTree::build(&[]).unwrap_err(), MerkleError::Empty);
        let err = ClaimTree::build(&[claim(1, 1), claim(1, 2)]).unwrap_err();
        assert_eq!(err, MerkleError::DuplicateAccount(Address::repeat_byte(1)));
    }
}
