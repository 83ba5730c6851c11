//! HAProxy's stats socket: `show stat`, parsed by column name.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// One row of `show stat`, the columns the bench uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServerStat {
    /// `pxname`: the frontend or backend.
    pub proxy: String,
    /// `svname`: the server, or `FRONTEND`/`BACKEND`.
    pub server: String,
    /// `status`: `UP`, `DOWN`, `UP 1/1` (going down), `DOWN 1/2` (going up)…
    pub status: String,
    /// `check_status`: the last health check (`L7OK`, `L7STS`, `L4CON`…).
    pub check_status: String,
    /// `wretr`: connects retried.
    pub retries: u64,
    /// `wredis`: requests sent to another server after a failed connect.
    pub redispatches: u64,
    /// `econ`: connects that failed for good.
    pub connect_errors: u64,
    /// `eresp`: responses that failed (the server closed or reset mid-way).
    pub response_errors: u64,
    /// `chkdown`: times the server went from UP to DOWN.
    pub went_down: u64,
}

impl ServerStat {
    /// Fully up, after a successful check.
    pub fn is_up(&self) -> bool {
        self.status == "UP" && self.check_status.starts_with("L7OK")
    }
}

/// Sends one command to the socket and reads the answer (the socket closes
/// after one command in its default, non-interactive mode).
pub(super) async fn query(socket: &Path, command: &str) -> anyhow::Result<String> {
    tokio::time::timeout(Duration::from_secs(2), async {
        let mut stream = UnixStream::connect(socket)
            .await
            .with_context(|| format!("connecting to {}", socket.display()))?;
        stream.write_all(format!("{command}\n").as_bytes()).await?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await?;
        Ok(text)
    })
    .await
    .context("haproxy's stats socket did not answer within 2s")?
}

/// Parses `show stat` CSV: a `# ` header line names the columns.
pub(super) fn parse(text: &str) -> anyhow::Result<Vec<ServerStat>> {
    let mut lines = text.lines();
    let header = lines
        .next()
        .and_then(|l| l.strip_prefix("# "))
        .context("`show stat` answered without a header")?;
    let columns: Vec<&str> = header.split(',').collect();
    let index = |name: &str| columns.iter().position(|c| *c == name);
    let Some(proxy) = index("pxname") else {
        bail!("`show stat` has no pxname column");
    };
    let field = |row: &[&str], name: &str| -> String {
        index(name)
            .and_then(|i| row.get(i))
            .map_or_else(String::new, |v| (*v).to_owned())
    };
    let count = |row: &[&str], name: &str| field(row, name).parse().unwrap_or(0);
    Ok(lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let row: Vec<&str> = line.split(',').collect();
            ServerStat {
                proxy: row.get(proxy).copied().unwrap_or_default().to_owned(),
                server: field(&row, "svname"),
                status: field(&row, "status"),
                check_status: field(&row, "check_status"),
                retries: count(&row, "wretr"),
                redispatches: count(&row, "wredis"),
                connect_errors: count(&row, "econ"),
                response_errors: count(&row, "eresp"),
                went_down: count(&row, "chkdown"),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_by_column_name() {
        let text = "# pxname,svname,econ,eresp,wretr,wredis,status,chkdown,check_status,\n\
                    instances,a,0,2,5,3,UP,1,L7OK,\n\
                    instances,b,0,0,0,0,DOWN 1/2,0,L4CON,\n\n";
        let rows = parse(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].server, "a");
        assert_eq!((rows[0].retries, rows[0].redispatches), (5, 3));
        assert_eq!(rows[0].response_errors, 2);
        assert!(rows[0].is_up());
        assert!(!rows[1].is_up());
    }

    #[test]
    fn a_headless_answer_is_an_error() {
        assert!(parse("Unknown command\n").is_err());
    }
}
