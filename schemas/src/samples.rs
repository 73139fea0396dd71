//! One fully populated example of every event type (every optional field set), for
//! tests, fuzz seeds and documentation.

use chrono::{TimeZone, Utc};
use uuid::Uuid;

use crate::*;

fn uuid(n: u128) -> Uuid {
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | n)
}

/// Every event type, each with all fields populated.
pub fn all() -> Vec<AnyEvent> {
    let time = Utc
        .with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
        .single()
        .unwrap_or_default();
    let conversation = "conv-1".to_owned();
    let account = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8".to_owned();
    let mut out = vec![
        AnyEvent::ChatMessage(Envelope::with_time(
            "samples",
            time,
            ChatMessage {
                conversation_id: conversation.clone(),
                author_kind: AuthorKind::Agent,
                author_id: "agent-helper".into(),
                content: "Hello @agent-critic".into(),
                mentions: vec!["agent-critic".into()],
                reply_to: Some(uuid(1)),
                hop: 1,
                job_id: Some(uuid(2)),
            },
        )),
        AnyEvent::ConversationUpdated(Envelope::with_time(
            "samples",
            time,
            ConversationUpdated {
                conversation_id: conversation.clone(),
                action: ConversationAction::MemberAdded,
                actor: account.clone(),
                member_kind: Some(AuthorKind::Agent),
                member_id: Some("agent-helper".into()),
                title: Some("Group".into()),
            },
        )),
        AnyEvent::AgentCall(Envelope::with_time(
            "samples",
            time,
            AgentCall {
                call_id: uuid(3),
                conversation_id: conversation.clone(),
                agent_id: "agent-helper".into(),
                agent_owner: account.clone(),
                trigger_message_id: uuid(1),
                trigger_author: Some(account.clone()),
                job_id: uuid(2),
                hop: 1,
                reason: CallReason::Mention,
            },
        )),
        AnyEvent::InferenceJob(Envelope::with_time(
            "samples",
            time,
            InferenceJob {
                job_id: uuid(2),
                kind: JobKind::Chat,
                model: "SmolLM2-135M-Instruct".into(),
                messages: vec![ChatTurn {
                    role: "system".into(),
                    content: "Be brief.".into(),
                }],
                max_tokens: Some(32),
                temperature: Some(0.5),
                stream: true,
                provider_ids: vec!["provider-a".into()],
                call_id: Some(uuid(3)),
                conversation_id: Some(conversation.clone()),
                agent_id: Some("agent-helper".into()),
                deadline_ms: Some(30_000),
                reply_to: Some(uuid(1)),
                hop: 1,
            },
        )),
        AnyEvent::InferenceResult(Envelope::with_time(
            "samples",
            time,
            InferenceResult {
                job_id: uuid(2),
                status: JobStatus::Failed,
                failure_kind: Some(FailureKind::Timeout),
                error: Some("deadline exceeded".into()),
                provider_id: Some("provider-a".into()),
                model: "SmolLM2-135M-Instruct".into(),
                content: Some("partial".into()),
                embedding_dims: Some(384),
                prompt_tokens: 12,
                completion_tokens: 3,
                latency_ms: 1500,
                ttft_ms: Some(200),
                gpu_seconds: 1.5,
                attempts: 2,
                call_id: Some(uuid(3)),
                conversation_id: Some(conversation.clone()),
                agent_id: Some("agent-helper".into()),
                reply_to: Some(uuid(1)),
                hop: 1,
            },
        )),
        AnyEvent::Feedback(Envelope::with_time(
            "samples",
            time,
            Feedback {
                conversation_id: conversation.clone(),
                message_id: uuid(4),
                account: account.clone(),
                rating: 5,
                comment: Some("great".into()),
            },
        )),
        AnyEvent::AgentRegistered(Envelope::with_time(
            "samples",
            time,
            AgentRegistered {
                agent_id: "agent-helper".into(),
                owner: account.clone(),
                name: "Helper".into(),
                system_prompt: "You help.".into(),
                model: "SmolLM2-135M-Instruct".into(),
                price_per_call_micros: 1000,
            },
        )),
        AnyEvent::ProviderRegistered(Envelope::with_time(
            "samples",
            time,
            ProviderRegistered {
                provider_id: "provider-a".into(),
                owner: account.clone(),
                endpoint: "http://127.0.0.1:8080/v1".into(),
                models: vec!["SmolLM2-135M-Instruct".into()],
                price_per_1k_tokens_micros: 20,
            },
        )),
        AnyEvent::SessionGranted(Envelope::with_time(
            "samples",
            time,
            SessionGranted {
                wallet: account.clone(),
                session_key: "0x70997970c51812dc3a010c7d01b50e0d17dc79c8".into(),
                scopes: vec!["chat.message".into(), "feedback".into()],
                granted_at: 1_790_000_000,
                expires_at: 1_790_086_400,
                signature: format!("0x{}1b", "ab".repeat(64)),
            },
        )),
        AnyEvent::SessionRevoked(Envelope::with_time(
            "samples",
            time,
            SessionRevoked {
                wallet: account.clone(),
                session_key: "0x70997970c51812dc3a010c7d01b50e0d17dc79c8".into(),
                revoked_at: 1_790_003_600,
                signature: format!("0x{}1c", "cd".repeat(64)),
            },
        )),
        AnyEvent::ProviderHeartbeat(Envelope::with_time(
            "samples",
            time,
            ProviderHeartbeat {
                provider_id: "provider-a".into(),
                healthy: true,
                in_flight: 2,
                p50_latency_ms: Some(800),
            },
        )),
        AnyEvent::ChainLog(Envelope::with_time(
            "samples",
            time,
            ChainLog {
                chain_id: 56,
                contract: "0x5fbdb2315678afecb367f032d93f642f64180aa3".into(),
                block_number: 12,
                block_hash: format!("0x{}", "ab".repeat(32)),
                block_timestamp: Some(time),
                tx_hash: format!("0x{}", "cd".repeat(32)),
                tx_index: 0,
                log_index: 3,
                topics: vec![format!("0x{}", "ef".repeat(32))],
                data: "0x".into(),
                event_name: Some("Claimed".into()),
                decoded: Some("{\"epoch\":\"1\"}".into()),
            },
        )),
        AnyEvent::ChainLogRetracted(Envelope::with_time(
            "samples",
            time,
            ChainLogRetracted {
                chain_id: 56,
                contract: "0x5fbdb2315678afecb367f032d93f642f64180aa3".into(),
                block_number: 12,
                block_hash: format!("0x{}", "ab".repeat(32)),
                tx_hash: format!("0x{}", "cd".repeat(32)),
                log_index: 3,
                retracted_event_id: uuid(5),
                reason: "reorg of depth 3".into(),
            },
        )),
        AnyEvent::PoiScore(Envelope::with_time(
            "samples",
            time,
            PoiScore {
                epoch: 7,
                account: account.clone(),
                role: ContributorRole::Provider,
                points: 1234,
                items: 10,
                amount_wei: "1000000000000000000".into(),
            },
        )),
        AnyEvent::PoiCheckpoint(Envelope::with_time(
            "samples",
            time,
            PoiCheckpoint {
                epoch: 7,
                merkle_root: format!("0x{}", "11".repeat(32)),
                manifest_hash: format!("0x{}", "22".repeat(32)),
                config_hash: format!("0x{}", "33".repeat(32)),
                total_amount_wei: "1000000000000000000".into(),
                accounts: 3,
                chain_id: 56,
                distributor: "0x5fbdb2315678afecb367f032d93f642f64180aa3".into(),
                tx_hash: Some(format!("0x{}", "44".repeat(32))),
                manifest_json: Some(r#"{"manifest_version":1,"epoch":7}"#.into()),
            },
        )),
        AnyEvent::DeadLetter(Envelope::with_time(
            "samples",
            time,
            DeadLetter {
                source_topic: "chorus.intake".into(),
                source_partition: 0,
                source_offset: 42,
                source_key_base64: Some("a2V5".into()),
                payload_base64: "bm90IGpzb24=".into(),
                reason: "not valid JSON".into(),
                stage: "router".into(),
            },
        )),
    ];
    // Deterministic ids for stable fixtures.
    for (n, event) in out.iter_mut().enumerate() {
        let id = uuid(100 + n as u128);
        match event {
            AnyEvent::ChatMessage(e) => e.id = id,
            AnyEvent::ConversationUpdated(e) => e.id = id,
            AnyEvent::AgentCall(e) => e.id = id,
            AnyEvent::InferenceJob(e) => e.id = id,
            AnyEvent::InferenceResult(e) => e.id = id,
            AnyEvent::Feedback(e) => e.id = id,
            AnyEvent::AgentRegistered(e) => e.id = id,
            AnyEvent::ProviderRegistered(e) => e.id = id,
            AnyEvent::SessionGranted(e) => e.id = id,
            AnyEvent::SessionRevoked(e) => e.id = id,
            AnyEvent::ProviderHeartbeat(e) => e.id = id,
            AnyEvent::ChainLog(e) => e.id = id,
            AnyEvent::ChainLogRetracted(e) => e.id = id,
            AnyEvent::PoiScore(e) => e.id = id,
            AnyEvent::PoiCheckpoint(e) => e.id = id,
            AnyEvent::DeadLetter(e) => e.id = id,
        }
    }
    out
}

/// The JSON of `event` in envelope 1 (before CloudEvents: `type` is Chorus's name,
/// `version` and `key` are attributes), as a producer from before the migration wrote
/// it: for the tests of the transition.
pub fn legacy_envelope_json(event: &AnyEvent) -> Result<Vec<u8>, serde_json::Error> {
    let mut value = serde_json::to_value(event)?;
    if let Some(object) = value.as_object_mut() {
        for attribute in ["specversion", "dataschema", "datacontenttype"] {
            object.remove(attribute);
        }
        if let Some(subject) = object.remove("subject") {
            object.insert("key".into(), subject);
        }
        object.insert("type".into(), event.type_name().into());
        object.insert("version".into(), event.version().into());
    }
    serde_json::to_vec(&value)
}
