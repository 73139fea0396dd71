//! A client of the Confluent-compatible schema registry API, as Apicurio Registry serves
//! it at `/apis/ccompat/v7`: what `chorus schemas publish` needs, and what consumers in
//! any language do to read a schema back.
//!
//! Subjects follow the TopicRecordNameStrategy, `<topic>-<record name>`, because several
//! event types share a topic; the record name of a Chorus event is its CloudEvents type,
//! so `chorus.chat.messages-ai.chorus.chat.message.v1`. Every subject is BACKWARD
//! compatible: a consumer reading with the new schema can read what was written with
//! the old one.

use std::time::Duration;

use chorus_schemas::{EVENT_TYPES, EventTypeInfo};
use serde::Deserialize;

/// The compatibility level every Chorus subject gets.
pub const COMPATIBILITY: &str = "BACKWARD";
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// What went wrong talking to the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry at {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "the registry refused the schema of {subject} as incompatible ({COMPATIBILITY}): {message}"
    )]
    Incompatible { subject: String, message: String },
    #[error("schema registry answered {status} to {what} {subject}: {body}")]
    Status {
        what: &'static str,
        subject: String,
        status: u16,
        body: String,
    },
    #[error("schema registry's answer to {what} {subject} is not what the API says: {source}")]
    Answer {
        what: &'static str,
        subject: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("schema of {0} is not valid JSON: {1}")]
    Schema(String, serde_json::Error),
}

/// One registered schema version.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RegisteredSchema {
    pub subject: String,
    pub version: u32,
    pub id: u64,
    /// The schema text, as registered.
    pub schema: String,
}

/// What publishing did to one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub subject: String,
    pub id: u64,
    pub version: u32,
    /// False when the registry already had this exact schema as the latest version.
    pub new_version: bool,
}

/// The TopicRecordNameStrategy subject of an event type under a topic prefix.
pub fn subject(topic_prefix: &str, info: &EventTypeInfo) -> String {
    format!(
        "{}-{}",
        info.topic.name(topic_prefix),
        info.cloudevents_type
    )
}

/// A schema to publish: its subject and its text.
#[derive(Debug, Clone)]
pub struct SchemaDocument {
    pub subject: String,
    pub schema: String,
}

/// The schema of every event type, as built into this binary, under `topic_prefix`.
pub fn builtin_documents(topic_prefix: &str) -> Result<Vec<SchemaDocument>, RegistryError> {
    EVENT_TYPES
        .iter()
        .map(|info| {
            let schema = serde_json::to_string(&(info.envelope_schema)())
                .map_err(|e| RegistryError::Schema(info.cloudevents_type.into(), e))?;
            Ok(SchemaDocument {
                subject: subject(topic_prefix, info),
                schema,
            })
        })
        .collect()
}

/// A Confluent-compatible schema registry.
#[derive(Debug, Clone)]
pub struct Registry {
    base: String,
    http: reqwest::Client,
}

impl Registry {
    /// `url` is the registry's root (`http://127.0.0.1:8082`) or its Confluent API root
    /// (`.../apis/ccompat/v7`).
    pub fn new(url: &str) -> Result<Self, RegistryError> {
        let trimmed = url.trim_end_matches('/');
        let base = if trimmed.contains("/apis/ccompat/") {
            trimmed.to_owned()
        } else {
            format!("{trimmed}/apis/ccompat/v7")
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|source| RegistryError::Http {
                url: base.clone(),
                source,
            })?;
        Ok(Registry { base, http })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<(u16, String), RegistryError> {
        let http = |source| RegistryError::Http {
            url: url.to_owned(),
            source,
        };
        let response = request.send().await.map_err(http)?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(http)?;
        Ok((status, body))
    }

    /// Sets the subject's compatibility level (allowed before the subject exists).
    pub async fn set_compatibility(&self, subject: &str, level: &str) -> Result<(), RegistryError> {
        let url = self.url(&format!("config/{subject}"));
        let body = serde_json::json!({ "compatibility": level }).to_string();
        let request = self
            .http
            .put(&url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(body);
        match self.send(request, &url).await? {
            (200..=299, _) => Ok(()),
            (status, body) => Err(RegistryError::Status {
                what: "setting the compatibility of",
                subject: subject.into(),
                status,
                body,
            }),
        }
    }

    /// The latest version of a subject; None when the subject does not exist.
    pub async fn latest(&self, subject: &str) -> Result<Option<RegisteredSchema>, RegistryError> {
        let url = self.url(&format!("subjects/{subject}/versions/latest"));
        match self.send(self.http.get(&url), &url).await? {
            (404, _) => Ok(None),
            (200, body) => {
                serde_json::from_str(&body)
                    .map(Some)
                    .map_err(|source| RegistryError::Answer {
                        what: "reading",
                        subject: subject.into(),
                        source,
                    })
            }
            (status, body) => Err(RegistryError::Status {
                what: "reading",
                subject: subject.into(),
                status,
                body,
            }),
        }
    }

    /// Registers a JSON Schema under a subject and returns its global id. Registering
    /// the latest schema again changes nothing; an incompatible one is refused.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u64, RegistryError> {
        #[derive(Deserialize)]
        struct Id {
            id: u64,
        }
        let url = self.url(&format!("subjects/{subject}/versions"));
        let body = serde_json::json!({ "schemaType": "JSON", "schema": schema }).to_string();
        let request = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(body);
        match self.send(request, &url).await? {
            (200, body) => serde_json::from_str::<Id>(&body)
                .map(|id| id.id)
                .map_err(|source| RegistryError::Answer {
                    what: "registering",
                    subject: subject.into(),
                    source,
                }),
            (409, body) => Err(RegistryError::Incompatible {
                subject: subject.into(),
                message: incompatibility_reason(&body),
            }),
            (status, body) => Err(RegistryError::Status {
                what: "registering",
                subject: subject.into(),
                status,
                body,
            }),
        }
    }

    /// Publishes one document: BACKWARD compatibility first, then the schema.
    pub async fn publish(&self, document: &SchemaDocument) -> Result<Published, RegistryError> {
        self.set_compatibility(&document.subject, COMPATIBILITY)
            .await?;
        let before = self.latest(&document.subject).await?;
        let id = self.register(&document.subject, &document.schema).await?;
        let after = self.latest(&document.subject).await?;
        let version = after.as_ref().map_or(0, |s| s.version);
        Ok(Published {
            subject: document.subject.clone(),
            id,
            version,
            new_version: before.map(|b| b.version) != Some(version),
        })
    }
}

/// The registry's own words for why a schema is incompatible (the `message` of its
/// error body), without the Java exception's class name.
fn incompatibility_reason(body: &str) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        message: String,
    }
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(error) => error
            .message
            .rsplit_once("Exception: ")
            .map_or(error.message.clone(), |(_, rest)| rest.to_owned()),
        Err(_) => body.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_the_topic_record_name_strategy() {
        let info = chorus_schemas::event_type("chat.message").unwrap();
        assert_eq!(
            subject("t1.", info),
            "t1.chorus.chat.messages-ai.chorus.chat.message.v1"
        );
        let subjects: std::collections::BTreeSet<String> =
            EVENT_TYPES.iter().map(|i| subject("", i)).collect();
        assert_eq!(subjects.len(), EVENT_TYPES.len(), "one subject per type");
    }

    #[test]
    fn the_reason_is_the_registrys_message_without_the_exception_class() {
        let body = r#"{"message":"io.apicurio.registry.rules.violation.RuleViolationException: Incompatible artifact: s [JSON], num of incompatible diffs: {1}, list of diff types: [A new required property was added at /properties/data/required]","error_code":409}"#;
        assert_eq!(
            incompatibility_reason(body),
            "Incompatible artifact: s [JSON], num of incompatible diffs: {1}, list of diff types: [A new required property was added at /properties/data/required]"
        );
        assert_eq!(incompatibility_reason("plain"), "plain");
    }

    #[test]
    fn urls_accept_the_root_or_the_api_root() {
        let a = Registry::new("http://127.0.0.1:8082/").unwrap();
        let b = Registry::new("http://127.0.0.1:8082/apis/ccompat/v7").unwrap();
        assert_eq!(a.url("subjects"), b.url("subjects"));
    }
}
