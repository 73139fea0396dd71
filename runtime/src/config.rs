//! Configuration: every setting is a flag, an environment variable (`CHORUS_*`, shown
//! by `--help`) and a key of an optional TOML file, with that precedence:
//! flag > environment > file > built-in default.
//!
//! The file is named by `--config <FILE>` or `CHORUS_CONFIG`. Top-level keys apply to
//! every subcommand that has a flag of that name; a table named after a subcommand
//! (`[ingest]`, `[router]`, ...) applies to that subcommand only. Keys are the long flag
//! names (`brokers`, `metrics-addr`; `_` works for `-`). An unknown key is an error.
//!
//! ```toml
//! brokers = "kafka-1:9092,kafka-2:9092"
//! topic-prefix = ""
//! [router]
//! batch-max = 5000
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{ArgMatches, Command, Parser};

/// A configuration file problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("config file {path}: key {key:?} is not a setting of {scope}")]
    UnknownKey {
        path: PathBuf,
        key: String,
        scope: String,
    },
    #[error(
        "config file {path}: key {key:?} has an unsupported value (use a string, number, boolean or array of them)"
    )]
    BadValue { path: PathBuf, key: String },
}

/// Parses the process arguments into `P`, layering the config file under env and flags.
/// Prints help or errors and exits like clap does.
pub fn parse<P: Parser>() -> P {
    match try_parse_from::<P, _, _>(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(ParseError::Clap(e)) => e.exit(),
        Err(ParseError::Config(e)) => {
            eprintln!("error: {e}");
            std::process::exit(2)
        }
    }
}

/// Why parsing failed.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error(transparent)]
    Clap(#[from] clap::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Parses `args` (first item is the program name) into `P` with the config file layer.
pub fn try_parse_from<P, I, T>(args: I) -> Result<P, ParseError>
where
    P: Parser,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut command = P::command();
    if let Some(path) = config_path(&args) {
        let table = load(&path)?;
        command = apply_table(command, &table, &path)?;
    }
    let matches: ArgMatches = command.try_get_matches_from(args)?;
    Ok(P::from_arg_matches(&matches)?)
}

/// `--config FILE`, `--config=FILE` or `CHORUS_CONFIG`.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let arg = arg.to_string_lossy();
        if arg == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(value) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(value));
        }
    }
    std::env::var_os("CHORUS_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn load(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    text.parse::<toml::Table>()
        .map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })
}

fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Applies the keys of `table` as defaults of `command`'s args; tables named after
/// subcommands recurse. At the top level, scalar keys also flow into every subcommand.
fn apply_table(
    mut command: Command,
    table: &toml::Table,
    path: &Path,
) -> Result<Command, ConfigError> {
    let scope = command.get_name().to_owned();
    let sub_names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for (key, value) in table {
        if let toml::Value::Table(sub_table) = value {
            if !sub_names.contains(key) {
                return Err(ConfigError::UnknownKey {
                    path: path.into(),
                    key: key.clone(),
                    scope,
                });
            }
            let mut result = Ok(());
            command = command.mut_subcommand(key, |sub| {
                match apply_table(sub.clone(), sub_table, path) {
                    Ok(updated) => updated,
                    Err(e) => {
                        result = Err(e);
                        sub
                    }
                }
            });
            result?;
            continue;
        }
        let long = key.replace('_', "-");
        if long == "config" {
            continue;
        }
        let values: Vec<String> = match value {
            toml::Value::Array(items) => items.iter().map(scalar).collect::<Option<_>>(),
            other => scalar(other).map(|s| vec![s]),
        }
        .ok_or_else(|| ConfigError::BadValue {
            path: path.into(),
            key: key.clone(),
        })?;
        let (updated, found) = set_default(command, &long, &values);
        command = updated;
        if !found {
            return Err(ConfigError::UnknownKey {
                path: path.into(),
                key: key.clone(),
                scope,
            });
        }
    }
    Ok(command)
}

/// Sets the default of the arg with long name `long` here and in every subcommand.
fn set_default(mut command: Command, long: &str, values: &[String]) -> (Command, bool) {
    let mut found = false;
    let id = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .map(|a| a.get_id().clone());
    if let Some(id) = id {
        found = true;
        let values: Vec<clap::builder::OsStr> = values
            .iter()
            .map(|v| clap::builder::OsStr::from(v.clone()))
            .collect();
        command = command.mut_arg(id, |arg| arg.default_values(values));
    }
    let sub_names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in sub_names {
        let mut sub_found = false;
        command = command.mut_subcommand(&name, |sub| {
            let (updated, f) = set_default(sub, long, values);
            sub_found = f;
            updated
        });
        found |= sub_found;
    }
    (command, found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Parser, Subcommand};

    #[derive(Debug, Parser)]
    struct Cli {
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[arg(
            long,
            env = "CHORUS_TEST_BROKERS",
            default_value = "builtin:9092",
            global = true
        )]
        brokers: String,
        #[command(subcommand)]
        command: Cmd,
    }

    #[derive(Debug, Subcommand)]
    enum Cmd {
        Router {
            #[arg(long, default_value_t = 100)]
            batch_max: usize,
        },
    }

    fn write(text: &str) -> tempfile_path::TempPath {
        tempfile_path::TempPath::new(text)
    }

    mod tempfile_path {
        pub struct TempPath(pub std::path::PathBuf);
        impl TempPath {
            pub fn new(text: &str) -> Self {
                let path = std::env::temp_dir()
                    .join(format!("chorus-config-{}.toml", uuid::Uuid::now_v7()));
                std::fs::write(&path, text).unwrap();
                TempPath(path)
            }
        }
        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn file_sets_defaults_and_flags_win() {
        let file = write("brokers = \"file:9092\"\n[router]\nbatch_max = 7\n");
        let path = file.0.to_string_lossy().to_string();
        let cli: Cli = try_parse_from(["chorus", "--config", &path, "router"]).unwrap();
        assert_eq!(cli.brokers, "file:9092");
        let Cmd::Router { batch_max } = cli.command;
        assert_eq!(batch_max, 7);

        let cli: Cli = try_parse_from([
            "chorus",
            "--config",
            &path,
            "router",
            "--batch-max",
            "9",
            "--brokers",
            "flag:1",
        ])
        .unwrap();
        assert_eq!(cli.brokers, "flag:1");
        let Cmd::Router { batch_max } = cli.command;
        assert_eq!(batch_max, 9);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let file = write("brokerz = \"x\"\n");
        let path = file.0.to_string_lossy().to_string();
        let err = try_parse_from::<Cli, _, _>(["chorus", "--config", &path, "router"]).unwrap_err();
        assert!(err.to_string().contains("brokerz"), "{err}");
        let file = write("[nosuch]\na = 1\n");
        let path = file.0.to_string_lossy().to_string();
        assert!(try_parse_from::<Cli, _, _>(["chorus", "--config", &path, "router"]).is_err());
    }

    #[test]
    fn builtin_default_without_file() {
        let cli: Cli = try_parse_from(["chorus", "router"]).unwrap();
        assert_eq!(cli.brokers, "builtin:9092");
    }
}
