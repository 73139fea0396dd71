//! A generated workload: humans chatting in groups with agents, plus registrations and
//! feedback, written as event envelopes to the intake topic. Used by `chorus demo` and by
//! the workbench (`chorus-bench generate`, the Kafka benchmark).

use std::time::Instant;

use clap::Args;

use chorus_runtime::kafka::{EventProducer, KafkaArgs, ProduceError};
use chorus_schemas::*;

/// Why a workload could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("creating the generator's producer")]
    Producer(#[source] rdkafka::error::KafkaError),
    #[error("writing to {topic}")]
    Enqueue {
        topic: String,
        #[source]
        source: ProduceError,
    },
    #[error("waiting for the broker to acknowledge")]
    Delivery(#[source] ProduceError),
}

#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// Number of events to write.
    #[arg(long, default_value_t = 10_000)]
    pub events: u64,
    /// Number of group conversations.
    #[arg(long, default_value_t = 50)]
    pub conversations: u64,
    /// Also write one malformed record every N events (0 = none), to show dead-lettering.
    #[arg(long, default_value_t = 0)]
    pub malformed_every: u64,
    /// Seed of the generator (same seed, same workload shape).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// A small deterministic generator (xorshift64*), so workloads need no RNG crate.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

const AGENTS: [&str; 4] = ["helper", "critic", "poet", "researcher"];
const PHRASES: [&str; 6] = [
    "what do you think about this plan?",
    "can someone summarise the thread?",
    "write a haiku about validators",
    "which GPU provider is cheapest today?",
    "explain proof of intelligence in one line",
    "thanks, that helped!",
];

fn account(n: u64) -> String {
    format!("0x{n:040x}")
}

/// The `i`-th event of the workload.
pub fn workload_event(rng: &mut Rng, i: u64, conversations: u64) -> AnyEvent {
    let source = "generator";
    if i < AGENTS.len() as u64 {
        let name = AGENTS[i as usize];
        return AnyEvent::AgentRegistered(Envelope::new(
            source,
            AgentRegistered {
                agent_id: name.to_owned(),
                owner: account(0xA000 + i),
                name: name.to_owned(),
                system_prompt: format!("You are {name}, a concise assistant in a group chat."),
                model: "SmolLM2-135M-Instruct".to_owned(),
                price_per_call_micros: 1_000 + 250 * i,
            },
        ));
    }
    // Then each conversation is created by its owner (the router refuses changes to a
    // conversation nobody created, and changes by anyone but its owner).
    let conversations = conversations.max(1);
    let first_conversation = AGENTS.len() as u64;
    if i < first_conversation + conversations {
        let c = i - first_conversation;
        let owner = account(0xC000 + c);
        return AnyEvent::ConversationUpdated(Envelope::new(
            source,
            ConversationUpdated {
                conversation_id: format!("group-{c}"),
                action: ConversationAction::Created,
                actor: owner.clone(),
                member_kind: Some(AuthorKind::Human),
                member_id: Some(owner),
                title: Some(format!("Group {c}")),
            },
        ));
    }
    let c = rng.below(conversations);
    let conversation = format!("group-{c}");
    let user = account(0xB000 + rng.below(200));
    match rng.below(10) {
        0 => AnyEvent::Feedback(Envelope::new(
            source,
            Feedback {
                conversation_id: conversation,
                message_id: uuid::Uuid::now_v7(),
                account: user,
                rating: 1 + rng.below(5) as u8,
                comment: None,
            },
        )),
        1 => AnyEvent::ConversationUpdated(Envelope::new(
            source,
            ConversationUpdated {
                conversation_id: conversation,
                action: ConversationAction::MemberAdded,
                actor: account(0xC000 + c),
                member_kind: Some(AuthorKind::Agent),
                member_id: Some(AGENTS[rng.below(AGENTS.len() as u64) as usize].to_owned()),
                title: None,
            },
        )),
        _ => {
            let mention = AGENTS[rng.below(AGENTS.len() as u64) as usize];
            AnyEvent::ChatMessage(Envelope::new(
                source,
                ChatMessage {
                    conversation_id: conversation,
                    author_kind: AuthorKind::Human,
                    author_id: user,
                    content: format!(
                        "@{mention} {}",
                        PHRASES[rng.below(PHRASES.len() as u64) as usize]
                    ),
                    mentions: vec![mention.to_owned()],
                    reply_to: None,
                    hop: 0,
                    job_id: None,
                },
            ))
        }
    }
}

/// Whether only the ingest API submits `event` (registrations, conversation changes).
pub fn submitted_by_the_api(event: &AnyEvent) -> bool {
    matches!(
        event,
        AnyEvent::AgentRegistered(_)
            | AnyEvent::ProviderRegistered(_)
            | AnyEvent::ConversationUpdated(_)
    )
}

/// What `write_workload` wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    pub valid: u64,
    pub malformed: u64,
    pub seconds: f64,
}

/// Writes the workload through the idempotent producer: to the intake topic as `kafka`,
/// except registrations and conversation changes, which only the ingest API submits
/// (signed): those go to the API's intake topic as `api_kafka`, standing in for it.
pub async fn write_workload(
    kafka: &KafkaArgs,
    api_kafka: &KafkaArgs,
    args: &GenerateArgs,
) -> Result<Written, WorkloadError> {
    let producer =
        EventProducer::new(kafka, "generator", 100_000).map_err(WorkloadError::Producer)?;
    let api_producer =
        EventProducer::new(api_kafka, "generator-api", 100_000).map_err(WorkloadError::Producer)?;
    let api_topic = kafka.topic(Topic::ApiIntake);
    let enqueue_error = |source| WorkloadError::Enqueue {
        topic: kafka.topic(Topic::Intake),
        source,
    };
    let topic = kafka.topic(Topic::Intake);
    let mut rng = Rng::new(args.seed);
    let started = Instant::now();
    let mut batch = producer.batch();
    let mut api_batch = api_producer.batch();
    let mut written = Written::default();
    for i in 0..args.events {
        if args.malformed_every > 0 && i % args.malformed_every == args.malformed_every - 1 {
            let garbage = format!("{{\"type\":\"chat.message\",\"truncated\":{i}");
            batch
                .enqueue_raw(&topic, Some(b"bad"), garbage.as_bytes(), None)
                .await
                .map_err(enqueue_error)?;
            written.malformed += 1;
        }
        let event = workload_event(&mut rng, i, args.conversations);
        let (batch, topic) = if submitted_by_the_api(&event) {
            (&mut api_batch, &api_topic)
        } else {
            (&mut batch, &topic)
        };
        batch
            .enqueue_any_to(topic, &event)
            .await
            .map_err(enqueue_error)?;
        written.valid += 1;
    }
    batch.finish().await.map_err(WorkloadError::Delivery)?;
    api_batch.finish().await.map_err(WorkloadError::Delivery)?;
    written.seconds = started.elapsed().as_secs_f64();
    Ok(written)
}
