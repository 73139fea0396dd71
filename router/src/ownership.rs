//! Who owns what, decided in one place. The router is the only writer of the registry
//! and of conversation membership: registrations and conversation changes reach it
//! through intake, keyed by what they change, so one router instance decides each key in
//! log order, exactly once (the decision and the intake offset commit together).
//!
//! - An agent or provider id belongs to its first registration's owner; only that owner
//!   updates it.
//! - A conversation belongs to the account that created it first; only that owner adds
//!   or removes members, and the owner does not leave.
//!
//! The state is rebuilt on start from what was decided before (the registry and the
//! chat log, read committed) and kept current from both, so that a partition moving to
//! another instance is decided with the same state.

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

use uuid::Uuid;

use chorus_schemas::{AnyEvent, AuthorKind, ConversationAction, ConversationUpdated};

#[derive(Debug, Clone)]
struct Conversation {
    owner: String,
    /// The event that created it (a replay of that very event is not a second creation).
    created_by: Uuid,
    members: BTreeSet<(AuthorKind, String)>,
}

/// The owners of registry ids and conversations.
#[derive(Debug, Default)]
pub struct Ownership {
    registry: RwLock<HashMap<String, String>>,
    conversations: RwLock<HashMap<String, Conversation>>,
}

/// Why a change was refused (the reason its dead letter carries).
pub type Refusal = String;

impl Ownership {
    /// Decides `event` (already admitted) and, when accepted, applies it. Events that
    /// change no ownership are accepted as they are.
    pub fn decide(&self, event: &AnyEvent) -> Result<(), Refusal> {
        match event {
            AnyEvent::AgentRegistered(e) => self.register(
                &event_key(event),
                "agent id",
                &e.data.agent_id,
                &e.data.owner,
            ),
            AnyEvent::ProviderRegistered(e) => self.register(
                &event_key(event),
                "provider id",
                &e.data.provider_id,
                &e.data.owner,
            ),
            AnyEvent::ConversationUpdated(e) => self.change_conversation(e.id, &e.data),
            _ => Ok(()),
        }
    }

    /// Applies a record that was decided before (the rebuild and the live follower):
    /// the same rules, so a conflicting record already in the log (written before these
    /// rules) is ignored the way every other reader ignores it.
    pub fn apply_decided(&self, payload: &[u8]) {
        if let Ok(event) = AnyEvent::decode(None, payload)
            && let Err(why) = self.decide(&event)
        {
            tracing::debug!(event = %event.id(), %why, "ignoring a superseded record");
        }
    }

    fn register(&self, key: &str, what: &str, id: &str, owner: &str) -> Result<(), Refusal> {
        let mut registry = self.registry.write().unwrap_or_else(|p| p.into_inner());
        match registry.get(key) {
            Some(first) if !first.eq_ignore_ascii_case(owner) => Err(format!(
                "{what} {id:?} is registered to {first}; only its owner can update it (registered ids are first come, first served)"
            )),
            Some(_) => Ok(()),
            None => {
                registry.insert(key.to_owned(), owner.to_lowercase());
                Ok(())
            }
        }
    }

    /// The owner of a registry key (`agent:<id>`, `provider:<id>`), if registered.
    pub fn owner_of(&self, key: &str) -> Option<String> {
        self.registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    fn change_conversation(&self, id: Uuid, update: &ConversationUpdated) -> Result<(), Refusal> {
        let mut all = self
            .conversations
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let name = &update.conversation_id;
        let actor = update.actor.to_lowercase();
        let member = match (update.member_kind, &update.member_id) {
            (Some(kind), Some(member)) => Some((kind, normalise(kind, member))),
            _ => None,
        };
        match (update.action, all.get_mut(name)) {
            (ConversationAction::Created, Some(existing)) => {
                if existing.created_by == id {
                    Ok(())
                } else {
                    Err(format!(
                        "conversation {name:?} exists (owner {}); pick another id",
                        existing.owner
                    ))
                }
            }
            (ConversationAction::Created, None) => {
                let mut members = BTreeSet::from([(AuthorKind::Human, actor.clone())]);
                members.extend(member);
                all.insert(
                    name.clone(),
                    Conversation {
                        owner: actor,
                        created_by: id,
                        members,
                    },
                );
                Ok(())
            }
            (_, None) => Err(format!("conversation {name:?} does not exist")),
            (action, Some(existing)) => {
                if existing.owner != actor {
                    return Err(format!(
                        "only the owner of conversation {name:?} ({}) changes its members, not {actor}",
                        existing.owner
                    ));
                }
                let member = member
                    .ok_or_else(|| format!("a membership change of {name:?} names no member"))?;
                if action == ConversationAction::MemberRemoved {
                    if member == (AuthorKind::Human, existing.owner.clone()) {
                        return Err(format!(
                            "the owner of conversation {name:?} cannot leave it"
                        ));
                    }
                    existing.members.remove(&member);
                } else {
                    existing.members.insert(member);
                }
                Ok(())
            }
        }
    }

    /// Whether a member belongs to a conversation (`None`: no such conversation).
    pub fn is_member(&self, conversation_id: &str, kind: AuthorKind, id: &str) -> Option<bool> {
        self.conversations
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(conversation_id)
            .map(|c| c.members.contains(&(kind, normalise(kind, id))))
    }

    /// The owner of a conversation, if it exists.
    pub fn conversation_owner(&self, conversation_id: &str) -> Option<String> {
        self.conversations
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(conversation_id)
            .map(|c| c.owner.clone())
    }
}

fn event_key(event: &AnyEvent) -> String {
    event.key().to_owned()
}

/// Accounts compare in lower case; agent ids as they are.
fn normalise(kind: AuthorKind, id: &str) -> String {
    match kind {
        AuthorKind::Human => id.to_lowercase(),
        AuthorKind::Agent => id.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_schemas::{AgentRegistered, Envelope};

    fn agent(owner: &str) -> AnyEvent {
        AnyEvent::AgentRegistered(Envelope::new(
            "t",
            AgentRegistered {
                agent_id: "helper".into(),
                owner: owner.into(),
                name: "Helper".into(),
                system_prompt: "p".into(),
                model: "m".into(),
                price_per_call_micros: 1,
            },
        ))
    }

    fn change(action: ConversationAction, actor: &str, member: Option<&str>) -> AnyEvent {
        AnyEvent::ConversationUpdated(Envelope::new(
            "t",
            ConversationUpdated {
                conversation_id: "c".into(),
                action,
                actor: actor.into(),
                member_kind: member.map(|_| AuthorKind::Human),
                member_id: member.map(str::to_owned),
                title: None,
            },
        ))
    }

    #[test]
    fn the_first_registration_owns_the_id_and_only_its_owner_updates_it() {
        let ownership = Ownership::default();
        ownership.decide(&agent("0xAA")).unwrap();
        ownership.decide(&agent("0xaa")).unwrap();
        let refused = ownership.decide(&agent("0xbb")).unwrap_err();
        assert!(refused.contains("registered to 0xaa"), "{refused}");
        assert_eq!(ownership.owner_of("agent:helper").as_deref(), Some("0xaa"));
    }

    #[test]
    fn a_conversation_has_one_owner_who_alone_changes_its_members() {
        let ownership = Ownership::default();
        let created = change(ConversationAction::Created, "0xaa", Some("0xaa"));
        ownership.decide(&created).unwrap();
        ownership.decide(&created).unwrap(); // the same event again (a replayed batch)
        let retaken = change(ConversationAction::Created, "0xbb", Some("0xbb"));
        assert!(ownership.decide(&retaken).unwrap_err().contains("exists"));
        let intruder = change(ConversationAction::MemberAdded, "0xbb", Some("0xbb"));
        assert!(
            ownership
                .decide(&intruder)
                .unwrap_err()
                .contains("only the owner")
        );
        ownership
            .decide(&change(
                ConversationAction::MemberAdded,
                "0xaa",
                Some("0xcc"),
            ))
            .unwrap();
        let leave = change(ConversationAction::MemberRemoved, "0xaa", Some("0xaa"));
        assert!(
            ownership
                .decide(&leave)
                .unwrap_err()
                .contains("cannot leave")
        );
        let unknown = AnyEvent::ConversationUpdated(Envelope::new(
            "t",
            ConversationUpdated {
                conversation_id: "nowhere".into(),
                action: ConversationAction::MemberAdded,
                actor: "0xaa".into(),
                member_kind: Some(AuthorKind::Agent),
                member_id: Some("helper".into()),
                title: None,
            },
        ));
        assert!(
            ownership
                .decide(&unknown)
                .unwrap_err()
                .contains("does not exist")
        );
        assert_eq!(ownership.conversation_owner("c").as_deref(), Some("0xaa"));
    }
}
