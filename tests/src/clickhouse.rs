//! ClickHouse test helpers: the shared server started by `infra/scripts/start.sh`, and a
//! private server process (same binary, same config template, its own ports and data
//! directory) for tests that stop and restart ClickHouse without disturbing the others.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::collections::{BTreeMap, HashSet};

use chorus_analytics::ClickHouseArgs;
use chorus_analytics::clickhouse::query_u64;
use chorus_analytics::tables::{table_for, tables};
use chorus_runtime::kafka::KafkaArgs;
use chorus_schemas::AnyEvent;

use crate::{RoleCommand, free_port, repo_root, service_port};

/// Settings for the shared local server with a fresh database for this test.
pub fn shared_clickhouse(name: &str) -> ClickHouseArgs {
    let id = uuid::Uuid::now_v7().simple().to_string();
    ClickHouseArgs {
        clickhouse_url: format!(
            "http://127.0.0.1:{}",
            service_port("CLICKHOUSE_HTTP_PORT", 8123)
        ),
        clickhouse_database: format!("test_{name}_{}", &id[id.len() - 10..]),
        ..ClickHouseArgs::default()
    }
}

/// A ClickHouse server owned by one test.
pub struct PrivateClickHouse {
    pub http_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateClickHouse {
    /// Starts a server under `target/test-clickhouse/<name>-<id>` and waits until it answers.
    pub fn start(name: &str) -> anyhow::Result<Self> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let dir = repo_root()
            .join("target/test-clickhouse")
            .join(format!("{name}-{}", &id[id.len() - 8..]));
        for sub in ["data", "tmp", "user_files", "format_schemas", "logs"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let http_port = free_port();
        let tcp_port = free_port();
        let template = std::fs::read_to_string(repo_root().join("infra/clickhouse/server.xml"))?;
        let config = template
            .replace("@DIR@", &dir.display().to_string())
            .replace("@HTTP_PORT@", &http_port.to_string())
            .replace("@TCP_PORT@", &tcp_port.to_string());
        std::fs::write(dir.join("config.xml"), config)?;
        std::fs::copy(
            repo_root().join("infra/clickhouse/users.xml"),
            dir.join("users.xml"),
        )?;
        let mut server = PrivateClickHouse {
            http_port,
            dir,
            child: None,
        };
        server.start_again()?;
        Ok(server)
    }

    /// Starts the stopped server again (same data).
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        let bin = [
            "/usr/sbin/clickhouse-server",
            "/usr/bin/clickhouse-server",
            "/usr/bin/clickhouse",
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .ok_or_else(|| anyhow::anyhow!("clickhouse-server is not installed"))?;
        let log = std::fs::File::create(self.dir.join("logs/stdout.log"))?;
        let mut command = Command::new(bin);
        if bin.ends_with("/clickhouse") {
            command.arg("server");
        }
        let child = command
            .arg(format!(
                "--config-file={}",
                self.dir.join("config.xml").display()
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok((200, _)) = crate::http_get(self.http_port, "/ping") {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "private clickhouse did not answer on {} (logs in {})",
                self.http_port,
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL after 30 s).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            crate::terminate(&mut child, Duration::from_secs(30))?;
        }
        Ok(())
    }

    /// Connection settings for `database` on this server.
    pub fn args(&self, database: &str) -> ClickHouseArgs {
        ClickHouseArgs {
            clickhouse_url: format!("http://127.0.0.1:{}", self.http_port),
            clickhouse_database: database.to_owned(),
            ..ClickHouseArgs::default()
        }
    }
}

impl Drop for PrivateClickHouse {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The environment `chorus sink clickhouse` needs for `ch`.
pub fn sink_env(ch: &ClickHouseArgs) -> Vec<(&'static str, String)> {
    vec![
        ("CHORUS_CLICKHOUSE_URL", ch.clickhouse_url.clone()),
        ("CHORUS_CLICKHOUSE_DATABASE", ch.clickhouse_database.clone()),
    ]
}

/// Starts `chorus sink clickhouse` into `ch` (short batches, fast retries).
pub fn spawn_sink(kafka: &KafkaArgs, ch: &ClickHouseArgs, log: &str, extra: &[&str]) -> Child {
    let env = sink_env(ch);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let role = RoleCommand::new(&["sink", "clickhouse"])
        .instance_id("sink-test")
        .metrics_addr("127.0.0.1:0")
        .args(["--batch-interval-ms", "300", "--max-backoff-ms", "1000"])
        .args(extra);
    crate::spawn_role_with_env(kafka, log, &role, &env).unwrap()
}

/// Rows per table as loaded (FINAL: each event id once).
pub async fn final_counts(client: &::clickhouse::Client) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for table in tables().unwrap() {
        let n = query_u64(client, &format!("SELECT count() FROM {} FINAL", table.name))
            .await
            .unwrap_or(0);
        counts.insert(table.name.to_owned(), n);
    }
    counts
}

/// Rows inserted so far (replays included), from the active parts.
pub async fn raw_rows(client: &::clickhouse::Client, database: &str) -> u64 {
    query_u64(
        client,
        &format!("SELECT sum(rows) FROM system.parts WHERE database = '{database}' AND active AND table != 'schema_migrations'"),
    )
    .await
    .unwrap_or(0)
}

/// Distinct event ids per table name.
pub fn expected_counts(events: &[AnyEvent]) -> BTreeMap<String, u64> {
    let mut ids: BTreeMap<String, HashSet<uuid::Uuid>> = BTreeMap::new();
    for table in tables().unwrap() {
        ids.insert(table.name.to_owned(), HashSet::new());
    }
    for event in events {
        let table = table_for(event.type_name()).unwrap();
        ids.get_mut(table.name).unwrap().insert(event.id());
    }
    ids.into_iter().map(|(k, v)| (k, v.len() as u64)).collect()
}
