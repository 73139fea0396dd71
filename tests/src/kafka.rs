//! Kafka brokers owned by one test, for faults that would disturb every other test on
//! the shared broker (stopping, killing and restarting it): a single node in KRaft mode
//! like the shared one, or a three-node cluster. They run the Kafka that
//! `infra/scripts/install.sh kafka` installed, configured by `infra/scripts/kafka-auth.sh`
//! (the template the local broker uses), on free loopback ports, with their data under
//! `target/test-kafka/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chorus_runtime::kafka::KafkaArgs;

use crate::{free_port, repo_root};

/// A private single-node broker; dropped, it is killed and its data deleted.
pub struct PrivateKafka {
    pub port: u16,
    node: Node,
}

/// A private cluster of brokers (three, for the cluster fault test), each its own JVM
/// and KRaft controller, replication 3 and `min.insync.replicas` 2 (the `cluster`
/// environment of `infra/topics/topics.toml`); dropped, every node is killed and the
/// data deleted.
pub struct PrivateCluster {
    nodes: Vec<Node>,
    root: PathBuf,
}

/// One broker process of a private broker or cluster: its ports, files and process.
struct Node {
    id: i32,
    port: u16,
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

/// `infra/scripts/kafka-auth.sh <args>`: the same settings and users as the local broker
/// (SASL/SCRAM, the StandardAuthorizer, deny by default).
fn kafka_auth(args: &[&str]) -> anyhow::Result<()> {
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
}

/// A fresh directory under `target/test-kafka/`.
fn fresh_dir(name: &str) -> anyhow::Result<PathBuf> {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let dir = repo_root()
        .join("target/test-kafka")
        .join(format!("{name}-{}", &id[id.len() - 8..]));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

impl Node {
    /// Renders the node's config (`voters` empty for a single node) and formats its storage.
    fn prepare(
        id: i32,
        dir: PathBuf,
        port: u16,
        controller: u16,
        voters: &str,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let properties = dir.join("server.properties").display().to_string();
        let logs = dir.join("logs").display().to_string();
        let (port_text, controller_text, id_text) =
            (port.to_string(), controller.to_string(), id.to_string());
        let mut args = vec![
            "config",
            &properties,
            &port_text,
            &controller_text,
            &logs,
            "4",
        ];
        if !voters.is_empty() {
            args.extend([id_text.as_str(), voters]);
        }
        kafka_auth(&args)?;
        kafka_auth(&["format", &properties, "chorus-test-cluster-0001"])?;
        Ok(Node {
            id,
            port,
            dir,
            classpath: format!("{}/*", kafka_libs()?.display()),
            child: None,
        })
    }

    fn log(&self) -> PathBuf {
        self.dir.join("broker.log")
    }

    /// Starts the JVM (returns at once).
    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.log())?;
        let child = Command::new("java")
            .args(["-Xms256m", "-Xmx512m", "-XX:+UseSerialGC"])
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                repo_root().join("infra/kafka/log4j2.xml").display()
            ))
            .arg("-cp")
            .arg(&self.classpath)
            .arg("kafka.Kafka")
            .arg(self.dir.join("server.properties"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the node listens; fails at once if its process died.
    fn wait_listening(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                anyhow::bail!(
                    "broker {} exited ({status}); log in {}",
                    self.id,
                    self.log().display()
                );
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "broker {} did not listen on {} (log in {})",
                self.id,
                self.port,
                self.log().display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl PrivateKafka {
    /// Formats a fresh log directory and starts the broker; returns once it accepts
    /// connections.
    pub fn start(name: &str) -> anyhow::Result<Self> {
        let port = free_port();
        let mut node = Node::prepare(1, fresh_dir(name)?, port, free_port(), "")?;
        node.spawn()?;
        node.wait_listening(Duration::from_secs(180))?;
        Ok(PrivateKafka { port, node })
    }

    /// Starts the stopped broker again on the same ports and data.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        self.node.spawn()?;
        self.node.wait_listening(Duration::from_secs(180))
    }

    /// Stops the broker cleanly (SIGTERM, SIGKILL after 60 s).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.node.child.take() {
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
        self.node.log()
    }

    pub fn dir(&self) -> &Path {
        &self.node.dir
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        self.node.kill();
        let _ = std::fs::remove_dir_all(&self.node.dir);
    }
}

impl PrivateCluster {
    /// Formats `size` nodes (node ids 1..=size, a static controller quorum of all of
    /// them), starts them and returns once each accepts connections.
    pub fn start(name: &str, size: i32) -> anyhow::Result<Self> {
        let root = fresh_dir(name)?;
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let voters = ports
            .iter()
            .zip(1..)
            .map(|((_, controller), id)| format!("{id}@127.0.0.1:{controller}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for ((port, controller), id) in ports.into_iter().zip(1..) {
            let dir = root.join(format!("node-{id}"));
            nodes.push(Node::prepare(id, dir, port, controller, &voters)?);
        }
        let mut cluster = PrivateCluster { nodes, root };
        // All at once: a controller quorum needs a majority before any node is ready.
        for node in &mut cluster.nodes {
            node.spawn()?;
        }
        for node in &mut cluster.nodes {
            node.wait_listening(Duration::from_secs(300))?;
        }
        Ok(cluster)
    }

    /// The bootstrap list of every node.
    pub fn brokers(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kafka settings for a test on this cluster, under a fresh topic prefix.
    pub fn args(&self, name: &str) -> KafkaArgs {
        KafkaArgs {
            brokers: self.brokers(),
            ..crate::test_kafka(name)
        }
    }

    fn node(&mut self, id: i32) -> anyhow::Result<&mut Node> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .ok_or_else(|| anyhow::anyhow!("no broker {id} in the cluster"))
    }

    /// SIGKILLs broker `id` (no shutdown, no leadership handed over).
    pub fn kill(&mut self, id: i32) -> anyhow::Result<()> {
        self.node(id)?.kill();
        Ok(())
    }

    /// Starts killed broker `id` again on its ports and data; returns once it listens.
    pub fn restart(&mut self, id: i32) -> anyhow::Result<()> {
        let node = self.node(id)?;
        node.spawn()?;
        node.wait_listening(Duration::from_secs(300))
    }

    pub fn log(&self, id: i32) -> Option<PathBuf> {
        self.nodes.iter().find(|n| n.id == id).map(Node::log)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The broker leading `partition` of `topic` (-1 while it has none).
pub fn leader_of(kafka: &KafkaArgs, topic: &str, partition: i32) -> anyhow::Result<i32> {
    Ok(partition_states(kafka, topic)?
        .into_iter()
        .find(|p| p.partition == partition)
        .map_or(-1, |p| p.leader))
}

/// One partition's leader, replicas and in-sync replicas, from the cluster's metadata.
#[derive(Debug, Clone)]
pub struct PartitionState {
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub in_sync: Vec<i32>,
}

/// The partitions of `topic` (internal topics included: the tests' admin may see them).
pub fn partition_states(kafka: &KafkaArgs, topic: &str) -> anyhow::Result<Vec<PartitionState>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = kafka.client_config("chorus-test-metadata").create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions())
        .map(|p| PartitionState {
            partition: p.id(),
            leader: p.leader(),
            replicas: p.replicas().to_vec(),
            in_sync: p.isr().to_vec(),
        })
        .collect())
}

/// The partition of `__transaction_state` that holds `transactional_id` (Kafka's
/// `abs(transactionalId.hashCode) % partitions`, with Java's `String.hashCode`): its
/// leader is the transaction coordinator of that id.
pub fn transaction_state_partition(transactional_id: &str, partitions: i32) -> i32 {
    let hash = transactional_id.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    // Kafka's Utils.abs maps i32::MIN to 0.
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partitions
}

/// The broker coordinating the transactions of `transactional_id`.
pub fn transaction_coordinator(kafka: &KafkaArgs, transactional_id: &str) -> anyhow::Result<i32> {
    let partitions = partition_states(kafka, "__transaction_state")?;
    anyhow::ensure!(
        !partitions.is_empty(),
        "__transaction_state does not exist yet"
    );
    let partition = transaction_state_partition(transactional_id, partitions.len() as i32);
    leader_of(kafka, "__transaction_state", partition)
}

/// Waits until every partition of `topics` has a leader and all its replicas in sync.
pub fn wait_fully_replicated(
    kafka: &KafkaArgs,
    topics: &[String],
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let mut lagging = Vec::new();
        for topic in topics {
            match partition_states(kafka, topic) {
                Ok(states) if !states.is_empty() => {
                    for p in states {
                        if p.leader < 0 || p.in_sync.len() < p.replicas.len() {
                            lagging.push(format!("{topic}/{} isr {:?}", p.partition, p.in_sync));
                        }
                    }
                }
                Ok(_) => lagging.push(format!("{topic}: no partitions")),
                Err(e) => lagging.push(format!("{topic}: {e}")),
            }
        }
        if lagging.is_empty() {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not fully replicated after {within:?}: {}",
            lagging.join("; ")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
