//! The live part of the demo: register two agents and the local model provider, create
//! group conversations, post human messages that mention the agents, and let real
//! `chorus orchestrator` and `chorus inference-worker` processes answer through the
//! real llama-server. Prints the replies and the metered usage, read back from Kafka.

use std::collections::{BTreeMap, HashSet};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use chorus_runtime::kafka::{EventProducer, KafkaArgs, inspect};
use chorus_schemas::*;

use crate::spawn::RoleCommand;

const MODEL: &str = "SmolLM2-135M-Instruct";
const AGENTS: [(&str, &str); 2] = [
    (
        "helper",
        "You are Helper, a friendly assistant in a group chat. Answer in one short sentence.",
    ),
    (
        "critic",
        "You are Critic. Point out one weakness in one short sentence.",
    ),
];
/// anvil dev accounts 0, 3 and 4.
const HUMANS: [&str; 3] = [
    "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
    "0x90f79bf6eb2c4f870365e785982e1f101e93b906",
    "0x15d34aaf54267db7d7c367839aaf71a00a2c6a65",
];
const QUESTIONS: [&str; 4] = [
    "what is a good name for a GPU provider?",
    "how should we reward agent developers?",
    "give me one tip for writing prompts",
    "what makes a chat agent useful?",
];

async fn provider_answers(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    tokio::net::TcpStream::connect(host).await.is_ok()
}

struct Children(Vec<tokio::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.start_kill();
        }
    }
}

/// The workload of the live part.
pub struct LiveWorkload {
    pub messages: u64,
    pub rate_per_minute: f64,
    pub reply_tokens: u32,
}

/// What the live part reports in `--json`.
#[derive(Debug, Default, serde::Serialize)]
pub struct LiveSummary {
    pub messages: u64,
    pub replies: usize,
    pub inference_results: usize,
    pub succeeded: usize,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub tokens_per_second: f64,
    pub inference_wait_seconds: f64,
    pub llama_backend: String,
    pub ratings: usize,
}

pub async fn run(
    kafka: &KafkaArgs,
    endpoint: &str,
    workload: &LiveWorkload,
    no_start: bool,
    summary: &mut LiveSummary,
) -> anyhow::Result<super::poi::Participants> {
    // Its own topics per run (the generated workload of the first part must not reach
    // the agents, and the run's PoI epoch is this run's events).
    let messages = workload.messages;
    let reply_tokens = workload.reply_tokens;
    let specs = chorus_runtime::kafka::load_topic_specs(&crate::commands::repo_path(
        "infra/topics/topics.toml",
    ))?;
    chorus_runtime::kafka::apply_topics(kafka, &specs, chorus_runtime::kafka::Replication::SINGLE)
        .await
        .context("creating the live topics")?;
    say!(
        "\n== live path (topic prefix {:?}): events -> orchestrator -> inference worker -> {MODEL} -> replies",
        kafka.topic_prefix
    );
    if !provider_answers(endpoint).await {
        if no_start || endpoint != "http://127.0.0.1:8080/v1" {
            bail!("no model provider answers at {endpoint}");
        }
        let script = crate::commands::repo_path("infra/scripts/start.sh");
        say!(
            "-- starting the local llama-server with {}",
            script.display()
        );
        let status = tokio::process::Command::new("bash")
            .arg(&script)
            .arg("llama")
            .status()
            .await?;
        if !status.success() {
            bail!("could not start llama-server");
        }
    }

    // The demo's people and developers write what the ingest API would, with its rights:
    // messages to their topic; registrations and conversation changes to the API's intake
    // topic, where the router (the one writer of the registry and of membership) decides
    // them.
    let ingest = kafka.as_principal(chorus_runtime::kafka::Principal::Ingest)?;
    let producer = EventProducer::new(&ingest, "demo", 10_000)?;
    let intake = kafka.topic(Topic::ApiIntake);
    let developer = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";
    let mut submitted = 0usize;
    for (agent_id, prompt) in AGENTS {
        submitted += 1;
        producer
            .send_to(
                &intake,
                &Envelope::new(
                    "demo",
                    AgentRegistered {
                        agent_id: agent_id.into(),
                        owner: developer.into(),
                        name: agent_id.into(),
                        system_prompt: prompt.into(),
                        model: MODEL.into(),
                        price_per_call_micros: 1_000,
                    },
                ),
            )
            .await?;
    }
    submitted += 1;
    producer
        .send_to(
            &intake,
            &Envelope::new(
                "demo",
                ProviderRegistered {
                    provider_id: "local-llama".into(),
                    owner: "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc".into(),
                    endpoint: endpoint.into(),
                    models: vec![MODEL.into()],
                    price_per_1k_tokens_micros: 20,
                },
            ),
        )
        .await?;
    say!(
        "-- registered agents helper and critic (owner {developer}) and provider local-llama ({endpoint})"
    );

    // Where this run's events start, to report only them.
    let watched = [
        Topic::Registry,
        Topic::ChatMessages,
        Topic::AgentCalls,
        Topic::InferenceJobs,
        Topic::InferenceResults,
    ];
    let mut starts = BTreeMap::new();
    for topic in watched {
        starts.insert(topic, inspect::end_offsets(kafka, &kafka.topic(topic))?);
    }

    let exe = std::env::current_exe().context("locating the chorus binary")?;
    let mut children = Children(Vec::new());
    for (name, flag, value) in [
        ("router", "--batch-max", "500".to_owned()),
        ("orchestrator", "--max-tokens", reply_tokens.to_string()),
        ("inference-worker", "--concurrency", "2".to_owned()),
    ] {
        let instance = format!("{}chorus-{name}", kafka.topic_prefix);
        let role = RoleCommand::new(&[name])
            .member(&instance, &instance)
            .metrics_addr("127.0.0.1:0")
            .session_timeout_ms(6000)
            .flag(flag, &value);
        let mut command = tokio::process::Command::new(&exe);
        crate::spawn::with_role_credentials(command.as_std_mut(), kafka);
        let child = command
            .args([
                "--log",
                "warn",
                "--brokers",
                &kafka.brokers,
                "--topic-prefix",
                &kafka.topic_prefix,
            ])
            .args(role.argv())
            .kill_on_drop(true)
            .spawn()?;
        children.0.push(child);
    }
    say!(
        "-- started `chorus router`, `chorus orchestrator` and `chorus inference-worker` (pids {:?})",
        children.0.iter().filter_map(|c| c.id()).collect::<Vec<_>>()
    );

    let run_id = uuid::Uuid::now_v7().simple().to_string();
    // Three people (anvil dev accounts 0, 3 and 4: their claims can be paid out) in two
    // groups with both agents.
    let groups = [
        (
            format!("demo-group-a-{}", &run_id[run_id.len() - 6..]),
            vec![HUMANS[0], HUMANS[1]],
        ),
        (
            format!("demo-group-b-{}", &run_id[run_id.len() - 6..]),
            vec![HUMANS[2]],
        ),
    ];
    for (conversation, humans) in &groups {
        let members = humans
            .iter()
            .map(|h| (AuthorKind::Human, *h))
            .chain([(AuthorKind::Agent, "helper"), (AuthorKind::Agent, "critic")]);
        for (index, (kind, member)) in members.enumerate() {
            submitted += 1;
            producer
                .send_to(
                    &intake,
                    &Envelope::new(
                        "demo",
                        ConversationUpdated {
                            conversation_id: conversation.clone(),
                            action: if index == 0 {
                                ConversationAction::Created
                            } else {
                                ConversationAction::MemberAdded
                            },
                            actor: humans[0].into(),
                            member_kind: Some(kind),
                            member_id: Some(member.into()),
                            title: Some("Demo group".into()),
                        },
                    ),
                )
                .await?;
        }
    }
    // People post once the router has decided the registrations and the memberships.
    let decided = || -> anyhow::Result<usize> {
        let mut count = 0;
        for topic in [Topic::Registry, Topic::ChatMessages] {
            let ends = inspect::end_offsets(kafka, &kafka.topic(topic))?;
            count += ends
                .iter()
                .map(|(p, end)| {
                    let start = starts
                        .get(&topic)
                        .and_then(|s| s.get(p))
                        .copied()
                        .unwrap_or(0);
                    usize::try_from(end - start).unwrap_or(0)
                })
                .sum::<usize>();
        }
        Ok(count)
    };
    let waited = Instant::now();
    while decided()? < submitted {
        if waited.elapsed() > Duration::from_secs(60) {
            bail!(
                "the router decided {} of {submitted} registrations and memberships in 60 s",
                decided()?
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    say!("-- the router accepted {submitted} registrations and membership changes");
    let mut posted: BTreeMap<uuid::Uuid, (&str, String)> = BTreeMap::new();
    let mut expected_calls = 0;
    let interval = Duration::from_secs_f64(60.0 / workload.rate_per_minute.max(0.1));
    for n in 0..messages {
        let human = HUMANS[n as usize % HUMANS.len()];
        let conversation = groups
            .iter()
            .find(|(_, humans)| humans.contains(&human))
            .map(|(c, _)| c.clone())
            .unwrap_or_default();
        let (mentions, text): (Vec<String>, String) = match n % 3 {
            0 => (
                vec!["helper".into(), "critic".into()],
                format!(
                    "@helper @critic {}",
                    QUESTIONS[n as usize % QUESTIONS.len()]
                ),
            ),
            1 => (
                vec!["helper".into()],
                format!("@helper {}", QUESTIONS[n as usize % QUESTIONS.len()]),
            ),
            _ => (
                vec!["critic".into()],
                format!("@critic {}", QUESTIONS[n as usize % QUESTIONS.len()]),
            ),
        };
        expected_calls += mentions.len();
        let message = Envelope::new(
            "demo",
            ChatMessage {
                conversation_id: conversation.clone(),
                author_kind: AuthorKind::Human,
                author_id: human.into(),
                content: text.clone(),
                mentions,
                reply_to: None,
                hop: 0,
                job_id: None,
            },
        );
        producer.send(&message).await?;
        say!(
            "   [{}/{messages}] {human} in {conversation}: {text}",
            n + 1
        );
        posted.insert(message.id, (human, conversation));
        if n + 1 < messages {
            tokio::time::sleep(interval).await;
        }
    }
    let conversation = format!("{} groups", groups.len());
    say!(
        "-- posted {messages} messages in {conversation}; waiting for {expected_calls} agent replies (CPU inference, ~10 s each)"
    );

    let conversations: HashSet<String> = groups.iter().map(|(c, _)| c.clone()).collect();
    let started = Instant::now();
    let chat = kafka.topic(Topic::ChatMessages);
    let (mut last_report, mut last_direct) = (0u64, 0usize);
    let (replies, inference_wait) = loop {
        let replies: Vec<Envelope<ChatMessage>> =
            inspect::read_committed(kafka, &chat, &starts[&Topic::ChatMessages])?
                .iter()
                .filter_map(|r| Envelope::<ChatMessage>::from_json(&r.payload).ok())
                .filter(|m| {
                    m.data.author_kind == AuthorKind::Agent
                        && conversations.contains(&m.data.conversation_id)
                })
                .collect();
        let direct = replies
            .iter()
            .filter(|r| r.data.reply_to.is_some_and(|id| posted.contains_key(&id)))
            .count();
        let elapsed = started.elapsed().as_secs();
        if std::io::stdout().is_terminal() {
            if !super::json_mode() {
                print!("\r   replies {direct}/{expected_calls} after {elapsed}s   ");
                let _ = std::io::stdout().flush();
            }
        } else if elapsed / 15 != last_report / 15 || direct != last_direct {
            say!("   replies {direct}/{expected_calls} after {elapsed}s");
            last_report = elapsed;
            last_direct = direct;
        }
        if direct >= expected_calls {
            if std::io::stdout().is_terminal() {
                say!();
            }
            break (replies, started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("only {direct} of {expected_calls} replies after 10 minutes");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    drop(children);

    for reply in &replies {
        let text: String = reply.data.content.chars().take(90).collect();
        say!(
            "   {} (hop {}): {}",
            reply.data.author_id,
            reply.data.hop,
            text.replace('\n', " ")
        );
    }
    let results: Vec<InferenceResult> = inspect::read_committed(
        kafka,
        &kafka.topic(Topic::InferenceResults),
        &starts[&Topic::InferenceResults],
    )?
    .iter()
    .filter_map(|r| Envelope::<InferenceResult>::from_json(&r.payload).ok())
    .map(|e| e.data)
    .filter(|r| {
        r.conversation_id
            .as_ref()
            .is_some_and(|c| conversations.contains(c))
    })
    .collect();
    let succeeded = results
        .iter()
        .filter(|r| r.status == JobStatus::Succeeded)
        .count();
    let prompt: u64 = results.iter().map(|r| u64::from(r.prompt_tokens)).sum();
    let completion: u64 = results.iter().map(|r| u64::from(r.completion_tokens)).sum();
    let gpu: f64 = results.iter().map(|r| r.gpu_seconds).sum();
    let ttft: Vec<u64> = results.iter().filter_map(|r| r.ttft_ms).collect();
    say!(
        "-- {} inference results ({succeeded} succeeded): {prompt} prompt + {completion} completion tokens, {gpu:.1} GPU-seconds, median time to first token {} ms",
        results.len(),
        median(ttft)
    );
    // The model's speed: tokens after the first over the time after the first token
    // (generation), and all tokens over the whole attempts (with prompt processing).
    let (streamed_tokens, streamed_seconds) = results
        .iter()
        .filter_map(|r| {
            let ttft = r.ttft_ms? as f64 / 1000.0;
            let after_first = r.gpu_seconds - ttft;
            (r.completion_tokens > 1 && after_first > 0.0)
                .then(|| (f64::from(r.completion_tokens - 1), after_first))
        })
        .fold((0.0, 0.0), |(t, s), (dt, ds)| (t + dt, s + ds));
    let tokens_per_second = streamed_tokens / streamed_seconds.max(1e-9);
    say!(
        "-- model: {tokens_per_second:.1} tokens/s generated, {:.1} tokens/s with prompt processing ({}); inference wait {:.1} s for {expected_calls} replies",
        completion as f64 / gpu.max(1e-9),
        llama_backend(),
        inference_wait.as_secs_f64()
    );
    // The people rate the replies to their messages (4 or 5 stars).
    let mut ratings = 0;
    for (index, reply) in replies.iter().enumerate() {
        let Some((human, conversation)) = reply.data.reply_to.and_then(|id| posted.get(&id)) else {
            continue;
        };
        producer
            .send(&Envelope::new(
                "demo",
                Feedback {
                    conversation_id: conversation.clone(),
                    message_id: reply.id,
                    account: (*human).into(),
                    rating: if index % 2 == 0 { 5 } else { 4 },
                    comment: None,
                },
            ))
            .await?;
        ratings += 1;
    }
    say!("-- the people rated {ratings} replies");
    *summary = LiveSummary {
        messages,
        replies: replies.len(),
        inference_results: results.len(),
        succeeded,
        prompt_tokens: prompt,
        completion_tokens: completion,
        tokens_per_second,
        inference_wait_seconds: inference_wait.as_secs_f64(),
        llama_backend: llama_backend(),
        ratings,
    };
    watched_feedback(kafka, &starts)?;
    Ok(super::poi::Participants {
        humans: HUMANS.iter().map(|h| h.to_string()).collect(),
        agents: AGENTS.iter().map(|(a, _)| a.to_string()).collect(),
        provider_id: "local-llama".into(),
    })
}

fn watched_feedback(
    kafka: &KafkaArgs,
    starts: &BTreeMap<Topic, BTreeMap<i32, i64>>,
) -> anyhow::Result<()> {
    say!("\n{:<52} {:>10}", "topic (this run)", "events");
    for topic in [
        Topic::Registry,
        Topic::ChatMessages,
        Topic::AgentCalls,
        Topic::InferenceJobs,
        Topic::InferenceResults,
        Topic::Feedback,
    ] {
        let from = starts.get(&topic).cloned().unwrap_or_default();
        let count = inspect::read_committed(kafka, &kafka.topic(topic), &from)?.len();
        say!("{:<52} {count:>10}", kafka.topic(topic));
    }
    Ok(())
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// Which llama-server backend the local install chose and why (`~/.chorus/llama.env`).
fn llama_backend() -> String {
    let Some(text) = crate::commands::chorus_home()
        .and_then(|h| std::fs::read_to_string(h.join("llama.env")).ok())
    else {
        return "provider not started by this project".into();
    };
    // LLAMA_KIND is a bare word (wheel-cpu, source, wheel-vulkan); only LLAMA_WHY is quoted.
    match text.lines().find_map(|l| l.strip_prefix("LLAMA_KIND=")) {
        Some(kind) => format!("llama-server backend {kind}"),
        None => "llama-server backend unknown".into(),
    }
}
