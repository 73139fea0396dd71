//! In-memory state, rebuilt from Kafka on start.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::RwLock;

use uuid::Uuid;

use chorus_schemas::{
    AgentRegistered, AnyEvent, AuthorKind, ChatMessage, ConversationAction, ConversationUpdated,
};

/// Registered agents by id.
#[derive(Debug, Default)]
pub struct AgentDirectory {
    agents: RwLock<HashMap<String, AgentRegistered>>,
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
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "skipping an undecodable registry record"),
        }
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
