//! From contributions to wei: each role's share of the pool is split among its accounts
//! by C_i / sum C with integer arithmetic. Floors first, then the remaining wei go one
//! each to the largest remainders (ties: lower account first), so the split is exact,
//! deterministic and independent of input order.

use std::collections::BTreeMap;

use alloy::primitives::{Address, U256};

use chorus_schemas::ContributorRole;

use crate::config::ScoringConfig;
use crate::engine::Contribution;

/// One account's payout in one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    pub role: ContributorRole,
    pub account: Address,
    pub points: u64,
    pub items: u64,
    pub amount: U256,
}

/// The split of an epoch.
#[derive(Debug, Clone, Default)]
pub struct Split {
    pub payouts: Vec<Payout>,
    /// Accounts that are not 20-byte hex addresses (cannot be paid), with their role.
    pub excluded: Vec<(String, String)>,
    /// Pool wei not paid (roles without contributors, basis-point rounding).
    pub undistributed: U256,
}

fn role_of(name: &str) -> Option<ContributorRole> {
    match name {
        "provider" => Some(ContributorRole::Provider),
        "agent_developer" => Some(ContributorRole::AgentDeveloper),
        "user" => Some(ContributorRole::User),
        _ => None,
    }
}

/// Splits the pool.
pub fn split(contributions: &[Contribution], config: &ScoringConfig) -> Split {
    let pool = config.reward_pool().unwrap_or_default();
    let mut by_role: BTreeMap<ContributorRole, Vec<(Address, u64, u64)>> = BTreeMap::new();
    let mut out = Split::default();
    for c in contributions {
        let (Some(role), Ok(account)) = (role_of(&c.role), c.account.parse::<Address>()) else {
            out.excluded.push((c.role.clone(), c.account.clone()));
            continue;
        };
        if c.points <= 0 {
            continue;
        }
        by_role
            .entry(role)
            .or_default()
            .push((account, c.points as u64, c.items.max(0) as u64));
    }
    let mut distributed = U256::ZERO;
    for (role, bps) in [
        (ContributorRole::Provider, config.pool.provider_share_bps),
        (
            ContributorRole::AgentDeveloper,
            config.pool.agent_developer_share_bps,
        ),
        (ContributorRole::User, config.pool.user_share_bps),
    ] {
        let Some(mut members) = by_role.remove(&role) else {
            continue;
        };
        members.sort();
        let role_pool = pool * U256::from(bps) / U256::from(10_000u64);
        let total: U256 = members.iter().map(|m| U256::from(m.1)).sum();
        if total.is_zero() {
            continue;
        }
        let mut amounts = Vec::with_capacity(members.len());
        let mut assigned = U256::ZERO;
        for (index, (_, points, _)) in members.iter().enumerate() {
            let product = role_pool * U256::from(*points);
            let amount = product / total;
            let remainder = product % total;
            assigned += amount;
            amounts.push((amount, remainder, index));
        }
        let mut left = role_pool - assigned;
        let mut order: Vec<usize> = (0..amounts.len()).collect();
        // Largest remainder first; equal remainders go to the lower account (members are
        // sorted by account, so the lower index).
        order.sort_by(|a, b| amounts[*b].1.cmp(&amounts[*a].1).then(a.cmp(b)));
        for index in order {
            if left.is_zero() {
                break;
            }
            amounts[index].0 += U256::from(1u64);
            left -= U256::from(1u64);
        }
        for ((account, points, items), (amount, _, _)) in members.into_iter().zip(amounts) {
            distributed += amount;
            out.payouts.push(Payout {
                role,
                account,
                points,
                items,
                amount,
            });
        }
    }
    out.undistributed = pool - distributed;
    out
}

/// Cumulative amounts after this epoch: the previous cumulative plus this epoch's payouts.
pub fn cumulative(
    previous: &BTreeMap<Address, U256>,
    payouts: &[Payout],
) -> BTreeMap<Address, U256> {
    let mut total = previous.clone();
    for payout in payouts {
        *total.entry(payout.account).or_default() += payout.amount;
    }
    total.retain(|_, amount| !amount.is_zero());
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ScoringConfig {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../infra/poi/scoring-v2.toml"
        ))
        .unwrap();
        ScoringConfig::parse(&text).unwrap()
    }

    fn contribution(role: &str, byte: u8, points: i64) -> Contribution {
        Contribution {
            role: role.into(),
            account: format!("{:#x}", Address::repeat_byte(byte)),
            points,
            items: 1,
        }
    }

    #[test]
    fn splits_exactly_with_largest_remainders_and_ignores_order() {
        let mut config = config();
        config.pool.reward_wei_per_epoch = "100".into();
        let input = vec![
            contribution("user", 1, 1),
            contribution("user", 2, 1),
            contribution("user", 3, 1),
            contribution("provider", 9, 7),
            contribution("user", 0xee, 0),
            Contribution {
                role: "user".into(),
                account: "not-an-address".into(),
                points: 5,
                items: 1,
            },
        ];
        let split_a = split(&input, &config);
        let mut reversed = input.clone();
        reversed.reverse();
        let split_b = split(&reversed, &config);
        assert_eq!(split_a.payouts, split_b.payouts);
        // user pool = 20 wei over 3 equal accounts: 7, 7, 6 (lowest accounts get the extra).
        let users: Vec<u64> = split_a
            .payouts
            .iter()
            .filter(|p| p.role == ContributorRole::User)
            .map(|p| p.amount.to::<u64>())
            .collect();
        assert_eq!(users, vec![7, 7, 6]);
        // No agent developers: their 30 wei stay undistributed.
        assert_eq!(split_a.undistributed, U256::from(30u64));
        assert_eq!(split_a.excluded.len(), 1);
        let total: U256 = split_a.payouts.iter().map(|p| p.amount).sum();
        assert_eq!(total + split_a.undistributed, U256::from(100u64));
    }
}
