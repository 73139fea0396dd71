//! The attack benchmark (`chorus-bench poi attacks`): for each adversary of
//! [`crate::synthetic::Adversaries`], the pool share it earns in an epoch of the honest
//! workload plus its attack, beside the share the same actor earns doing the same real
//! work from one honest address, under each scoring config given; and whether the honest
//! workload's ranking changes between configs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use alloy::primitives::{Address, U256};

use crate::archive::ArchiveError;
use crate::config::ScoringConfig;
use crate::engine::{EngineConfig, EngineError, run_plan};
use crate::payout::split;
use crate::sql::ScoringPlan;
use crate::synthetic::{
    Adversaries, Brigade, Farm, Workload, adversary_operator, farm_address, farm_developer,
    rival_developer, write_archive_with,
};

/// Why the benchmark failed.
#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("archive task: {0}")]
    Task(String),
}

/// One adversary: its attack, the honest equivalent, and whose payouts are its take.
pub struct Scenario {
    pub name: String,
    pub attack: Adversaries,
    /// The same actor doing the same real work from one honest address.
    pub honest: Adversaries,
    pub accounts: Vec<String>,
}

/// The adversaries of issue 18, for a base workload.
pub fn scenarios(farm_addresses: u64) -> Vec<Scenario> {
    let fresh_farm = |addresses: u64| Scenario {
        name: format!(
            "sybil farm: {addresses} fresh addresses x 5 messages to its own agent, each reply rated 5 by another farm address"
        ),
        attack: Adversaries {
            farm: Some(Farm {
                addresses,
                messages: 5,
                bond_chr: 0,
                developer_bond_chr: 100,
                own_agent: true,
                developer_asks: false,
            }),
            ..Adversaries::default()
        },
        honest: Adversaries {
            farm: Some(Farm {
                addresses: 1,
                messages: 5 * addresses,
                bond_chr: 0,
                developer_bond_chr: 100,
                own_agent: true,
                developer_asks: true,
            }),
            ..Adversaries::default()
        },
        accounts: (0..addresses)
            .map(farm_address)
            .chain([farm_developer()])
            .collect(),
    };
    let split_farm = Scenario {
        name: "one 100 CHR bond split over 10 addresses, 50 real messages each to honest agents"
            .into(),
        attack: Adversaries {
            farm: Some(Farm {
                addresses: 10,
                messages: 50,
                bond_chr: 10,
                developer_bond_chr: 0,
                own_agent: false,
                developer_asks: false,
            }),
            ..Adversaries::default()
        },
        honest: Adversaries {
            farm: Some(Farm {
                addresses: 1,
                messages: 500,
                bond_chr: 100,
                developer_bond_chr: 0,
                own_agent: false,
                developer_asks: false,
            }),
            ..Adversaries::default()
        },
        accounts: (0..10).map(farm_address).collect(),
    };
    let brigade = |attacks: bool| Adversaries {
        brigade: Some(Brigade {
            raters: 50,
            rival_exchanges: 500,
            attacks,
        }),
        ..Adversaries::default()
    };
    let sock_puppet = Scenario {
        name: "sock puppet: one bonded user (10 CHR) sends 2,000 messages to its own bonded developer's agent (100 CHR), rating each 5".into(),
        attack: Adversaries {
            farm: Some(Farm {
                addresses: 1,
                messages: 2_000,
                bond_chr: 10,
                developer_bond_chr: 100,
                own_agent: true,
                developer_asks: false,
            }),
            ..Adversaries::default()
        },
        honest: Adversaries {
            farm: Some(Farm {
                addresses: 1,
                messages: 2_000,
                bond_chr: 0,
                developer_bond_chr: 110,
                own_agent: true,
                developer_asks: true,
            }),
            ..Adversaries::default()
        },
        accounts: vec![farm_address(0), farm_developer()],
    };
    vec![
        fresh_farm(farm_addresses),
        fresh_farm(farm_addresses / 10),
        sock_puppet,
        split_farm,
        Scenario {
            name: "provider reporting 20x the tokens it served (1,000 jobs)".into(),
            attack: Adversaries {
                inflating_provider: Some(20),
                ..Adversaries::default()
            },
            honest: Adversaries {
                inflating_provider: Some(1),
                ..Adversaries::default()
            },
            accounts: vec![adversary_operator(0)],
        },
        Scenario {
            name: "price-0 provider serving 2,000 jobs assigned to others or to nobody".into(),
            attack: Adversaries {
                grabbing_provider: Some(2_000),
                ..Adversaries::default()
            },
            honest: Adversaries {
                grabbing_provider: Some(0),
                ..Adversaries::default()
            },
            accounts: vec![adversary_operator(1)],
        },
        Scenario {
            name: "provider unstaking to zero before the epoch ends (1,000 jobs)".into(),
            attack: Adversaries {
                unstaking_provider: Some(true),
                ..Adversaries::default()
            },
            honest: Adversaries {
                unstaking_provider: Some(false),
                ..Adversaries::default()
            },
            accounts: vec![adversary_operator(2)],
        },
        Scenario {
            name:
                "rating brigade: 50 bonded raters rate a rival's 500 replies 1 star (the brigade)"
                    .into(),
            attack: brigade(true),
            honest: brigade(false),
            accounts: (0..50).map(crate::synthetic::brigade_rater).collect(),
        },
        Scenario {
            name: "rating brigade: the rival developer's take, attacked vs not".into(),
            attack: brigade(true),
            honest: brigade(false),
            accounts: vec![rival_developer()],
        },
    ]
}

/// One row of the table: the share of the epoch's pool (0..1) per config.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub adversary: String,
    /// Per config version: the attack's share.
    pub attack: BTreeMap<String, f64>,
    /// Per config version: the honest equivalent's share.
    pub honest: BTreeMap<String, f64>,
}

/// The payouts of an archive under a config, by account.
async fn payouts(
    archive: &Path,
    config: &ScoringConfig,
    engine: &EngineConfig,
) -> Result<BTreeMap<Address, U256>, AttackError> {
    let rows = run_plan(archive, &ScoringPlan::new(config), engine).await?;
    let mut out: BTreeMap<Address, U256> = BTreeMap::new();
    for payout in split(&rows, config).payouts {
        *out.entry(payout.account).or_default() += payout.amount;
    }
    Ok(out)
}

fn share(payouts: &BTreeMap<Address, U256>, accounts: &[String], pool: U256) -> f64 {
    let accounts: BTreeSet<Address> = accounts.iter().filter_map(|a| a.parse().ok()).collect();
    let take: U256 = payouts
        .iter()
        .filter(|(a, _)| accounts.contains(*a))
        .map(|(_, v)| *v)
        .sum();
    // f64 of wei: exact enough for a share printed to 4 digits.
    let as_f64 = |v: U256| v.to_string().parse::<f64>().unwrap_or(0.0);
    if pool.is_zero() {
        0.0
    } else {
        as_f64(take) / as_f64(pool)
    }
}

async fn archive(
    dir: PathBuf,
    workload: Workload,
    adversaries: Adversaries,
) -> Result<PathBuf, AttackError> {
    tokio::task::spawn_blocking(move || {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| ArchiveError::Io {
                path: dir.clone(),
                source: e,
            })?;
        }
        write_archive_with(&dir, workload, &adversaries, 0).map(|_| dir)
    })
    .await
    .map_err(|e| AttackError::Task(e.to_string()))?
    .map_err(AttackError::from)
}

/// Scores every scenario (attack and honest equivalent) under every config.
pub async fn run(
    workload: Workload,
    scenarios: &[Scenario],
    configs: &[ScoringConfig],
    work_dir: &Path,
    engine: &EngineConfig,
) -> Result<Vec<Row>, AttackError> {
    let mut rows = Vec::new();
    for (index, scenario) in scenarios.iter().enumerate() {
        let mut row = Row {
            adversary: scenario.name.clone(),
            attack: BTreeMap::new(),
            honest: BTreeMap::new(),
        };
        for (variant, adversaries) in [("attack", &scenario.attack), ("honest", &scenario.honest)] {
            let dir = archive(
                work_dir.join(format!("scenario-{index}-{variant}")),
                workload,
                adversaries.clone(),
            )
            .await?;
            for config in configs {
                let paid = payouts(&dir, config, engine).await?;
                let pool = config.reward_pool().unwrap_or_default();
                let value = share(&paid, &scenario.accounts, pool);
                let column = if variant == "attack" {
                    &mut row.attack
                } else {
                    &mut row.honest
                };
                column.insert(config.version.clone(), value);
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

/// How the honest workload's ranking (accounts ordered by payout, per role) differs
/// between two configs: per role, the accounts whose place changed and all ranked.
pub async fn ranking_changes(
    workload: Workload,
    before: &ScoringConfig,
    after: &ScoringConfig,
    work_dir: &Path,
    engine: &EngineConfig,
) -> Result<BTreeMap<String, (usize, usize)>, AttackError> {
    let dir = archive(work_dir.join("honest"), workload, Adversaries::default()).await?;
    let rank = |config: &ScoringConfig| {
        let config = config.clone();
        let dir = dir.clone();
        let engine = engine.clone();
        async move {
            let rows = run_plan(&dir, &ScoringPlan::new(&config), &engine).await?;
            let mut by_role: BTreeMap<String, Vec<(U256, Address)>> = BTreeMap::new();
            for p in split(&rows, &config).payouts {
                by_role
                    .entry(format!("{:?}", p.role))
                    .or_default()
                    .push((p.amount, p.account));
            }
            let mut ranked = BTreeMap::new();
            for (role, mut members) in by_role {
                members.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
                for (place, (_, account)) in members.into_iter().enumerate() {
                    ranked.insert((role.clone(), account), place);
                }
            }
            Ok::<_, AttackError>(ranked)
        }
    };
    let (old, new) = (rank(before).await?, rank(after).await?);
    let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for key in old.keys().chain(new.keys()).collect::<BTreeSet<_>>() {
        let entry = out.entry(key.0.clone()).or_default();
        entry.1 += 1;
        if old.get(key) != new.get(key) {
            entry.0 += 1;
        }
    }
    Ok(out)
}
