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

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, RwLock};

use uuid::Uuid;

use chorus_schemas::{AnyEvent, AuthorKind, ConversationAction, ConversationUpdated};

/// The latest change applied to something: its time (the event id's, which the ingest
/// API derives from the signed timestamp) and its event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Latest {
    unix_ms: u64,
    id: Uuid,
}

impl Latest {
    fn of(id: Uuid) -> Self {
        let unix_ms = id
            .get_timestamp()
            .map(|t| {
                let (seconds, nanos) = t.to_unix();
                seconds.saturating_mul(1000) + u64::from(nanos / 1_000_000)
            })
            .unwrap_or(0);
        Latest { unix_ms, id }
    }

    /// Whether a change `next` may follow this one: the same event again (a batch decided
    /// again) changes nothing and is accepted; an earlier change is a replay of something
    /// older and is refused. (Changes signed in the same second are taken in log order.)
    fn admits(&self, next: &Latest) -> Result<bool, Refusal> {
        if next.id == self.id {
            Ok(false)
        } else if next.unix_ms < self.unix_ms {
            Err(format!(
                "event {} is older than the last change applied ({}): a replay of an earlier change",
                next.id, self.id
            ))
        } else {
            Ok(true)
        }
    }
}

#[derive(Debug, Clone)]
struct Registration {
    owner: String,
    latest: Latest,
}

#[derive(Debug, Clone)]
struct Conversation {
    owner: String,
    /// The event that created it (a replay of that very event is not a second creation).
    created_by: Uuid,
    members: BTreeSet<(AuthorKind, String)>,
    /// The latest change of each member (adding or removing), so that a replayed older
    /// change cannot undo a newer one.
    changes: HashMap<(AuthorKind, String), Latest>,
}

/// Decisions remembered by input position, so that a batch replayed after an aborted
/// transaction is decided exactly as before (the state already holds its effects).
const REMEMBERED_DECISIONS: usize = 100_000;

/// Where a record was read: topic, partition, offset.
type Position = (String, i32, i64);

/// Decisions by position, and their order (the oldest are forgotten first).
type Decisions = (HashMap<Position, Result<(), Refusal>>, VecDeque<Position>);

/// The owners of registry ids and conversations.
#[derive(Debug, Default)]
pub struct Ownership {
    registry: RwLock<HashMap<String, Registration>>,
    conversations: RwLock<HashMap<String, Conversation>>,
    decided: Mutex<Decisions>,
}

/// Why a change was refused (the reason its dead letter carries).
pub type Refusal = String;

impl Ownership {
    /// Decides the record at `position` (topic, partition, offset): the same answer as the
    /// first time when that record is decided again.
    pub fn decide_at(&self, position: (&str, i32, i64), event: &AnyEvent) -> Result<(), Refusal> {
        let key = (position.0.to_owned(), position.1, position.2);
        let mut decided = self.decided.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(answer) = decided.0.get(&key) {
            return answer.clone();
        }
        let answer = self.decide(event);
        decided.0.insert(key.clone(), answer.clone());
        decided.1.push_back(key);
        if decided.1.len() > REMEMBERED_DECISIONS
            && let Some(old) = decided.1.pop_front()
        {
            decided.0.remove(&old);
        }
        answer
    }

    /// Decides `event` (already admitted) and, when accepted, applies it. Events that
    /// change no ownership are accepted as they are.
    pub fn decide(&self, event: &AnyEvent) -> Result<(), Refusal> {
        match event {
            AnyEvent::AgentRegistered(e) => self.register(
                &event_key(event),
                "agent id",
                &e.data.agent_id,
                &e.data.owner,
                Latest::of(e.id),
            ),
            AnyEvent::ProviderRegistered(e) => self.register(
                &event_key(event),
                "provider id",
                &e.data.provider_id,
                &e.data.owner,
                Latest::of(e.id),
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

    fn register(
        &self,
        key: &str,
        what: &str,
        id: &str,
        owner: &str,
        change: Latest,
    ) -> Result<(), Refusal> {
        let mut registry = self.registry.write().unwrap_or_else(|p| p.into_inner());
        match registry.get_mut(key) {
            Some(first) if !first.owner.eq_ignore_ascii_case(owner) => Err(format!(
                "{what} {id:?} is registered to {}; only its owner can update it (registered ids are first come, first served)",
                first.owner
            )),
            Some(existing) => {
                if existing.latest.admits(&change)? {
                    existing.latest = change;
                }
                Ok(())
            }
            None => {
                registry.insert(
                    key.to_owned(),
                    Registration {
                        owner: owner.to_lowercase(),
                        latest: change,
                    },
                );
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
            .map(|r| r.owner.clone())
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
                let changes = members
                    .iter()
                    .map(|m| (m.clone(), Latest::of(id)))
                    .collect();
                all.insert(
                    name.clone(),
                    Conversation {
                        owner: actor,
                        created_by: id,
                        members,
                        changes,
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
                let change = Latest::of(id);
                if let Some(latest) = existing.changes.get(&member)
                    && !latest.admits(&change)?
                {
                    return Ok(()); // this very change again
                }
                if action == ConversationAction::MemberRemoved {
                    if member == (AuthorKind::Human, existing.owner.clone()) {
                        return Err(format!(
                            "the owner of conversation {name:?} cannot leave it"
                        ));
                    }
                    existing.members.remove(&member);
                } else {
                    existing.members.insert(member.clone());
                }
                existing.changes.insert(member, change);
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

    fn at(mut event: AnyEvent, unix_ms: u64) -> AnyEvent {
        let id = uuid::Builder::from_unix_timestamp_millis(unix_ms, &[7; 10]).into_uuid();
        match &mut event {
            AnyEvent::AgentRegistered(e) => e.id = id,
            AnyEvent::ConversationUpdated(e) => e.id = id,
            _ => unreachable!(),
        }
        event
    }

    #[test]
    fn a_replayed_older_change_does_not_undo_a_newer_one() {
        let ownership = Ownership::default();
        let first = at(agent("0xaa"), 1_000);
        let update = at(agent("0xaa"), 2_000);
        ownership.decide(&first).unwrap();
        ownership.decide(&update).unwrap();
        ownership.decide(&update).unwrap(); // the same update again changes nothing
        assert!(ownership.decide(&first).unwrap_err().contains("older"));

        let created = at(
            change(ConversationAction::Created, "0xaa", Some("0xaa")),
            1_000,
        );
        let add = at(
            change(ConversationAction::MemberAdded, "0xaa", Some("0xcc")),
            2_000,
        );
        let remove = at(
            change(ConversationAction::MemberRemoved, "0xaa", Some("0xcc")),
            3_000,
        );
        for event in [&created, &add, &remove] {
            ownership.decide(event).unwrap();
        }
        assert!(ownership.decide(&add).unwrap_err().contains("older"));
        assert_eq!(
            ownership.is_member("c", AuthorKind::Human, "0xcc"),
            Some(false)
        );
        // A batch decided again after an abort gets the answers it got the first time.
        let again = Ownership::default();
        let position = ("intake", 0, 5);
        again.decide_at(position, &created).unwrap();
        again.decide_at(("intake", 0, 6), &add).unwrap();
        again.decide_at(("intake", 0, 7), &remove).unwrap();
        again.decide_at(("intake", 0, 6), &add).unwrap();
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
