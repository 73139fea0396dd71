//! Who answers, and the events that make them answer.

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};

use prometheus::IntCounterVec;
use uuid::Uuid;

use chorus_runtime::kafka::{InputRecord, OutputRecord, ProcessError, Transform};
use chorus_runtime::metrics;
use chorus_schemas::{
    AgentCall, AgentRegistered, AnyEvent, AuthorKind, CallReason, ChatMessage, ChatTurn, Envelope,
    InferenceJob, InferenceResult, JobKind, JobStatus,
};

use crate::state::{AgentDirectory, Conversation, Conversations, Seen};

static DECISIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    metrics::counter(
        "chorus_orchestrator_decisions_total",
        "Agent-answer decisions, by outcome (called, hop_limit, budget_spent, not_member, author_not_member, unknown_agent).",
        &["outcome"],
    )
});
static REPLIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    metrics::counter(
        "chorus_orchestrator_replies_total",
        "Inference results turned into replies, by outcome.",
        &["outcome"],
    )
});

/// Orchestration policy.
#[derive(Debug, Clone)]
pub struct OrchestratorSettings {
    /// Agent messages with this hop or more trigger no further agent.
    pub max_hops: u32,
    /// Most agent messages per conversation.
    pub reply_budget: usize,
    /// `max_tokens` of agent replies.
    pub max_tokens: u32,
    /// Deadline of inference jobs, in milliseconds.
    pub job_deadline_ms: u64,
    pub topic_prefix: String,
    pub source: String,
}

/// The orchestrator transform. Run it with concurrency 1: decisions depend on the
/// order of a conversation's messages.
#[derive(Debug)]
pub struct Orchestrator {
    settings: OrchestratorSettings,
    agents: Arc<AgentDirectory>,
    conversations: Arc<Conversations>,
}

/// `@agent-id` tokens in a text.
pub fn mentions_in(content: &str) -> Vec<String> {
    content
        .split(|c: char| {
            c.is_whitespace() || matches!(c, ',' | '.' | '!' | '?' | ':' | ';' | '(' | ')')
        })
        .filter_map(|word| word.strip_prefix('@'))
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Orchestrator {
    pub fn new(
        settings: OrchestratorSettings,
        agents: Arc<AgentDirectory>,
        conversations: Arc<Conversations>,
    ) -> Self {
        LazyLock::force(&DECISIONS);
        LazyLock::force(&REPLIES);
        Orchestrator {
            settings,
            agents,
            conversations,
        }
    }

    /// The agents that answer `message` in `conversation`, with the reason.
    pub fn responders(
        &self,
        message_id: Uuid,
        message: &ChatMessage,
        conversation: &Conversation,
    ) -> Vec<(AgentRegistered, CallReason)> {
        // People who are not members are not answered (the API refuses their posts; a
        // post that raced a removal is decided here, in log order).
        if message.author_kind == AuthorKind::Human && !conversation.has_human(&message.author_id) {
            DECISIONS.with_label_values(&["author_not_member"]).inc();
            return Vec::new();
        }
        let mut mentioned: BTreeSet<String> = message.mentions.iter().cloned().collect();
        mentioned.extend(mentions_in(&message.content));
        if message.author_kind == AuthorKind::Agent {
            mentioned.remove(&message.author_id);
            if message.hop >= self.settings.max_hops {
                if !mentioned.is_empty() {
                    DECISIONS.with_label_values(&["hop_limit"]).inc();
                }
                return Vec::new();
            }
        }
        let (candidates, reason) = match (message.author_kind, mentioned.is_empty()) {
            (AuthorKind::Human, true) => match conversation.agent_members().as_slice() {
                [only] => (vec![only.clone()], CallReason::GroupPolicy),
                _ => (Vec::new(), CallReason::GroupPolicy),
            },
            (AuthorKind::Human, false) => (mentioned.into_iter().collect(), CallReason::Mention),
            (AuthorKind::Agent, _) => (mentioned.into_iter().collect(), CallReason::AgentReply),
        };
        // The budget counts calls decided, this message's own earlier decisions (a batch
        // decided again after an abort) aside.
        let mut spent = conversation.spent_except(message_id);
        let mut out = Vec::new();
        for agent_id in candidates {
            if !conversation.has_agent(&agent_id) {
                DECISIONS.with_label_values(&["not_member"]).inc();
                continue;
            }
            let Some(agent) = self.agents.get(&agent_id) else {
                DECISIONS.with_label_values(&["unknown_agent"]).inc();
                continue;
            };
            if spent >= self.settings.reply_budget {
                DECISIONS.with_label_values(&["budget_spent"]).inc();
                continue;
            }
            spent += 1;
            DECISIONS.with_label_values(&["called"]).inc();
            out.push((agent, reason));
        }
        out
    }

    fn prompt(&self, agent: &AgentRegistered, conversation: &Conversation) -> Vec<ChatTurn> {
        let mut turns = vec![ChatTurn {
            role: "system".into(),
            content: agent.system_prompt.clone(),
        }];
        for message in &conversation.recent {
            if message.author_kind == AuthorKind::Agent && message.author_id == agent.agent_id {
                turns.push(ChatTurn {
                    role: "assistant".into(),
                    content: message.content.clone(),
                });
            } else {
                turns.push(ChatTurn {
                    role: "user".into(),
                    content: format!("{}: {}", message.author_id, message.content),
                });
            }
        }
        turns
    }

    fn on_message(
        &self,
        event: &Envelope<ChatMessage>,
        position: (i32, i64),
    ) -> Result<Vec<OutputRecord>, ProcessError> {
        if self
            .conversations
            .apply_message(event.id, position, &event.data)
            == Seen::Duplicate
        {
            DECISIONS.with_label_values(&["duplicate_message"]).inc();
            tracing::info!(message = %event.id, "skipping a duplicate record of a message already decided");
            return Ok(Vec::new());
        }
        let conversation = self.conversations.get(&event.data.conversation_id);
        let mut outputs = Vec::new();
        for (agent, reason) in self.responders(event.id, &event.data, &conversation) {
            self.conversations.record_decision(
                &event.data.conversation_id,
                event.id,
                &agent.agent_id,
            );
            let job_id = Uuid::now_v7();
            let call_id = Uuid::now_v7();
            let call = Envelope::new(
                self.settings.source.clone(),
                AgentCall {
                    call_id,
                    conversation_id: event.data.conversation_id.clone(),
                    agent_id: agent.agent_id.clone(),
                    agent_owner: agent.owner.clone(),
                    trigger_message_id: event.id,
                    trigger_author: (event.data.author_kind == AuthorKind::Human)
                        .then(|| event.data.author_id.to_lowercase()),
                    job_id,
                    hop: event.data.hop + 1,
                    reason,
                },
            );
            let job = Envelope::new(
                self.settings.source.clone(),
                InferenceJob {
                    job_id,
                    kind: JobKind::Chat,
                    model: agent.model.clone(),
                    messages: self.prompt(&agent, &conversation),
                    max_tokens: Some(self.settings.max_tokens),
                    temperature: Some(0.7),
                    stream: true,
                    provider_ids: self.agents.assign(&agent.model, &job_id),
                    call_id: Some(call_id),
                    conversation_id: Some(event.data.conversation_id.clone()),
                    agent_id: Some(agent.agent_id.clone()),
                    deadline_ms: Some(self.settings.job_deadline_ms),
                    reply_to: Some(event.id),
                    hop: event.data.hop + 1,
                },
            );
            outputs.push(encode(&self.settings.topic_prefix, &call)?);
            outputs.push(encode(&self.settings.topic_prefix, &job)?);
        }
        Ok(outputs)
    }

    fn on_result(
        &self,
        event: &Envelope<InferenceResult>,
    ) -> Result<Vec<OutputRecord>, ProcessError> {
        let result = &event.data;
        let (Some(conversation_id), Some(agent_id)) = (&result.conversation_id, &result.agent_id)
        else {
            return Ok(Vec::new()); // not an agent job
        };
        if result.status != JobStatus::Succeeded {
            REPLIES.with_label_values(&["job_failed"]).inc();
            tracing::warn!(job = %result.job_id, agent = %agent_id, error = ?result.error, "agent job failed; no reply");
            return Ok(Vec::new());
        }
        let content = result.content.clone().unwrap_or_default();
        let reply = Envelope::new(
            self.settings.source.clone(),
            ChatMessage {
                conversation_id: conversation_id.clone(),
                author_kind: AuthorKind::Agent,
                author_id: agent_id.clone(),
                mentions: mentions_in(&content),
                content,
                reply_to: result.reply_to,
                hop: result.hop,
                job_id: Some(result.job_id),
            },
        );
        REPLIES.with_label_values(&["replied"]).inc();
        Ok(vec![encode(&self.settings.topic_prefix, &reply)?])
    }
}

fn encode<T: chorus_schemas::EventData>(
    prefix: &str,
    event: &Envelope<T>,
) -> Result<OutputRecord, ProcessError> {
    OutputRecord::event(prefix, event)
        .map_err(|e| ProcessError::Retry(format!("encoding {}: {e}", T::TYPE)))
}

impl Transform for Orchestrator {
    async fn process(&self, record: &InputRecord<'_>) -> Result<Vec<OutputRecord>, ProcessError> {
        let payload = record
            .payload
            .filter(|p| !p.is_empty())
            .ok_or_else(|| ProcessError::Reject("record has no value".into()))?;
        match AnyEvent::decode(None, payload).map_err(|e| ProcessError::Reject(e.to_string()))? {
            AnyEvent::ChatMessage(event) => {
                self.on_message(&event, (record.partition, record.offset))
            }
            AnyEvent::ConversationUpdated(event) => {
                self.conversations.apply_update(&event.data);
                Ok(Vec::new())
            }
            AnyEvent::InferenceResult(event) => self.on_result(&event),
            other => Err(ProcessError::Reject(format!(
                "the orchestrator does not take {} events",
                other.type_name()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_schemas::{ConversationAction, ConversationUpdated};

    fn setup(max_hops: u32, budget: usize) -> Orchestrator {
        let agents = Arc::new(AgentDirectory::default());
        for id in ["a", "b", "outsider"] {
            agents.upsert(AgentRegistered {
                agent_id: id.into(),
                owner: format!("0x{id}"),
                name: id.into(),
                system_prompt: format!("You are {id}."),
                model: "m".into(),
                price_per_call_micros: 1,
            });
        }
        let conversations = Arc::new(Conversations::new(8));
        for (kind, member) in [
            (AuthorKind::Agent, "a"),
            (AuthorKind::Agent, "b"),
            (AuthorKind::Human, "0xu"),
        ] {
            conversations.apply_update(&ConversationUpdated {
                conversation_id: "c".into(),
                action: ConversationAction::MemberAdded,
                actor: "0xowner".into(),
                member_kind: Some(kind),
                member_id: Some(member.into()),
                title: None,
            });
        }
        let settings = OrchestratorSettings {
            max_hops,
            reply_budget: budget,
            max_tokens: 8,
            job_deadline_ms: 1000,
            topic_prefix: String::new(),
            source: "test".into(),
        };
        Orchestrator::new(settings, agents, conversations)
    }

    fn message(kind: AuthorKind, author: &str, content: &str, hop: u32) -> ChatMessage {
        ChatMessage {
            conversation_id: "c".into(),
            author_kind: kind,
            author_id: author.into(),
            content: content.into(),
            mentions: vec![],
            reply_to: None,
            hop,
            job_id: None,
        }
    }

    fn ids(o: &Orchestrator, m: &ChatMessage) -> Vec<String> {
        o.responders(Uuid::now_v7(), m, &o.conversations.get("c"))
            .into_iter()
            .map(|(a, _)| a.agent_id)
            .collect()
    }

    #[test]
    fn humans_address_member_agents_by_mention() {
        let o = setup(3, 10);
        assert_eq!(
            ids(
                &o,
                &message(AuthorKind::Human, "0xu", "@a and @b, thoughts?", 0)
            ),
            vec!["a", "b"]
        );
        assert!(
            ids(&o, &message(AuthorKind::Human, "0xu", "hello all", 0)).is_empty(),
            "two agents, no mention: nobody"
        );
        assert!(
            ids(&o, &message(AuthorKind::Human, "0xu", "@outsider hi", 0)).is_empty(),
            "not a member"
        );
        assert!(
            ids(&o, &message(AuthorKind::Human, "0xu", "@ghost hi", 0)).is_empty(),
            "not registered"
        );
    }

    #[test]
    fn agents_reply_to_agents_within_hop_limit_and_budget() {
        let o = setup(2, 3);
        assert_eq!(
            ids(
                &o,
                &message(AuthorKind::Agent, "a", "@b what do you say? @a", 1)
            ),
            vec!["b"],
            "never itself"
        );
        assert!(
            ids(&o, &message(AuthorKind::Agent, "a", "@b go on", 2)).is_empty(),
            "hop limit"
        );
        // Three calls decided (none answered yet) spend the budget.
        for _ in 0..3 {
            o.conversations.record_decision("c", Uuid::now_v7(), "a");
        }
        assert!(
            ids(&o, &message(AuthorKind::Human, "0xu", "@a again", 0)).is_empty(),
            "budget spent"
        );
    }

    #[test]
    fn replaying_a_message_does_not_spend_budget_twice() {
        let o = setup(2, 3);
        let id = Uuid::now_v7();
        let m = message(AuthorKind::Agent, "a", "hi", 1);
        assert_eq!(o.conversations.apply_message(id, (0, 5), &m), Seen::New);
        assert_eq!(
            o.conversations.apply_message(id, (0, 5), &m),
            Seen::Again,
            "same record read again"
        );
        assert_eq!(
            o.conversations.apply_message(id, (1, 9), &m),
            Seen::Duplicate,
            "another record, same id"
        );
        assert_eq!(o.conversations.get("c").recent.len(), 1);
        // Deciding the same message again (a replayed batch) spends nothing more.
        o.conversations.record_decision("c", id, "b");
        let conversation = o.conversations.get("c");
        let again = o.responders(
            id,
            &message(AuthorKind::Human, "0xu", "@b", 0),
            &conversation,
        );
        assert_eq!(again.len(), 1);
        assert_eq!(conversation.spent_except(id), 0);
    }

    #[test]
    fn people_who_are_not_members_are_not_answered_and_takeovers_do_not_move_an_agent() {
        let o = setup(3, 10);
        assert!(ids(&o, &message(AuthorKind::Human, "0xstranger", "@a hi", 0)).is_empty());
        assert_eq!(
            ids(&o, &message(AuthorKind::Human, "0xU", "@a hi", 0)),
            vec!["a"]
        );
        o.agents.upsert(AgentRegistered {
            agent_id: "a".into(),
            owner: "0xthief".into(),
            name: "a".into(),
            system_prompt: "stolen".into(),
            model: "m".into(),
            price_per_call_micros: 1,
        });
        assert_eq!(o.agents.get("a").unwrap().owner, "0xa");
    }

    #[test]
    fn mention_parsing() {
        assert_eq!(mentions_in("@a, @b-2: hi @ (@c)"), vec!["a", "b-2", "c"]);
    }
}
