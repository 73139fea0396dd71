//! How to reach ClickHouse, and the few raw calls the sink, the migrations and the
//! tests need (`TabSeparated` text results: every ClickHouse release speaks it).

use clap::Args;

/// ClickHouse connection settings. The password comes from the environment or a file,
/// never from a flag, and is never logged.
#[derive(Debug, Clone, Args)]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP endpoint.
    #[arg(
        long,
        env = "CHORUS_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    pub clickhouse_url: String,
    /// Database of the Chorus tables (created by `chorus migrate`).
    #[arg(long, env = "CHORUS_CLICKHOUSE_DATABASE", default_value = "chorus")]
    pub clickhouse_database: String,
    /// ClickHouse user (the sink and migrations need one that may write and run DDL).
    #[arg(long, env = "CHORUS_CLICKHOUSE_USER", default_value = "default")]
    pub clickhouse_user: String,
    /// File holding the user's password (first line). Otherwise the password is read
    /// from CHORUS_CLICKHOUSE_PASSWORD; there is no flag for it.
    #[arg(long, env = "CHORUS_CLICKHOUSE_PASSWORD_FILE")]
    pub clickhouse_password_file: Option<std::path::PathBuf>,
}

impl Default for ClickHouseArgs {
    fn default() -> Self {
        ClickHouseArgs {
            clickhouse_url: "http://127.0.0.1:8123".into(),
            clickhouse_database: "chorus".into(),
            clickhouse_user: "default".into(),
            clickhouse_password_file: None,
        }
    }
}

/// A ClickHouse failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum ClickHouseError {
    #[error("{context}: {source}")]
    Client {
        context: String,
        #[source]
        source: clickhouse::error::Error,
    },
    #[error("reading the ClickHouse password file {path}: {source}")]
    PasswordFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl ClickHouseError {
    pub(crate) fn client(
        context: impl Into<String>,
    ) -> impl FnOnce(clickhouse::error::Error) -> Self {
        let context = context.into();
        move |source| ClickHouseError::Client { context, source }
    }
}

impl ClickHouseArgs {
    fn password(&self) -> Result<Option<String>, ClickHouseError> {
        if let Some(path) = &self.clickhouse_password_file {
            let text =
                std::fs::read_to_string(path).map_err(|source| ClickHouseError::PasswordFile {
                    path: path.clone(),
                    source,
                })?;
            return Ok(Some(text.lines().next().unwrap_or_default().to_owned()));
        }
        Ok(std::env::var("CHORUS_CLICKHOUSE_PASSWORD").ok())
    }

    /// A client without a database (for `CREATE DATABASE`).
    pub fn server_client(&self) -> Result<clickhouse::Client, ClickHouseError> {
        let mut client = clickhouse::Client::default()
            .with_url(&self.clickhouse_url)
            .with_user(&self.clickhouse_user)
            // ClickHouse 18.16 has no RowBinaryWithNamesAndTypes.
            .with_validation(false);
        if let Some(password) = self.password()? {
            client = client.with_password(password);
        }
        Ok(client)
    }

    /// A client on the Chorus database.
    pub fn client(&self) -> Result<clickhouse::Client, ClickHouseError> {
        Ok(self
            .server_client()?
            .with_database(&self.clickhouse_database))
    }
}

/// Runs a statement that returns nothing.
pub async fn execute(client: &clickhouse::Client, sql: &str) -> Result<(), ClickHouseError> {
    client
        .query_raw(sql)
        .execute()
        .await
        .map_err(ClickHouseError::client(format!(
            "running `{}`",
            first_line(sql)
        )))
}

/// Runs a query and returns its rows as text cells (`TabSeparated`, unescaped; NULL is
/// `\N` in that format and becomes the empty string here).
pub async fn query_rows(
    client: &clickhouse::Client,
    sql: &str,
) -> Result<Vec<Vec<String>>, ClickHouseError> {
    let bytes = client
        .query_raw(sql)
        .fetch_bytes("TabSeparated")
        .map_err(ClickHouseError::client(format!(
            "querying `{}`",
            first_line(sql)
        )))?
        .collect()
        .await
        .map_err(ClickHouseError::client(format!(
            "reading `{}`",
            first_line(sql)
        )))?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(text
        .lines()
        .map(|line| line.split('\t').map(unescape_tsv).collect())
        .collect())
}

/// One number from a query such as `SELECT count() FROM t`.
pub async fn query_u64(client: &clickhouse::Client, sql: &str) -> Result<u64, ClickHouseError> {
    let rows = query_rows(client, sql).await?;
    rows.first()
        .and_then(|r| r.first())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ClickHouseError::Invalid(format!("`{sql}` did not return a number")))
}

fn first_line(sql: &str) -> &str {
    sql.trim().lines().next().unwrap_or_default()
}

fn unescape_tsv(cell: &str) -> String {
    if cell == "\\N" {
        return String::new();
    }
    if !cell.contains('\\') {
        return cell.to_owned();
    }
    let mut out = String::with_capacity(cell.len());
    let mut chars = cell.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn tsv_cells_are_unescaped() {
        assert_eq!(super::unescape_tsv("a\\tb\\\\c"), "a\tb\\c");
        assert_eq!(super::unescape_tsv("\\N"), "");
    }
}
