//! A Kafka broker owned by one test, for faults that would disturb every other test on
//! the shared broker (stopping and restarting it). It runs the Kafka that
//! `infra/scripts/install.sh kafka` installed, single node in KRaft mode like the shared
//! one, on free loopback ports, with its data under `target/test-kafka/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chorus_runtime::kafka::KafkaArgs;

use crate::{free_port, repo_root};

/// A private single-node broker; dropped, it is killed and its data deleted.
pub struct PrivateKafka {
    pub port: u16,
    dir: PathBuf,
    classpath: String,
    child: Option<Child>,
}

/// Where `install.sh kafka` put Kafka's jars (`$CHORUS_HOME/kafka-<version>/libs`).
fn kafka_libs() -> anyhow::Result<PathBuf> {
    let version = std::env::var("KAFKA_VERSION").unwrap_or_else(|_| "4.1.1".into());
    let libs = crate::chorus_home().join(format!("kafka-{version}/libs"));
    anyhow::ensure!(
        libs.is_dir(),
        "Kafka is not installed at {} (run infra/scripts/install.sh kafka)",
        libs.display()
    );
    Ok(libs)
}

impl PrivateKafka {
    /// Formats a fresh log directory and starts the broker; returns once it accepts
    /// connections.
    pub fn start(name: &str) -> anyhow::Result<Self> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let dir = repo_root()
            .join("target/test-kafka")
            .join(format!("{name}-{}", &id[id.len() - 8..]));
        std::fs::create_dir_all(&dir)?;
        let port = free_port();
        let controller = free_port();
        // The same settings and users as the local broker (infra/scripts/start.sh), on
        // free ports: SASL/SCRAM, the StandardAuthorizer, deny by default.
        let auth = |args: &[&str]| -> anyhow::Result<()> {
            let output = Command::new("bash")
                .arg(repo_root().join("infra/scripts/kafka-auth.sh"))
                .args(args)
                .output()?;
            anyhow::ensure!(
                output.status.success(),
                "kafka-auth.sh {} failed: {}",
                args.first().copied().unwrap_or_default(),
                String::from_utf8_lossy(&output.stderr)
            );
            Ok(())
        };
        let properties = dir.join("server.properties").display().to_string();
        let logs = dir.join("logs").display().to_string();
        auth(&[
            "config",
            &properties,
            &port.to_string(),
            &controller.to_string(),
            &logs,
            "4",
        ])?;
        auth(&["format", &properties, "chorus-test-cluster-0001"])?;
        let classpath = format!("{}/*", kafka_libs()?.display());
        let mut broker = PrivateKafka {
            port,
            dir,
            classpath,
            child: None,
        };
        broker.start_again()?;
        Ok(broker)
    }

    fn java(&self) -> Command {
        let mut command = Command::new("java");
        command
            .args(["-Xms256m", "-Xmx512m", "-XX:+UseSerialGC"])
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                repo_root().join("infra/kafka/log4j2.xml").display()
            ))
            .arg("-cp")
            .arg(&self.classpath);
        command
    }

    /// Starts the stopped broker again on the same ports and data.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))?;
        let child = self
            .java()
            .arg("kafka.Kafka")
            .arg(self.dir.join("server.properties"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(180);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                anyhow::bail!(
                    "the private broker exited ({status}); log in {}",
                    self.log().display()
                );
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the private broker did not listen on {} (log in {})",
                self.port,
                self.log().display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// Stops the broker cleanly (SIGTERM, SIGKILL after 60 s).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            crate::terminate(&mut child, Duration::from_secs(60))?;
        }
        Ok(())
    }

    /// Kafka settings for a test on this broker, under a fresh topic prefix.
    pub fn args(&self, name: &str) -> KafkaArgs {
        KafkaArgs {
            brokers: format!("127.0.0.1:{}", self.port),
            ..crate::test_kafka(name)
        }
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("broker.log")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
