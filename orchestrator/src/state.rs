//! In-memory state, rebuilt from Kafka on start.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::RwLock;

use uuid::Uuid;

use chorus_schemas::{
    AgentRegistered, AnyEvent, AuthorKind, ChatMessage, ConversationAction, ConversationUpdated,
    ProviderRegistered,
};

/// Providers named on each inference job: the worker tries them in order, so one
/// failing provider does not fail the job.
pub const PROVIDERS_PER_JOB: usize = 2;

/// Registered agents and providers by id.
#[derive(Debug, Default)]
pub struct AgentDirectory {
    agents: RwLock<HashMap<String, AgentRegistered>>,
    providers: RwLock<HashMap<String, ProviderRegistered>>,
}

impl AgentDirectory {
    /// Adds an agent, or applies its owner's update. An update by another account is
    /// ignored: the router refuses those, and this keeps a record that predates it from
    /// redirecting the agent's payouts.
    pub fn upsert(&self, agent: AgentRegistered) {
        let mut agents = self.agents.write().unwrap_or_else(|p| p.into_inner());
        if let Some(first) = agents.get(&agent.agent_id)
            && !first.owner.eq_ignore_ascii_case(&agent.owner)
        {
            tracing::warn!(agent = %agent.agent_id, owner = %first.owner, claimed = %agent.owner, "ignoring a registration by another owner");
            return;
        }
        agents.insert(agent.agent_id.clone(), agent);
    }

    /// Adds a provider, or applies its owner's update (another account's is ignored).
    pub fn upsert_provider(&self, provider: ProviderRegistered) {
        let mut providers = self.providers.write().unwrap_or_else(|p| p.into_inner());
        if let Some(first) = providers.get(&provider.provider_id)
            && !first.owner.eq_ignore_ascii_case(&provider.owner)
        {
            tracing::warn!(provider = %provider.provider_id, owner = %first.owner, claimed = %provider.owner, "ignoring a provider registration by another owner");
            return;
        }
        providers.insert(provider.provider_id.clone(), provider);
    }

    /// The providers a job of `model` may go to, in the order to try them: the
    /// registered providers serving the model, ranked by a hash of (job, provider)
    /// (rendezvous hashing), the first [`PROVIDERS_PER_JOB`]. Jobs spread evenly over
    /// the providers of a model whatever their prices, so undercutting (a price of 0)
    /// wins no more jobs than any other provider gets; every orchestrator replica ranks
    /// alike. Empty when no registered provider serves the model (the job then names
    /// none, and pays no provider under poi-v3).
    pub fn assign(&self, model: &str, job_id: &Uuid) -> Vec<String> {
        let providers = self.providers.read().unwrap_or_else(|p| p.into_inner());
        let mut ranked: Vec<(u64, &str)> = providers
            .values()
            .filter(|p| p.models.iter().any(|m| m == model))
            .map(|p| (rendezvous(job_id, &p.provider_id), p.provider_id.as_str()))
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        ranked
            .into_iter()
            .take(PROVIDERS_PER_JOB)
            .map(|(_, id)| id.to_owned())
            .collect()
    }

    pub fn get(&self, agent_id: &str) -> Option<AgentRegistered> {
        self.agents
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(agent_id)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.agents.read().map(|a| a.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies a registry record (other record types are ignored).
    pub fn apply(&self, payload: &[u8]) {
        match AnyEvent::decode(None, payload) {
            Ok(AnyEvent::AgentRegistered(event)) => self.upsert(event.data),
            Ok(AnyEvent::ProviderRegistered(event)) => self.upsert_provider(event.data),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "skipping an undecodable registry record"),
        }
    }
}

/// FNV-1a over the job id's bytes and the provider id, then mixed: stable across
/// builds and machines, unlike the standard library's hasher.
fn rendezvous(job_id: &Uuid, provider_id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in job_id.as_bytes().iter().chain(provider_id.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // MurmurHash3's finalizer: FNV alone ranks ids that differ in their last bytes
    // unevenly.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod assignment_tests {
    use super::*;

    fn provider(id: &str, price: u64) -> ProviderRegistered {
        ProviderRegistered {
            provider_id: id.into(),
            owner: format!("0x{id}"),
            endpoint: format!("http://{id}.example/v1"),
            models: vec!["m".into()],
            price_per_1k_tokens_micros: price,
        }
    }

    #[test]
    fn jobs_spread_over_providers_whatever_their_price() {
        let directory = AgentDirectory::default();
        directory.upsert_provider(provider("free", 0));
        for (id, price) in [("a", 20), ("b", 30), ("c", 40)] {
            directory.upsert_provider(provider(id, price));
        }
        let mut first: HashMap<String, usize> = HashMap::new();
        for _ in 0..4_000 {
            let assigned = directory.assign("m", &Uuid::now_v7());
            assert_eq!(assigned.len(), PROVIDERS_PER_JOB);
            assert_ne!(assigned[0], assigned[1]);
            *first.entry(assigned[0].clone()).or_default() += 1;
        }
        for (id, jobs) in &first {
            assert!(
                (800..1_200).contains(jobs),
                "{id} got {jobs} of 4000: {first:?}"
            );
        }
        let job = Uuid::now_v7();
        assert_eq!(directory.assign("m", &job), directory.assign("m", &job));
        assert!(directory.assign("other-model", &job).is_empty());
        // Another owner cannot take a provider id over.
        let mut thief = provider("a", 1);
        thief.owner = "0xthief".into();
        directory.upsert_provider(thief);
        let providers = directory.providers.read().unwrap();
        assert_eq!(providers["a"].owner, "0xa");
    }
}

/// One recent message, as context for prompts.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextMessage {
    pub id: Uuid,
    /// Where the record sits in the chat topic (partition, offset).
    pub position: (i32, i64),
    pub author_kind: AuthorKind,
    pub author_id: String,
    pub content: String,
}

/// Message ids remembered per conversation for duplicate detection: far more than a
/// conversation sees within the API's signature window (a replay cannot arrive later).
pub const SEEN_PER_CONVERSATION: usize = 4096;

/// Whether a message record was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    New,
    /// The same record again (same position).
    Again,
    /// Another record with the same event id.
    Duplicate,
}

/// What the orchestrator knows of one conversation.
#[derive(Debug, Default, Clone)]
pub struct Conversation {
    pub members: BTreeSet<(String, String)>,
    pub recent: VecDeque<ContextMessage>,
    /// Where each of the last [`SEEN_PER_CONVERSATION`] message ids was read, to tell a
    /// duplicate record (another position) from the same record read again.
    pub seen: HashMap<Uuid, (i32, i64)>,
    seen_order: VecDeque<Uuid>,
    /// Agent calls decided, as (trigger message, agent): the spent part of the reply
    /// budget, counted when decided (not when answered), so a burst of triggers cannot
    /// spend it more than once.
    pub decided: HashSet<(Uuid, String)>,
}

impl Conversation {
    pub fn agent_members(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|(kind, _)| kind == "agent")
            .map(|(_, id)| id.clone())
            .collect()
    }

    pub fn has_agent(&self, agent_id: &str) -> bool {
        self.members
            .contains(&("agent".to_owned(), agent_id.to_owned()))
    }

    /// Whether `account` (any case) is a human member.
    pub fn has_human(&self, account: &str) -> bool {
        self.members
            .contains(&("human".to_owned(), account.to_lowercase()))
    }

    /// Budget spent by decisions for messages other than `trigger`.
    pub fn spent_except(&self, trigger: Uuid) -> usize {
        self.decided.iter().filter(|(t, _)| *t != trigger).count()
    }
}

fn kind_label(kind: AuthorKind) -> &'static str {
    match kind {
        AuthorKind::Human => "human",
        AuthorKind::Agent => "agent",
    }
}

/// All conversations. Applying the same event twice changes nothing (events are
/// identified by id), so the rebuild from the log and the live pipeline can overlap.
#[derive(Debug)]
pub struct Conversations {
    by_id: RwLock<HashMap<String, Conversation>>,
    context_size: usize,
}

impl Conversations {
    pub fn new(context_size: usize) -> Self {
        Conversations {
            by_id: RwLock::new(HashMap::new()),
            context_size: context_size.max(1),
        }
    }

    pub fn get(&self, conversation_id: &str) -> Conversation {
        self.by_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(conversation_id)
            .cloned()
            .unwrap_or_default()
    }

    pub fn apply_update(&self, update: &ConversationUpdated) {
        let mut all = self.by_id.write().unwrap_or_else(|p| p.into_inner());
        let conversation = all.entry(update.conversation_id.clone()).or_default();
        if let (Some(kind), Some(id)) = (update.member_kind, &update.member_id) {
            let id = match kind {
                AuthorKind::Human => id.to_lowercase(),
                AuthorKind::Agent => id.clone(),
            };
            let member = (kind_label(kind).to_owned(), id);
            match update.action {
                ConversationAction::Created | ConversationAction::MemberAdded => {
                    conversation.members.insert(member);
                }
                ConversationAction::MemberRemoved => {
                    conversation.members.remove(&member);
                }
            }
        }
    }

    /// Records a message. A message whose id is already known at another position is
    /// a duplicate record (a producer retried): it must not trigger anything twice. The
    /// same id at the same position is the same record read again (the state rebuild
    /// overlapping the pipeline, or a batch replayed after an aborted transaction): it is
    /// decided again, since its earlier outputs were not committed or are being redone.
    pub fn apply_message(&self, id: Uuid, position: (i32, i64), message: &ChatMessage) -> Seen {
        let mut all = self.by_id.write().unwrap_or_else(|p| p.into_inner());
        let conversation = all.entry(message.conversation_id.clone()).or_default();
        if let Some(known) = conversation.seen.get(&id) {
            return if *known == position {
                Seen::Again
            } else {
                Seen::Duplicate
            };
        }
        conversation.seen.insert(id, position);
        conversation.seen_order.push_back(id);
        if conversation.seen_order.len() > SEEN_PER_CONVERSATION
            && let Some(old) = conversation.seen_order.pop_front()
        {
            conversation.seen.remove(&old);
        }
        conversation.recent.push_back(ContextMessage {
            id,
            position,
            author_kind: message.author_kind,
            author_id: message.author_id.clone(),
            content: message.content.clone(),
        });
        while conversation.recent.len() > self.context_size {
            conversation.recent.pop_front();
        }
        Seen::New
    }

    /// Records that `agent_id` was called for `trigger` (a decision, or one read back).
    pub fn record_decision(&self, conversation_id: &str, trigger: Uuid, agent_id: &str) {
        let mut all = self.by_id.write().unwrap_or_else(|p| p.into_inner());
        all.entry(conversation_id.to_owned())
            .or_default()
            .decided
            .insert((trigger, agent_id.to_owned()));
    }

    /// Applies an agent-calls record (the rebuild of the spent budget).
    pub fn apply_call(&self, payload: &[u8]) {
        if let Ok(AnyEvent::AgentCall(call)) = AnyEvent::decode(None, payload) {
            self.record_decision(
                &call.data.conversation_id,
                call.data.trigger_message_id,
                &call.data.agent_id,
            );
        }
    }

    /// Applies a chat-topic record (used by the rebuild).
    pub fn apply(&self, partition: i32, offset: i64, payload: &[u8]) {
        match AnyEvent::decode(None, payload) {
            Ok(AnyEvent::ChatMessage(event)) => {
                self.apply_message(event.id, (partition, offset), &event.data);
            }
            Ok(AnyEvent::ConversationUpdated(event)) => self.apply_update(&event.data),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "skipping an undecodable chat record"),
        }
    }
}
