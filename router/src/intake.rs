//! The intake router: validate, then route by type, exactly once.
//!
//! Outside producers (batch importers, partner systems) write event envelopes to
//! `chorus.intake` with any key: CloudEvents in structured mode, or envelope 1 during the
//! transition. The router decodes each record strictly by the type its JSON names,
//! checks type, version, schema and key, and writes the event re-encoded (canonical
//! CloudEvents bytes: the same id, key and time) to the type's topic, keyed by the entity
//! that orders it. Only the kinds outsiders may submit are forwarded ([`admission`]);
//! everything else is dead-lettered with the reason.

use std::sync::Arc;

use crate::ownership::Ownership;
use chorus_runtime::kafka::{
    InputRecord, OutputRecord, ProcessError, Transform, cloudevents_headers,
};
use chorus_schemas::{
    AnyEvent, AuthorKind, BINARY_MODE_HEADER_PREFIX, CLOUDEVENTS_JSON, EventKind,
    HEADER_CONTENT_TYPE, LEGACY_HEADER_TYPE, LEGACY_HEADER_VERSION, Topic,
};

/// Whether an outsider may submit `event` through intake: the allow-list, keyed on the
/// event's kind (not its type string). The match is exhaustive on purpose: a new kind
/// does not compile until someone decides here who may write it.
pub fn admission(event: &AnyEvent) -> Result<(), &'static str> {
    match event.kind() {
        EventKind::ChatMessage => match event {
            AnyEvent::ChatMessage(message) if message.data.author_kind == AuthorKind::Agent => Err(
                "agent replies are written by the orchestrator from inference results; intake takes messages by people only",
            ),
            _ => Ok(()),
        },
        EventKind::ConversationUpdated
        | EventKind::Feedback
        | EventKind::AgentRegistered
        | EventKind::ProviderRegistered
        | EventKind::ProviderHeartbeat => Ok(()),
        EventKind::SessionGranted | EventKind::SessionRevoked => Err(
            "session grants and revocations are written by the ingest API to chorus.sessions, with the wallet's signature",
        ),
        EventKind::AgentCall | EventKind::InferenceJob => {
            Err("agent calls and inference jobs are decided by the orchestrator")
        }
        EventKind::InferenceResult => Err("inference results are written by the inference workers"),
        EventKind::ChainLog | EventKind::ChainLogRetracted => {
            Err("chain events are written by the indexer from the chain itself")
        }
        EventKind::PoiScore | EventKind::PoiCheckpoint => {
            Err("PoI scores and checkpoints are written by the scorer")
        }
        EventKind::DeadLetter => Err("dead letters are written by Chorus's own stages"),
    }
}

/// The routing transform.
#[derive(Debug, Clone)]
pub struct IntakeRouter {
    topic_prefix: String,
    ownership: Arc<Ownership>,
}

/// Kinds whose acceptance depends on what was decided before (who owns an id, who may
/// change a conversation): they come only from the ingest API, which checked their
/// owners' signatures, through its own topic ([`Topic::ApiIntake`]), keyed by what they
/// change, so that one router instance decides each key in order.
pub fn decided_in_order(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::AgentRegistered | EventKind::ProviderRegistered | EventKind::ConversationUpdated
    )
}

impl IntakeRouter {
    pub fn new(topic_prefix: &str) -> Self {
        Self::with_ownership(topic_prefix, Arc::new(Ownership::default()))
    }

    /// A router deciding ownership with `ownership` (rebuilt from the log by [`crate::run`]).
    pub fn with_ownership(topic_prefix: &str, ownership: Arc<Ownership>) -> Self {
        IntakeRouter {
            topic_prefix: topic_prefix.to_owned(),
            ownership,
        }
    }

    /// Validates one record and says where it goes (without deciding ownership).
    pub fn route(
        &self,
        type_header: Option<&str>,
        version_header: Option<&str>,
        payload: Option<&[u8]>,
    ) -> Result<OutputRecord, String> {
        self.route_event(type_header, version_header, payload)
            .map(|(output, _)| output)
    }

    /// Validates, then decides ownership: a registration of an id someone else owns, a
    /// second creation of a conversation or a membership change by anyone but its owner
    /// is refused with the reason.
    pub fn route_and_decide(
        &self,
        position: (&str, i32, i64),
        record_key: Option<&[u8]>,
        type_header: Option<&str>,
        version_header: Option<&str>,
        payload: Option<&[u8]>,
    ) -> Result<OutputRecord, String> {
        let (output, event) = self.route_event(type_header, version_header, payload)?;
        if decided_in_order(event.kind()) {
            if Topic::from_name(&self.topic_prefix, position.0) != Some(Topic::ApiIntake) {
                return Err(format!(
                    "{} events are accepted only from the ingest API (signed by their owners, through {}), not from {}",
                    event.type_name(),
                    Topic::ApiIntake.name(&self.topic_prefix),
                    position.0
                ));
            }
            if record_key != Some(event.key().as_bytes()) {
                return Err(format!(
                    "{} records must be keyed on intake by their event key {:?}, so that one router decides each in order",
                    event.type_name(),
                    event.key()
                ));
            }
            self.ownership.decide_at(position, &event)?;
        }
        Ok(output)
    }

    fn route_event(
        &self,
        type_header: Option<&str>,
        version_header: Option<&str>,
        payload: Option<&[u8]>,
    ) -> Result<(OutputRecord, AnyEvent), String> {
        let payload = payload
            .filter(|p| !p.is_empty())
            .ok_or("record has no value")?;
        let event = AnyEvent::decode(type_header, payload).map_err(|e| e.to_string())?;
        if let Some(version) = version_header {
            let declared: u16 = version.parse().map_err(|_| {
                format!("header {LEGACY_HEADER_VERSION} is not a number: {version:?}")
            })?;
            if declared != event.version() {
                return Err(format!(
                    "header {LEGACY_HEADER_VERSION}={declared} but the envelope says {}",
                    event.version()
                ));
            }
        }
        admission(&event).map_err(|why| {
            format!(
                "events of type {} cannot be submitted through intake: {why}",
                event.type_name()
            )
        })?;
        let topic = event.topic();
        // Always re-encoded, whichever form came in: the typed topics then hold only
        // canonical CloudEvents that match the published (closed) schemas, even when the
        // input had fields in `data` the types do not name, a relaxed time or id spelling,
        // or an explicit null the decoder reads as absent.
        let payload = event
            .to_json()
            .map_err(|e| format!("re-encoding the event: {e}"))?;
        let output = OutputRecord {
            topic: topic.name(&self.topic_prefix),
            key: Some(event.key().as_bytes().to_vec()),
            payload,
            headers: Some(cloudevents_headers()),
        };
        Ok((output, event))
    }
}

impl Transform for IntakeRouter {
    async fn process(&self, record: &InputRecord<'_>) -> Result<Vec<OutputRecord>, ProcessError> {
        check_mode(record).map_err(ProcessError::Reject)?;
        self.route_and_decide(
            (record.topic, record.partition, record.offset),
            record.key,
            record.header(LEGACY_HEADER_TYPE),
            record.header(LEGACY_HEADER_VERSION),
            record.payload,
        )
        .map(|output| vec![output])
        .map_err(ProcessError::Reject)
    }
}

/// One mode only: a CloudEvent in structured mode (`content-type:
/// application/cloudevents+json`, or no content type), never binary mode (`ce_*`
/// headers), so that no header can say something the value does not.
fn check_mode(record: &InputRecord<'_>) -> Result<(), String> {
    if let Some(name) = record
        .header_names()
        .find(|name| name.starts_with(BINARY_MODE_HEADER_PREFIX))
    {
        return Err(format!(
            "header {name:?}: binary-mode CloudEvents are not accepted; send the whole event as the value (structured mode, content-type {CLOUDEVENTS_JSON})"
        ));
    }
    if !record
        .header_names()
        .any(|name| name.eq_ignore_ascii_case(HEADER_CONTENT_TYPE))
    {
        return Ok(());
    }
    match record.header(HEADER_CONTENT_TYPE) {
        Some(content_type) if is_structured_content_type(content_type) => Ok(()),
        other => Err(format!(
            "content-type {other:?}: intake accepts {CLOUDEVENTS_JSON} (structured mode) only"
        )),
    }
}

/// `application/cloudevents+json`, in any case, with or without parameters (the
/// CloudEvents SDKs add `; charset=utf-8`; another charset is refused).
fn is_structured_content_type(value: &str) -> bool {
    let mut parts = value.split(';').map(str::trim);
    let media_type = parts.next().unwrap_or_default();
    media_type.eq_ignore_ascii_case(CLOUDEVENTS_JSON)
        && parts.all(|parameter| {
            let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
            !name.trim().eq_ignore_ascii_case("charset")
                || value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_schemas::samples;

    #[test]
    fn routes_every_submittable_kind_and_refuses_the_rest() {
        let router = IntakeRouter::new("p.");
        let mut forwarded = Vec::new();
        for event in samples::all() {
            let bytes = event.to_json().unwrap();
            let result = router.route(None, None, Some(&bytes));
            if admission(&event).is_err() {
                let err = result.unwrap_err();
                assert!(err.contains("cannot be submitted through intake"), "{err}");
                continue;
            }
            forwarded.push(event.kind());
            let output = result.unwrap();
            assert_eq!(output.topic, event.topic().name("p."));
            assert_eq!(output.key.as_deref(), Some(event.key().as_bytes()));
            assert_eq!(
                output.payload, bytes,
                "a canonical event re-encodes to its own bytes"
            );
        }
        for kind in [
            EventKind::ConversationUpdated,
            EventKind::Feedback,
            EventKind::AgentRegistered,
        ] {
            assert!(forwarded.contains(&kind), "{kind:?} is submittable");
        }
    }

    #[test]
    fn registrations_and_membership_come_only_through_the_apis_topic() {
        let router = IntakeRouter::new("p.");
        for (n, event) in samples::all()
            .into_iter()
            .filter(|e| decided_in_order(e.kind()))
            .enumerate()
        {
            let offset = 10 * n as i64;
            let bytes = event.to_json().unwrap();
            let key = Some(event.key().as_bytes());
            let header = None;
            let refused = router
                .route_and_decide(("p.chorus.intake", 0, 1), key, header, None, Some(&bytes))
                .unwrap_err();
            assert!(refused.contains("only from the ingest API"), "{refused}");
            // Through the API's topic it is decided on its merits (the sample membership
            // change names a conversation nobody created).
            let decided = router.route_and_decide(
                ("p.chorus.intake.api", 0, offset),
                key,
                header,
                None,
                Some(&bytes),
            );
            match (&event, decided) {
                (AnyEvent::ConversationUpdated(_), Err(why)) => {
                    assert!(why.contains("does not exist"), "{why}")
                }
                (_, decided) => assert!(decided.is_ok(), "{decided:?}"),
            }
            let rekeyed = router
                .route_and_decide(
                    ("p.chorus.intake.api", 0, offset + 1),
                    Some(b"x"),
                    header,
                    None,
                    Some(&bytes),
                )
                .unwrap_err();
            assert!(rekeyed.contains("must be keyed"), "{rekeyed}");
        }
    }

    #[test]
    fn only_chorus_writes_results_chain_events_scores_and_checkpoints() {
        for event in samples::all() {
            let refused = matches!(
                event.kind(),
                EventKind::AgentCall
                    | EventKind::InferenceJob
                    | EventKind::InferenceResult
                    | EventKind::ChainLog
                    | EventKind::ChainLogRetracted
                    | EventKind::PoiScore
                    | EventKind::PoiCheckpoint
                    | EventKind::DeadLetter
                    | EventKind::SessionGranted
                    | EventKind::SessionRevoked
            ) || matches!(&event, AnyEvent::ChatMessage(m) if m.data.author_kind == AuthorKind::Agent);
            assert_eq!(admission(&event).is_err(), refused, "{:?}", event.kind());
        }
    }

    #[test]
    fn structured_content_types() {
        for ok in [
            "application/cloudevents+json",
            "Application/CloudEvents+JSON",
            "application/cloudevents+json; charset=utf-8",
            "application/cloudevents+json;charset=\"UTF-8\"",
        ] {
            assert!(is_structured_content_type(ok), "{ok}");
        }
        for bad in [
            "application/json",
            "application/cloudevents-batch+json",
            "application/cloudevents+json; charset=latin1",
        ] {
            assert!(!is_structured_content_type(bad), "{bad}");
        }
    }

    #[test]
    fn unknown_data_fields_are_dropped_and_the_event_re_encoded() {
        let router = IntakeRouter::new("");
        let event = samples::all()
            .into_iter()
            .find(|e| admission(e).is_ok())
            .unwrap();
        let canonical = event.to_json().unwrap();
        let text = String::from_utf8(canonical.clone()).unwrap();
        let padded = text.replacen("\"data\":{", "\"data\":{\"smuggled\":1,", 1);
        assert_ne!(padded, text);
        let output = router.route(None, None, Some(padded.as_bytes())).unwrap();
        assert_eq!(
            output.payload, canonical,
            "the typed topic gets canonical bytes"
        );
    }

    #[test]
    fn rejects_with_a_reason() {
        let router = IntakeRouter::new("");
        type Case<'a> = (Option<&'a str>, Option<&'a str>, &'a [u8], &'a str);
        let cases: Vec<Case> = vec![
            (None, None, b"", "no value"),
            (None, None, b"not json", "JSON"),
            (
                Some("nope"),
                None,
                br#"{"type":"nope"}"#,
                "unknown event type",
            ),
            (Some("feedback"), None, b"{}", "missing field `type`"),
            (
                None,
                None,
                br#"{"type":"chat.message"}"#,
                "not valid JSON for ai.chorus.chat.message.v1",
            ),
            (
                None,
                None,
                br#"{"specversion":"1.0","type":"ai.chorus.chat.message.v9"}"#,
                "has version 9, this build knows up to 1",
            ),
            (
                None,
                None,
                br#"{"type":"ai.chorus.chat.message.v1"}"#,
                "specversion is missing",
            ),
        ];
        for (type_header, version, payload, expected) in cases {
            let err = router
                .route(type_header, version, Some(payload))
                .unwrap_err();
            assert!(
                err.contains(expected),
                "{err:?} should mention {expected:?}"
            );
        }
        let event = &samples::all()[0];
        let bytes = event.to_json().unwrap();
        let err = router
            .route(Some("feedback"), None, Some(&bytes))
            .unwrap_err();
        assert!(err.contains("header says"), "{err}");
        let err = router.route(None, Some("9"), Some(&bytes)).unwrap_err();
        assert!(err.contains("envelope says 1"), "{err}");
        let text = String::from_utf8(bytes).unwrap();
        let tampered = text.replace("\"subject\":\"conv-1\"", "\"subject\":\"other\"");
        assert_ne!(tampered, text);
        let err = router
            .route(None, None, Some(tampered.as_bytes()))
            .unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        // Strict CloudEvents: no attribute the schema does not name, no other spec
        // version, the type's own dataschema, a URI-reference source.
        for (from, to, expected) in [
            (
                "\"data\":",
                "\"ce_extra\":1,\"data\":",
                "unknown field `ce_extra`",
            ),
            (
                "\"specversion\":\"1.0\"",
                "\"specversion\":\"0.3\"",
                "specversion",
            ),
            ("urn:chorus:schema:", "urn:other:", "dataschema"),
            ("\"source\":\"", "\"source\":\"a b ", "URI-reference"),
            (
                "\"datacontenttype\":\"application/json\"",
                "\"datacontenttype\":\"text/plain\"",
                "datacontenttype",
            ),
            (
                "\"specversion\":\"1.0\",",
                "\"version\":1,\"specversion\":\"1.0\",",
                "envelope-1 attributes",
            ),
        ] {
            let changed = text.replacen(from, to, 1);
            assert_ne!(changed, text, "{from}");
            let err = router
                .route(None, None, Some(changed.as_bytes()))
                .unwrap_err();
            assert!(
                err.contains(expected),
                "{err:?} should mention {expected:?}"
            );
        }
    }
}
