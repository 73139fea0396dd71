//! The providers a worker can route to: registered in the `chorus.registry` topic
//! (followed live, rebuilt from the start of the compacted topic on every start) and/or
//! given on the command line. API keys come from the environment only, each bound to
//! the endpoint and the owner it belongs to: `CHORUS_PROVIDER_API_KEY_<ID>` is sent only
//! to the URL in `CHORUS_PROVIDER_ENDPOINT_<ID>` for a registration owned by
//! `CHORUS_PROVIDER_OWNER_<ID>` (id upper-cased, other characters as `_`), so neither a
//! registration pointing the id elsewhere nor a look-alike id receives the key.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use rdkafka::error::KafkaError;

use chorus_runtime::Shutdown;
use chorus_runtime::kafka::KafkaArgs;
use chorus_runtime::kafka::follow::{ApplyRecord, follow_topic};
use chorus_schemas::{AnyEvent, InferenceJob, ProviderRegistered, Topic};

use crate::breaker::CircuitBreaker;
use crate::call;

/// One provider as the router sees it.
#[derive(Debug)]
pub struct Provider {
    pub id: String,
    pub owner: String,
    pub endpoint: String,
    pub models: Vec<String>,
    pub price_per_1k_tokens_micros: u64,
    pub client: Client<OpenAIConfig>,
    pub breaker: CircuitBreaker,
}

/// Breaker settings for new providers.
#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    pub threshold: u32,
    pub cool_down: Duration,
}

/// The live set of providers.
#[derive(Debug)]
pub struct ProviderDirectory {
    providers: RwLock<HashMap<String, Arc<Provider>>>,
    breaker: BreakerSettings,
}

/// Parses `id=...,endpoint=...,models=a|b,price=...[,owner=0x...]` (a `--provider` flag).
pub fn parse_static_provider(spec: &str) -> Result<ProviderRegistered, String> {
    let mut fields: HashMap<&str, &str> = HashMap::new();
    for part in spec.split(',') {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not key=value"))?;
        fields.insert(key.trim(), value.trim());
    }
    let get = |key: &str| {
        fields
            .get(key)
            .copied()
            .ok_or_else(|| format!("provider spec {spec:?} lacks {key}="))
    };
    Ok(ProviderRegistered {
        provider_id: get("id")?.to_owned(),
        owner: fields
            .get("owner")
            .copied()
            .unwrap_or("0x0000000000000000000000000000000000000000")
            .to_owned(),
        endpoint: get("endpoint")?.to_owned(),
        models: get("models")?.split('|').map(str::to_owned).collect(),
        price_per_1k_tokens_micros: fields
            .get("price")
            .map(|p| p.parse())
            .transpose()
            .map_err(|e| format!("price: {e}"))?
            .unwrap_or(0),
    })
}

/// The upstream key for a registration, if one is configured for exactly its endpoint
/// and its owner (ids that differ only in punctuation share a variable name, so the
/// owner, which the registry's first-come rule protects, tells them apart).
fn api_key_for(registered: &ProviderRegistered) -> Option<String> {
    let suffix = env_suffix(&registered.provider_id);
    let key = std::env::var(format!("CHORUS_PROVIDER_API_KEY_{suffix}")).ok()?;
    let endpoint = std::env::var(format!("CHORUS_PROVIDER_ENDPOINT_{suffix}")).ok();
    let owner = std::env::var(format!("CHORUS_PROVIDER_OWNER_{suffix}")).ok();
    key_for_endpoint(registered, key, endpoint.as_deref(), owner.as_deref())
}

/// A key is sent only to the endpoint and owner it is bound to.
fn key_for_endpoint(
    registered: &ProviderRegistered,
    key: String,
    bound: Option<&str>,
    bound_owner: Option<&str>,
) -> Option<String> {
    let provider_id = &registered.provider_id;
    let endpoint = &registered.endpoint;
    if !bound_owner.is_some_and(|o| o.eq_ignore_ascii_case(&registered.owner)) {
        tracing::warn!(provider = %provider_id, owner = %registered.owner, "not sending the provider's API key: set CHORUS_PROVIDER_OWNER_<ID> to the account it belongs to");
        return None;
    }
    match bound {
        Some(bound) if bound.trim_end_matches('/') == endpoint.trim_end_matches('/') => Some(key),
        Some(bound) => {
            tracing::warn!(provider = %provider_id, %endpoint, %bound, "not sending the provider's API key: it is bound to another endpoint");
            None
        }
        None => {
            tracing::warn!(provider = %provider_id, "not sending the provider's API key: set CHORUS_PROVIDER_ENDPOINT_<ID> to the endpoint it belongs to");
            None
        }
    }
}

fn env_suffix(provider_id: &str) -> String {
    provider_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

impl ProviderDirectory {
    pub fn new(breaker: BreakerSettings) -> Self {
        ProviderDirectory {
            providers: RwLock::new(HashMap::new()),
            breaker,
        }
    }

    /// Adds a provider, or applies its owner's update (a new registration resets its
    /// breaker). An update by another account is ignored: the router refuses those.
    pub fn upsert(&self, registered: &ProviderRegistered) {
        if let Some(first) = self
            .providers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&registered.provider_id)
            && !first.owner.eq_ignore_ascii_case(&registered.owner)
        {
            tracing::warn!(provider = %registered.provider_id, owner = %first.owner, claimed = %registered.owner, "ignoring a registration by another owner");
            return;
        }
        let provider = Provider {
            id: registered.provider_id.clone(),
            owner: registered.owner.clone(),
            endpoint: registered.endpoint.clone(),
            models: registered.models.clone(),
            price_per_1k_tokens_micros: registered.price_per_1k_tokens_micros,
            client: call::client(&registered.endpoint, api_key_for(registered).as_deref()),
            breaker: CircuitBreaker::new(self.breaker.threshold, self.breaker.cool_down),
        };
        let mut providers = self.providers.write().unwrap_or_else(|p| p.into_inner());
        let unchanged = providers.get(&provider.id).is_some_and(|old| {
            old.endpoint == provider.endpoint
                && old.models == provider.models
                && old.price_per_1k_tokens_micros == provider.price_per_1k_tokens_micros
        });
        if !unchanged {
            tracing::info!(provider = %provider.id, endpoint = %provider.endpoint, models = ?provider.models, "provider registered");
            providers.insert(provider.id.clone(), Arc::new(provider));
        }
    }

    pub fn len(&self) -> usize {
        self.providers.read().map(|p| p.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Providers for a job in the order to try them: the assigned ones in the given
    /// order (those serving the model), else every provider serving the model, cheapest
    /// first (ties by id, so every worker agrees).
    pub fn candidates(&self, job: &InferenceJob) -> Vec<Arc<Provider>> {
        let providers = self.providers.read().unwrap_or_else(|p| p.into_inner());
        let serves = |p: &Provider| p.models.iter().any(|m| m == &job.model);
        if !job.provider_ids.is_empty() {
            return job
                .provider_ids
                .iter()
                .filter_map(|id| providers.get(id))
                .filter(|p| serves(p))
                .cloned()
                .collect();
        }
        let mut all: Vec<Arc<Provider>> =
            providers.values().filter(|p| serves(p)).cloned().collect();
        all.sort_by(|a, b| {
            a.price_per_1k_tokens_micros
                .cmp(&b.price_per_1k_tokens_micros)
                .then_with(|| a.id.cmp(&b.id))
        });
        all
    }

    /// Follows the registry topic: resolves once every registration present at start
    /// is loaded, then keeps applying new ones until shutdown.
    pub async fn follow_registry(
        self: Arc<Self>,
        kafka: &KafkaArgs,
        shutdown: Shutdown,
    ) -> Result<(), KafkaError> {
        let directory = self.clone();
        let apply: ApplyRecord = Arc::new(move |_, _, payload| directory.apply(Some(payload)));
        follow_topic(
            kafka,
            &kafka.topic(Topic::Registry),
            "inference-worker-registry",
            apply,
            shutdown,
        )
        .await?;
        tracing::info!(providers = self.len(), "provider registry loaded");
        Ok(())
    }

    fn apply(&self, payload: Option<&[u8]>) {
        let Some(payload) = payload else { return };
        match AnyEvent::decode(None, payload) {
            Ok(AnyEvent::ProviderRegistered(event)) => self.upsert(&event.data),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "skipping an undecodable registry record"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_key_goes_only_to_the_endpoint_and_owner_it_is_bound_to() {
        let key = || "sk-secret".to_owned();
        let registered = |id: &str, endpoint: &str, owner: &str| {
            parse_static_provider(&format!(
                "id={id},endpoint={endpoint},models=m,owner={owner}"
            ))
            .unwrap()
        };
        let bound = Some("https://gpu.example/v1/");
        let owner = Some("0xAA");
        let real = registered("gpu-a", "https://gpu.example/v1", "0xaa");
        assert_eq!(
            key_for_endpoint(&real, key(), bound, owner).as_deref(),
            Some("sk-secret")
        );
        let moved = registered("gpu-a", "https://thief.example/v1", "0xaa");
        assert_eq!(key_for_endpoint(&moved, key(), bound, owner), None);
        assert_eq!(key_for_endpoint(&real, key(), None, owner), None);
        // `gpu_a` shares gpu-a's variables; the owner tells them apart.
        let lookalike = registered("gpu_a", "https://gpu.example/v1", "0xbb");
        assert_eq!(env_suffix("gpu_a"), env_suffix("gpu-a"));
        assert_eq!(key_for_endpoint(&lookalike, key(), bound, owner), None);
        assert_eq!(key_for_endpoint(&real, key(), bound, None), None);
    }

    #[test]
    fn a_provider_id_cannot_be_taken_over_by_another_owner() {
        let directory = ProviderDirectory::new(BreakerSettings {
            threshold: 3,
            cool_down: Duration::from_secs(1),
        });
        let mut registered =
            parse_static_provider("id=p,endpoint=http://127.0.0.1:9/v1,models=m,owner=0xaa")
                .unwrap();
        directory.upsert(&registered);
        registered.owner = "0xbb".into();
        registered.endpoint = "http://thief.example/v1".into();
        directory.upsert(&registered);
        let job = job("m", &[]);
        let candidates = directory.candidates(&job);
        assert_eq!(candidates[0].endpoint, "http://127.0.0.1:9/v1");
        assert_eq!(candidates[0].owner, "0xaa");
    }
    use chorus_schemas::{ChatTurn, JobKind};

    fn job(model: &str, assigned: &[&str]) -> InferenceJob {
        InferenceJob {
            job_id: uuid::Uuid::now_v7(),
            kind: JobKind::Chat,
            model: model.into(),
            messages: vec![ChatTurn {
                role: "user".into(),
                content: "hi".into(),
            }],
            max_tokens: None,
            temperature: None,
            stream: false,
            provider_ids: assigned.iter().map(|s| s.to_string()).collect(),
            call_id: None,
            conversation_id: None,
            agent_id: None,
            deadline_ms: None,
            reply_to: None,
            hop: 0,
        }
    }

    #[test]
    fn candidates_are_assigned_first_else_cheapest() {
        let directory = ProviderDirectory::new(BreakerSettings {
            threshold: 3,
            cool_down: Duration::from_secs(1),
        });
        for spec in [
            "id=b,endpoint=http://127.0.0.1:1/v1,models=m1|m2,price=5",
            "id=a,endpoint=http://127.0.0.1:2/v1,models=m1,price=9",
            "id=c,endpoint=http://127.0.0.1:3/v1,models=m2,price=1",
        ] {
            directory.upsert(&parse_static_provider(spec).unwrap());
        }
        let ids = |job: &InferenceJob| {
            directory
                .candidates(job)
                .iter()
                .map(|p| p.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&job("m1", &[])), vec!["b", "a"]);
        assert_eq!(ids(&job("m2", &[])), vec!["c", "b"]);
        assert_eq!(
            ids(&job("m1", &["a", "c", "b"])),
            vec!["a", "b"],
            "assigned order; c does not serve m1"
        );
        assert!(ids(&job("unknown", &[])).is_empty());
    }

    #[test]
    fn static_provider_specs_are_checked() {
        assert!(parse_static_provider("id=x,endpoint=http://h/v1").is_err());
        assert!(parse_static_provider("id=x,endpoint=http://h/v1,models=m,price=abc").is_err());
        let p = parse_static_provider("id=x,endpoint=http://h/v1,models=m|n,price=7").unwrap();
        assert_eq!(p.models, vec!["m", "n"]);
        assert_eq!(p.price_per_1k_tokens_micros, 7);
    }
}
