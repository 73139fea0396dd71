//! The generated OpenAPI document against the real router: every documented route answers
//! (with the precise refusal of a request without an API key), nothing else is routed, and
//! the documented request bodies are the handlers' request types.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use tower::ServiceExt;

use chorus_runtime::Shutdown;
use chorus_runtime::kafka::{EventProducer, KafkaArgs};

use super::{ApiSettings, ApiState, openapi_document, router};
use crate::auth::ApiKeys;
use crate::limits::RateLimit;

fn app() -> axum::Router {
    // No broker is contacted: every request below is refused before anything is produced.
    let kafka = KafkaArgs {
        brokers: "127.0.0.1:1".into(),
        topic_prefix: "openapi-test.".into(),
        ..KafkaArgs::default()
    };
    let producer = EventProducer::new(&kafka, "openapi-test", 10).unwrap();
    let rate = RateLimit {
        per_second: 0.0,
        burst: 0.0,
    };
    let settings = ApiSettings {
        max_body_bytes: 1024,
        max_message_chars: 100,
        signature_window_seconds: 300,
        domain: crate::auth::Domain {
            chain_id: 56,
            verifying_contract: alloy::primitives::Address::ZERO,
        },
        accept_eip191: false,
        membership_wait: Duration::from_millis(10),
        max_session_seconds: 86_400,
        produce_timeout: Duration::from_millis(100),
        source: "test".into(),
        key_rate: rate,
        account_rate: rate,
    };
    let keys = ApiKeys::parse_env("reader:s3cret:events:read").unwrap();
    router(Arc::new(ApiState::new(
        settings,
        keys,
        producer,
        kafka,
        Shutdown::new(),
        Arc::new(crate::directory::Directory::new(crate::auth::Domain {
            chain_id: 56,
            verifying_contract: alloy::primitives::Address::ZERO,
        })),
    )))
}

async fn status(app: &axum::Router, method: Method, path: &str) -> StatusCode {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    app.clone().oneshot(request).await.unwrap().status()
}

/// (method, path) of every operation in the document.
fn documented() -> Vec<(Method, String)> {
    let document = openapi_document();
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            operations.push((method, path.clone()));
        }
    }
    operations.sort_by(|a, b| (a.1.as_str(), a.0.as_str()).cmp(&(b.1.as_str(), b.0.as_str())));
    operations
}

#[tokio::test]
async fn the_document_lists_the_public_surface() {
    let listed: Vec<String> = documented()
        .iter()
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert_eq!(
        listed,
        [
            "GET /openapi.json",
            "GET /ping",
            "POST /v1/agents",
            "POST /v1/conversations",
            "GET /v1/conversations/{id}/events",
            "POST /v1/conversations/{id}/members",
            "POST /v1/conversations/{id}/messages",
            "POST /v1/feedback",
            "POST /v1/providers",
            "POST /v1/sessions",
            "POST /v1/sessions/revoke",
        ]
    );
    let document = openapi_document();
    assert_eq!(document["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    assert_eq!(
        document["components"]["securitySchemes"]["apiKey"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn every_documented_route_is_served_and_nothing_else() {
    let app = app();
    for (method, path) in documented() {
        let concrete = path.replace("{id}", "group-1");
        let got = status(&app, method.clone(), &concrete).await;
        let want = if path.starts_with("/v1/") {
            StatusCode::UNAUTHORIZED // served, and refused without an API key
        } else {
            StatusCode::OK
        };
        assert_eq!(got, want, "{method} {path}");
    }
    // A documented path with an undocumented method, and an undocumented path.
    assert_eq!(
        status(&app, Method::GET, "/v1/feedback").await,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        status(&app, Method::POST, "/v1/conversations/group-1/events").await,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        status(&app, Method::POST, "/v1/messages").await,
        StatusCode::NOT_FOUND
    );
}

#[test]
fn request_bodies_are_the_handlers_request_types() {
    let document = openapi_document();
    let body_schema = |path: &str| {
        document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
            ["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{path} has no request body schema"))
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned()
    };
    let expected = [
        (
            "/v1/conversations",
            "CreateConversation",
            &["conversation_id", "title", "actor", "timestamp"][..],
        ),
        (
            "/v1/conversations/{id}/messages",
            "PostMessage",
            &["author", "content", "timestamp"],
        ),
        (
            "/v1/feedback",
            "PostFeedback",
            &[
                "conversation_id",
                "message_id",
                "account",
                "rating",
                "timestamp",
            ],
        ),
        (
            "/v1/agents",
            "RegisterAgent",
            &[
                "agent_id",
                "owner",
                "name",
                "system_prompt",
                "model",
                "price_per_call_micros",
                "timestamp",
            ],
        ),
        (
            "/v1/conversations/{id}/members",
            "ChangeMembers",
            &["actor", "change", "member", "timestamp"],
        ),
        (
            "/v1/sessions",
            "GrantSession",
            &[
                "wallet",
                "session_key",
                "scopes",
                "expires_at",
                "timestamp",
                "signature",
            ],
        ),
        (
            "/v1/sessions/revoke",
            "RevokeSession",
            &["wallet", "session_key", "timestamp", "signature"],
        ),
        (
            "/v1/providers",
            "RegisterProvider",
            &[
                "provider_id",
                "owner",
                "endpoint",
                "models",
                "price_per_1k_tokens_micros",
                "timestamp",
            ],
        ),
    ];
    for (path, schema, required) in expected {
        assert_eq!(body_schema(path), schema, "{path}");
        let listed: Vec<&str> = document["components"]["schemas"][schema]["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        for field in required {
            assert!(
                listed.contains(field),
                "{schema} does not require {field}: {listed:?}"
            );
        }
        let header_documented = document["paths"][path]["post"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header");
        assert!(
            header_documented,
            "{path} does not document Idempotency-Key"
        );
        let responses = document["paths"][path]["post"]["responses"]
            .as_object()
            .unwrap();
        for code in ["202", "400", "401", "403", "413", "422", "429", "503"] {
            assert!(
                responses.contains_key(code),
                "{path} does not document {code}"
            );
        }
    }
}
