//! The command line of a long-running role, for whatever starts roles as processes (the
//! end-to-end tests, the workbench, the demo): the one place that spells the flags every
//! role shares (`ServiceArgs` and the consumer-group settings).

/// `chorus <role> [flags]`, built up flag by flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleCommand {
    args: Vec<String>,
}

impl RoleCommand {
    /// The role's subcommand words, e.g. `["router"]` or `["sink", "clickhouse"]`.
    pub fn new(role: &[&str]) -> Self {
        RoleCommand {
            args: role.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// A member of consumer group `group`, with a stable instance id (it names the Kafka
    /// transactional id, so it must differ between live instances).
    pub fn member(self, group: &str, instance_id: &str) -> Self {
        self.flag("--group", group).instance_id(instance_id)
    }

    /// `--instance-id`, for roles without a group flag.
    pub fn instance_id(self, id: &str) -> Self {
        self.flag("--instance-id", id)
    }

    /// `--metrics-addr` (`127.0.0.1:0` picks a free port).
    pub fn metrics_addr(self, addr: &str) -> Self {
        self.flag("--metrics-addr", addr)
    }

    /// `--session-timeout-ms`: how fast a killed instance's partitions move.
    pub fn session_timeout_ms(self, ms: u64) -> Self {
        self.flag("--session-timeout-ms", &ms.to_string())
    }

    /// Any further flag with its value.
    pub fn flag(mut self, name: &str, value: &str) -> Self {
        self.args.push(name.to_owned());
        self.args.push(value.to_owned());
        self
    }

    /// Further arguments, as given.
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// The arguments after the binary's name.
    pub fn argv(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }
}

/// Lets a spawned `chorus <role>` authenticate as its own role's principal (it picks the
/// user from its subcommand): it gets the deployment's secrets directory, and not the one
/// user the parent may have been given (`CHORUS_KAFKA_USER`, `CHORUS_KAFKA_PASSWORD`,
/// `CHORUS_KAFKA_PASSWORD_FILE`). Without a secrets directory the child inherits the
/// parent's settings. For a tokio command, pass `command.as_std_mut()`.
pub fn with_role_credentials(
    command: &mut std::process::Command,
    kafka: &chorus_runtime::kafka::KafkaArgs,
) {
    if let Some(dir) = &kafka.secrets_dir {
        command
            .env("CHORUS_KAFKA_SECRETS_DIR", dir)
            .env_remove("CHORUS_KAFKA_USER")
            .env_remove("CHORUS_KAFKA_PASSWORD_FILE")
            .env_remove("CHORUS_KAFKA_PASSWORD");
    }
}

#[cfg(test)]
mod tests {
    use super::RoleCommand;

    #[test]
    fn a_role_command_spells_the_shared_flags_once() {
        let command = RoleCommand::new(&["sink", "clickhouse"])
            .member("g", "i-0")
            .metrics_addr("127.0.0.1:0")
            .session_timeout_ms(6000)
            .args(["--batch-interval-ms", "300"]);
        assert_eq!(
            command.argv(),
            [
                "sink",
                "clickhouse",
                "--group",
                "g",
                "--instance-id",
                "i-0",
                "--metrics-addr",
                "127.0.0.1:0",
                "--session-timeout-ms",
                "6000",
                "--batch-interval-ms",
                "300"
            ]
        );
    }
}
