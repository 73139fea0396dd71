//! Helpers for the end-to-end tests. They run against the real services started by
// Test-support code: failing loudly is its job.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
//! `infra/scripts/start.sh` (Kafka on 127.0.0.1:9092 unless `CHORUS_KAFKA_BROKERS` says
//! otherwise). Every test works under its own topic prefix, so tests never see each
//! other's data and can run in parallel.

pub mod chain;
pub mod clickhouse;
pub mod faults;
pub mod faulty_provider;
pub mod ingest;
pub mod kafka;
pub mod poi;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chorus_runtime::kafka::{KafkaArgs, Principal, apply_topics, inspect, load_topic_specs};

/// The command line of a role process (`chorus <role> [flags]`), for [`spawn_role`].
pub use chorus_cli::spawn::{RoleCommand, with_role_credentials};

/// Kafka settings for one test, under a fresh topic prefix, as the admin principal
/// (a super user: the tests' own setup and checks). Roles the test starts authenticate
/// as their own principals; [`as_principal`] gives the test any other.
pub fn test_kafka(name: &str) -> KafkaArgs {
    let id = uuid::Uuid::now_v7().simple().to_string();
    KafkaArgs {
        brokers: std::env::var("CHORUS_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
        topic_prefix: format!("test-{name}-{}.", &id[id.len() - 10..]),
        secrets_dir: Some(kafka_secrets_dir()),
        ..KafkaArgs::default()
    }
    .authenticate_as(Principal::Admin)
    .expect("the admin's Kafka password (infra/scripts/kafka-auth.sh secrets)")
}

/// The same deployment as another principal.
pub fn as_principal(kafka: &KafkaArgs, principal: Principal) -> KafkaArgs {
    kafka
        .as_principal(principal)
        .unwrap_or_else(|e| panic!("the {} principal's password: {e}", principal.user()))
}

/// Where `infra/scripts/kafka-auth.sh` keeps the Kafka users' passwords.
pub fn kafka_secrets_dir() -> PathBuf {
    chorus_home().join("kafka-secrets")
}

/// Grants the ACL matrix (`infra/kafka/acls`) under the test's topic prefix on its
/// broker (one Admin API call).
pub async fn grant_acls(kafka: &KafkaArgs) -> anyhow::Result<()> {
    chorus_cli::commands::grant_local_acls(&kafka.brokers, &kafka.topic_prefix).await
}

/// Where `infra/scripts/install.sh` installs the services (`CHORUS_HOME`, else `~/.chorus`).
pub fn chorus_home() -> PathBuf {
    std::env::var_os("CHORUS_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".chorus")
        })
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Creates every Chorus topic under the test's prefix and grants the roles' ACLs on them.
pub async fn create_topics(kafka: &KafkaArgs) -> anyhow::Result<()> {
    create_topics_in(kafka, "local").await
}

/// [`create_topics`] with the replication of `environment` in `infra/topics/topics.toml`.
pub async fn create_topics_in(kafka: &KafkaArgs, environment: &str) -> anyhow::Result<()> {
    let file = repo_root().join("infra/topics/topics.toml");
    let specs = load_topic_specs(&file)?;
    let replication = chorus_runtime::kafka::load_replication(&file, environment)?;
    apply_topics(kafka, &specs, replication).await?;
    grant_acls(kafka).await
}

/// The `chorus` binary named by [`use_chorus_bin`], if a process did.
static CHORUS_BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Names the `chorus` binary the helpers start, for a process that finds it itself
/// (the workbench, beside its own binary) and cannot set `CHORUS_BIN` in its own
/// environment (`std::env::set_var` is unsafe). The first call wins.
pub fn use_chorus_bin(path: PathBuf) {
    let _ = CHORUS_BIN.set(path);
}

/// The `chorus` binary under test, named explicitly: the one given to [`use_chorus_bin`],
/// else `CHORUS_BIN` if set, else the path nextest (`NEXTEST_BIN_EXE_chorus`) or cargo
/// (`CARGO_BIN_EXE_chorus`) gives the tests of the `chorus` package, which builds it
/// before running them.
pub fn chorus_bin() -> PathBuf {
    if let Some(path) = CHORUS_BIN.get() {
        return path.clone();
    }
    [
        "CHORUS_BIN",
        "NEXTEST_BIN_EXE_chorus",
        "CARGO_BIN_EXE_chorus",
    ]
    .iter()
    .find_map(std::env::var_os)
    .map(PathBuf::from)
    .unwrap_or_else(|| {
        panic!(
            "no chorus binary: run the end-to-end tests with `cargo nextest run` \
                 (or `cargo test -p chorus`), or set CHORUS_BIN"
        )
    })
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Starts `chorus <args>` with the test's Kafka settings; output goes to a log file
/// under `target/test-logs/`.
pub fn spawn_chorus(kafka: &KafkaArgs, log_name: &str, args: &[&str]) -> anyhow::Result<Child> {
    spawn_chorus_with_env(kafka, log_name, args, &[])
}

/// Starts the role process `role` with the test's Kafka settings (see [`spawn_chorus`]).
pub fn spawn_role(kafka: &KafkaArgs, log_name: &str, role: &RoleCommand) -> anyhow::Result<Child> {
    spawn_role_with_env(kafka, log_name, role, &[])
}

/// Starts the role process `role` with extra environment variables (see [`spawn_role`]).
pub fn spawn_role_with_env(
    kafka: &KafkaArgs,
    log_name: &str,
    role: &RoleCommand,
    env: &[(&str, &str)],
) -> anyhow::Result<Child> {
    spawn_chorus_with_env(kafka, log_name, &role.argv(), env)
}

/// Sends SIGTERM to a child and waits for it to exit.
pub fn terminate(child: &mut Child, within: Duration) -> anyhow::Result<std::process::ExitStatus> {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -TERM failed");
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            anyhow::bail!("process did not exit within {within:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Total offsets a group committed on a topic. Retries while the group coordinator is
/// busy (a rebalance); panics if it never answers.
pub fn committed_total(kafka: &KafkaArgs, group: &str, topic: &str) -> i64 {
    let mut last_error = None;
    for _ in 0..50 {
        match inspect::committed_offsets(kafka, group, topic) {
            Ok(offsets) => return offsets.values().sum(),
            Err(e) => last_error = Some(e),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("committed offsets of {group} on {topic} unavailable: {last_error:?}")
}

/// Waits until the log file at `path` contains `needle`.
pub fn wait_for_log(path: &std::path::Path, needle: &str, timeout: Duration) -> anyhow::Result<()> {
    wait_for(
        &format!("{needle:?} in {}", path.display()),
        timeout,
        || {
            std::fs::read_to_string(path)
                .map(|log| log.contains(needle))
                .unwrap_or(false)
        },
    )
}

/// The last `lines` lines of every role log of this test (`target/test-logs/<prefix>*`),
/// for a failure message: CI keeps a failing test's output, not its clone's files.
pub fn role_log_tails(kafka: &KafkaArgs, lines: usize) -> String {
    let dir = repo_root().join("target/test-logs");
    let mut logs: Vec<_> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|x| x == "log")
                        && p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(&kafka.topic_prefix))
                })
                .collect()
        })
        .unwrap_or_default();
    logs.sort();
    let mut out = String::new();
    for path in logs {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        out.push_str(&format!(
            "\n--- {name} (last {} of {} lines)\n",
            lines.min(all.len()),
            all.len()
        ));
        for line in &all[all.len().saturating_sub(lines)..] {
            let mut end = line.len().min(400);
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            out.push_str(&line[..end]);
            out.push('\n');
        }
    }
    out
}

/// Adds the test's role logs to a failure (see [`role_log_tails`]).
pub trait WithRoleLogs<T> {
    fn with_role_logs(self, kafka: &KafkaArgs) -> anyhow::Result<T>;
}

impl<T> WithRoleLogs<T> for anyhow::Result<T> {
    fn with_role_logs(self, kafka: &KafkaArgs) -> anyhow::Result<T> {
        self.map_err(|e| e.context(format!("role logs:{}", role_log_tails(kafka, 25))))
    }
}

/// Waits until `condition` holds, polling; fails after `timeout`.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !condition() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Reads every committed record of a topic from the beginning.
pub fn read_all(kafka: &KafkaArgs, topic: &str) -> anyhow::Result<Vec<inspect::StoredRecord>> {
    Ok(inspect::read_committed(kafka, topic, &BTreeMap::new())?)
}

/// Fetches `http://127.0.0.1:<port><path>` with a bare HTTP/1.0 request.
pub fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    http_exchange(port, "GET", path, &[], b"", Duration::from_secs(5))
}

/// POSTs a JSON body to `http://127.0.0.1:<port><path>` (HTTP/1.0, no keep-alive).
pub fn http_post_json(
    port: u16,
    path: &str,
    body: &str,
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    http_exchange(
        port,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
        timeout,
    )
}

/// A service port from the environment (as set by infra/scripts/common.sh) or its default.
pub fn service_port(variable: &str, default: u16) -> u16 {
    std::env::var(variable)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Starts `chorus <args>` with extra environment variables (see [`spawn_chorus`]).
pub fn spawn_chorus_with_env(
    kafka: &KafkaArgs,
    log_name: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<Child> {
    let bin = chorus_bin();
    anyhow::ensure!(
        bin.exists(),
        "chorus binary not found at {} (build the workspace first)",
        bin.display()
    );
    let log_dir = repo_root().join("target/test-logs");
    std::fs::create_dir_all(&log_dir)?;
    let log = std::fs::File::create(log_dir.join(format!("{}{log_name}.log", kafka.topic_prefix)))?;
    let mut command = Command::new(bin);
    with_role_credentials(&mut command, kafka);
    command
        .args([
            "--brokers",
            &kafka.brokers,
            "--topic-prefix",
            &kafka.topic_prefix,
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    for (key, value) in env {
        command.env(key, value);
    }
    Ok(command.spawn()?)
}

/// One HTTP/1.0 request with headers; returns (status, body).
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    http_exchange(port, method, path, headers, body, Duration::from_secs(30))
}

/// An HTTP response: status, headers, body.
pub type HttpResponse = (u16, Vec<(String, String)>, String);

/// Like [`http_request`], with the response headers.
pub fn http_request_with_headers(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<HttpResponse> {
    http_exchange_full(port, method, path, headers, body, Duration::from_secs(30))
}

fn http_exchange(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    let (status, _, body) = http_exchange_full(port, method, path, headers, body, timeout)?;
    Ok((status, body))
}

fn http_exchange_full(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> anyhow::Result<HttpResponse> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(timeout))?;
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    // A server may answer (e.g. 413) and close before reading the whole body.
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .map(|(h, b)| (h.to_owned(), b.to_owned()))
        .unwrap_or_default();
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok((status, headers, body))
}

/// A child process that is killed when dropped, so that a failing test leaves no
/// stray roles behind.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
pub use chorus_signing as signing;
