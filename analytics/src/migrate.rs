//! Versioned ClickHouse migrations (`infra/clickhouse/migrations/NNNN_name.sql`, built
//! into the binary). `chorus migrate` applies the pending ones in order and records each
//! in `schema_migrations` with a checksum of its text; an applied migration whose text
//! changed is refused. A migration may say `-- requires: <major>.<minor>` on its first
//! lines: on an older server it is skipped (and not recorded, so an upgrade applies it).

use alloy_primitives::keccak256;

use crate::clickhouse::{ClickHouseArgs, ClickHouseError, execute, query_rows};

/// One migration file.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub text: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "event_tables",
        text: include_str!("../../infra/clickhouse/migrations/0001_event_tables.sql"),
    },
    Migration {
        version: 2,
        name: "views",
        text: include_str!("../../infra/clickhouse/migrations/0002_views.sql"),
    },
    Migration {
        version: 3,
        name: "analyst_user",
        text: include_str!("../../infra/clickhouse/migrations/0003_analyst_user.sql"),
    },
    Migration {
        version: 4,
        name: "session_tables",
        text: include_str!("../../infra/clickhouse/migrations/0004_session_tables.sql"),
    },
    Migration {
        version: 5,
        name: "agent_call_trigger_author",
        text: include_str!("../../infra/clickhouse/migrations/0005_agent_call_trigger_author.sql"),
    },
];

impl Migration {
    /// Keccak-256 of the migration text, as hex.
    pub fn checksum(&self) -> String {
        format!("{:x}", keccak256(self.text.as_bytes()))
    }

    /// The server version the migration needs, from a `-- requires: X.Y` line.
    pub fn requires(&self) -> Option<(u32, u32)> {
        self.text
            .lines()
            .take_while(|l| l.starts_with("--"))
            .find_map(|l| l.trim_start_matches('-').trim().strip_prefix("requires:"))
            .and_then(|v| parse_version(v.trim()))
    }

    /// The statements, with `{{name}}` placeholders filled from `values`.
    pub fn statements(&self, values: &[(&str, String)]) -> Result<Vec<String>, MigrateError> {
        let mut text: String = self
            .text
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        for (name, value) in values {
            text = text.replace(&format!("{{{{{name}}}}}"), value);
        }
        if let Some(start) = text.find("{{") {
            let placeholder: String = text[start..].chars().take_while(|c| *c != '}').collect();
            return Err(MigrateError::MissingValue {
                version: self.version,
                placeholder: format!("{placeholder}}}}}"),
            });
        }
        Ok(text
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split('.');
    let major = parts.next()?.trim().parse().ok()?;
    let minor = parts.next().unwrap_or("0").trim().parse().ok()?;
    Some((major, minor))
}

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    ClickHouse(#[from] ClickHouseError),
    #[error(
        "migration {version} was changed after it was applied (recorded checksum {recorded}, file {file}): add a new migration instead"
    )]
    Changed {
        version: u32,
        recorded: String,
        file: String,
    },
    #[error("migration {version} needs {placeholder} (set CHORUS_ANALYST_PASSWORD)")]
    MissingValue { version: u32, placeholder: String },
    #[error("the server version {0:?} cannot be read")]
    Version(String),
}

/// What `migrate` did with each migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    AlreadyApplied,
    Skipped { needs: (u32, u32) },
}

/// Applies every pending migration to the database of `args` (created if missing).
/// `analyst_password` fills `{{analyst_password}}` (only migrations that use it need it).
pub async fn migrate(
    args: &ClickHouseArgs,
    analyst_password: Option<&str>,
) -> Result<Vec<(u32, &'static str, Outcome)>, MigrateError> {
    let database = &args.clickhouse_database;
    if !database
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        || database.is_empty()
    {
        return Err(ClickHouseError::Invalid(format!(
            "database name {database:?}: use letters, digits and '_'"
        ))
        .into());
    }
    let server = args.server_client()?;
    let version_text = query_rows(&server, "SELECT version()")
        .await?
        .into_iter()
        .flatten()
        .next()
        .unwrap_or_default();
    let server_version =
        parse_version(&version_text).ok_or_else(|| MigrateError::Version(version_text.clone()))?;
    execute(
        &server,
        &format!("CREATE DATABASE IF NOT EXISTS {database}"),
    )
    .await?;
    let client = args.client()?;
    execute(
        &client,
        "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, checksum String, applied_at DateTime DEFAULT now()) ENGINE = MergeTree() ORDER BY version",
    )
    .await?;
    let applied: Vec<(u32, String)> = query_rows(
        &client,
        "SELECT version, checksum FROM schema_migrations ORDER BY version",
    )
    .await?
    .into_iter()
    .filter_map(|row| Some((row.first()?.parse().ok()?, row.get(1)?.clone())))
    .collect();
    let mut values = vec![("database", database.clone())];
    if let Some(password) = analyst_password {
        values.push(("analyst_password", sql_string(password)));
    }
    let mut outcomes = Vec::new();
    for migration in MIGRATIONS {
        if let Some((_, recorded)) = applied.iter().find(|(v, _)| *v == migration.version) {
            if *recorded != migration.checksum() {
                return Err(MigrateError::Changed {
                    version: migration.version,
                    recorded: recorded.clone(),
                    file: migration.checksum(),
                });
            }
            outcomes.push((migration.version, migration.name, Outcome::AlreadyApplied));
            continue;
        }
        if let Some(needs) = migration.requires()
            && server_version < needs
        {
            tracing::info!(version = migration.version, name = migration.name, ?needs, server = %version_text, "migration skipped: the server is older than it needs");
            outcomes.push((
                migration.version,
                migration.name,
                Outcome::Skipped { needs },
            ));
            continue;
        }
        for statement in migration.statements(&values)? {
            execute(&client, &statement).await?;
        }
        execute(
            &client,
            &format!(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ({}, {}, {})",
                migration.version,
                sql_string(migration.name),
                sql_string(&migration.checksum())
            ),
        )
        .await?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "migration applied"
        );
        outcomes.push((migration.version, migration.name, Outcome::Applied));
    }
    Ok(outcomes)
}

/// A SQL string literal.
pub fn sql_string(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_parse() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
            let values = [
                ("database", "chorus".to_owned()),
                ("analyst_password", sql_string("x")),
            ];
            assert!(!m.statements(&values).unwrap().is_empty());
        }
        assert_eq!(MIGRATIONS[2].requires(), Some((20, 5)));
        assert_eq!(MIGRATIONS[0].requires(), None);
    }

    #[test]
    fn a_missing_secret_is_named() {
        let error = MIGRATIONS[2]
            .statements(&[("database", "chorus".into())])
            .unwrap_err();
        assert!(
            error.to_string().contains("{{analyst_password}}"),
            "{error}"
        );
    }

    #[test]
    fn sql_strings_are_escaped() {
        assert_eq!(sql_string("a'b\\"), "'a\\'b\\\\'");
    }
}
