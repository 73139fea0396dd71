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

pub async fn run(
    base: &KafkaArgs,
    endpoint: &str,
    messages: u64,
    reply_tokens: u32,
    no_start: bool,
) -> anyhow::Result<()> {
    // Its own topics (stable across runs, so a second run continues where the first
    // stopped): the generated workload of the first part must not reach the agents.
    let mut live = base.clone();
    live.topic_prefix = format!("{}live.", base.topic_prefix);
    let kafka = &live;
    let specs =
        chorus_runtime::kafka::load_topic_specs(&super::repo_path("infra/topics/topics.toml"))?;
    chorus_runtime::kafka::apply_topics(kafka, &specs, 1)
        .await
        .context("creating the live topics")?;
    println!(
        "\n== live path (topic prefix {:?}): events -> orchestrator -> inference worker -> {MODEL} -> replies",
        kafka.topic_prefix
    );
    if !provider_answers(endpoint).await {
        if no_start || endpoint != "http://127.0.0.1:8080/v1" {
            bail!("no model provider answers at {endpoint}");
        }
        let script = super::repo_path("infra/scripts/start.sh");
        println!(
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

    let producer = EventProducer::new(kafka, "demo", 10_000)?;
    let developer = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";
    for (agent_id, prompt) in AGENTS {
        producer
            .send(&Envelope::new(
                "demo",
                AgentRegistered {
                    agent_id: agent_id.into(),
                    owner: developer.into(),
                    name: agent_id.into(),
                    system_prompt: prompt.into(),
                    model: MODEL.into(),
                    price_per_call_micros: 1_000,
                },
            ))
            .await?;
    }
    producer
        .send(&Envelope::new(
            "demo",
            ProviderRegistered {
                provider_id: "local-llama".into(),
                owner: "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc".into(),
                endpoint: endpoint.into(),
                models: vec![MODEL.into()],
                price_per_1k_tokens_micros: 20,
            },
        ))
        .await?;
    println!(
        "-- registered agents helper and critic (owner {developer}) and provider local-llama ({endpoint})"
    );

    // Where this run's events start, to report only them.
    let watched = [
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
    for role in [
        vec![
            "orchestrator".to_owned(),
            "--max-tokens".into(),
            reply_tokens.to_string(),
        ],
        vec![
            "inference-worker".to_owned(),
            "--concurrency".into(),
            "2".into(),
        ],
    ] {
        let instance = format!("{}{}", kafka.topic_prefix, role[0]);
        let child = tokio::process::Command::new(&exe)
            .args([
                "--log",
                "warn",
                "--brokers",
                &kafka.brokers,
                "--topic-prefix",
                &kafka.topic_prefix,
            ])
            .args(&role)
            .args([
                "--group",
                &instance,
                "--instance-id",
                &instance,
                "--metrics-addr",
                "127.0.0.1:0",
                "--session-timeout-ms",
                "6000",
            ])
            .kill_on_drop(true)
            .spawn()?;
        children.0.push(child);
    }
    println!(
        "-- started `chorus orchestrator` and `chorus inference-worker` (pids {:?})",
        children.0.iter().filter_map(|c| c.id()).collect::<Vec<_>>()
    );

    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let conversation = format!("demo-group-{}", &run_id[run_id.len() - 6..]);
    let human = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
    for (kind, member) in [
        (AuthorKind::Human, human),
        (AuthorKind::Agent, "helper"),
        (AuthorKind::Agent, "critic"),
    ] {
        producer
            .send(&Envelope::new(
                "demo",
                ConversationUpdated {
                    conversation_id: conversation.clone(),
                    action: if kind == AuthorKind::Human {
                        ConversationAction::Created
                    } else {
                        ConversationAction::MemberAdded
                    },
                    actor: human.into(),
                    member_kind: Some(kind),
                    member_id: Some(member.into()),
                    title: Some("Demo group".into()),
                },
            ))
            .await?;
    }
    let mut posted = Vec::new();
    let mut expected_calls = 0;
    for n in 0..messages {
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
        println!("   {human}: {text}");
        posted.push(message.id);
    }
    println!(
        "-- posted {messages} messages in {conversation}; waiting for {expected_calls} agent replies (CPU inference, ~10 s each)"
    );

    let posted: HashSet<uuid::Uuid> = posted.into_iter().collect();
    let started = Instant::now();
    let chat = kafka.topic(Topic::ChatMessages);
    let (mut last_report, mut last_direct) = (0u64, 0usize);
    let replies = loop {
        let replies: Vec<Envelope<ChatMessage>> =
            inspect::read_committed(kafka, &chat, &starts[&Topic::ChatMessages])?
                .iter()
                .filter_map(|r| Envelope::<ChatMessage>::from_json(&r.payload).ok())
                .filter(|m| {
                    m.data.author_kind == AuthorKind::Agent
                        && m.data.conversation_id == conversation
                })
                .collect();
        let direct = replies
            .iter()
            .filter(|r| r.data.reply_to.is_some_and(|id| posted.contains(&id)))
            .count();
        let elapsed = started.elapsed().as_secs();
        if std::io::stdout().is_terminal() {
            print!("\r   replies {direct}/{expected_calls} after {elapsed}s   ");
            let _ = std::io::stdout().flush();
        } else if elapsed / 15 != last_report / 15 || direct != last_direct {
            println!("   replies {direct}/{expected_calls} after {elapsed}s");
            last_report = elapsed;
            last_direct = direct;
        }
        if direct >= expected_calls {
            if std::io::stdout().is_terminal() {
                println!();
            }
            break replies;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("only {direct} of {expected_calls} replies after 10 minutes");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    drop(children);

    for reply in &replies {
        let text: String = reply.data.content.chars().take(90).collect();
        println!(
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
    .filter(|r| r.conversation_id.as_deref() == Some(conversation.as_str()))
    .collect();
    let succeeded = results
        .iter()
        .filter(|r| r.status == JobStatus::Succeeded)
        .count();
    let prompt: u64 = results.iter().map(|r| u64::from(r.prompt_tokens)).sum();
    let completion: u64 = results.iter().map(|r| u64::from(r.completion_tokens)).sum();
    let gpu: f64 = results.iter().map(|r| r.gpu_seconds).sum();
    let ttft: Vec<u64> = results.iter().filter_map(|r| r.ttft_ms).collect();
    println!(
        "-- {} inference results ({succeeded} succeeded): {prompt} prompt + {completion} completion tokens, {gpu:.1} GPU-seconds, median time to first token {} ms",
        results.len(),
        median(ttft)
    );
    println!("\n{:<34} {:>10}", "topic (this run)", "events");
    for topic in watched {
        let count = inspect::read_committed(kafka, &kafka.topic(topic), &starts[&topic])?.len();
        println!("{:<34} {count:>10}", kafka.topic(topic));
    }
    Ok(())
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}
