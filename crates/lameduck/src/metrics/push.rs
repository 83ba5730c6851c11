//! The Pushgateway: where the final values go when no scrape came for
//! them (features `metrics` and `http`).

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;

/// The default time a push may take.
pub const DEFAULT_PUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// A Prometheus Pushgateway that receives the final metrics when no scrape
/// came for them in time; see [`Metrics::push`](super::Metrics::push).
///
/// The values go to the group `job/<job>/instance/<instance>` with `PUT`,
/// which replaces whatever the group held, in the Prometheus text format
/// (0.0.4). `job` defaults to the app's name, `instance` to the host's
/// name. Plain `http://` only (no TLS): a Pushgateway is usually a sidecar
/// or a cluster-local service.
///
/// # Examples
///
/// ```
/// use lameduck::metrics::Pushgateway;
///
/// let gw = Pushgateway::new("http://127.0.0.1:9091")
///     .unwrap()
///     .job("orders")
///     .instance("orders-7f9c")
///     .delete_at_start(true);
/// assert_eq!(gw.group_url(), "http://127.0.0.1:9091/metrics/job/orders/instance/orders-7f9c");
///
/// // Without a job, the app's name, once the gateway is given to an app.
/// let gw = Pushgateway::new("http://127.0.0.1:9091").unwrap().instance("a");
/// assert_eq!(gw.group_url(), "http://127.0.0.1:9091/metrics/job/<app>/instance/a");
/// ```
#[derive(Clone)]
pub struct Pushgateway {
    /// `host:port`, for the connection and the `Host` header.
    authority: String,
    /// Any path before `/metrics`.
    prefix: String,
    job: Option<String>,
    instance: String,
    pub(super) timeout: Duration,
    delete_at_start: bool,
    /// The job, once the app is known: the app's name unless set.
    resolved_job: Arc<OnceLock<String>>,
}

/// A Pushgateway address that cannot be used, or a push that failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PushError {
    message: String,
}

impl PushError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl Pushgateway {
    /// A Pushgateway at `url`: `http://HOST:PORT`, optionally with a path
    /// prefix (`http://gw:9091/proxy`).
    ///
    /// # Errors
    ///
    /// When `url` is not `http://` with a host and a port.
    pub fn new(url: &str) -> Result<Self, PushError> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            PushError::new(format!(
                "the Pushgateway URL must start with http:// (no TLS): {url:?}"
            ))
        })?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let port_ok = authority
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(PushError::new(format!(
                "the Pushgateway URL needs a host and a port, like http://127.0.0.1:9091: {url:?}"
            )));
        }
        Ok(Self {
            authority: authority.to_string(),
            prefix: prefix.to_string(),
            job: None,
            instance: hostname(),
            timeout: DEFAULT_PUSH_TIMEOUT,
            delete_at_start: false,
            resolved_job: Arc::new(OnceLock::new()),
        })
    }

    /// The grouping key's `job` (default: the app's name).
    pub fn job(mut self, job: impl Into<String>) -> Self {
        self.job = Some(job.into());
        self
    }

    /// The grouping key's `instance` (default: the host's name).
    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = instance.into();
        self
    }

    /// How long the push may take (default 1 s,
    /// [`DEFAULT_PUSH_TIMEOUT`]); counted in the budget's final scrape
    /// timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether the app deletes its group from the Pushgateway when it
    /// starts (default false), so that the last run's final values do not
    /// stand for this one's once it is scraped directly.
    pub fn delete_at_start(mut self, yes: bool) -> Self {
        self.delete_at_start = yes;
        self
    }

    /// The group's URL; `<app>` stands for the job until the app is known.
    pub fn group_url(&self) -> String {
        match self.resolved_job.get().or(self.job.as_ref()) {
            Some(job) => format!("http://{}{}", self.authority, self.path_for(job)),
            // The placeholder as it reads, not encoded as a job name would be.
            None => format!(
                "http://{}{}/metrics/job/<app>/{}",
                self.authority,
                self.prefix,
                label("instance", &self.instance)
            ),
        }
    }

    fn path_for(&self, job: &str) -> String {
        format!(
            "{}/metrics/{}/{}",
            self.prefix,
            label("job", job),
            label("instance", &self.instance)
        )
    }

    /// Fixes the job: the one set, or the app's name.
    pub(super) fn resolve_job(&self, app: &str) {
        let _ = self
            .resolved_job
            .set(self.job.clone().unwrap_or_else(|| app.to_string()));
    }

    fn path(&self) -> String {
        let job = self.resolved_job.get().or(self.job.as_ref());
        self.path_for(job.map_or("<app>", String::as_str))
    }

    /// Replaces the group's metrics with `body` (Prometheus text).
    pub(super) async fn put(&self, body: String) -> Result<(), PushError> {
        self.send(Method::PUT, body).await
    }

    /// Deletes the group in the background, if asked to at start.
    pub(super) fn delete_if_asked(&self) {
        if !self.delete_at_start {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let url = me.group_url();
            match tokio::time::timeout(me.timeout, me.send(Method::DELETE, String::new())).await {
                Ok(Ok(())) => {
                    tracing::info!(target: "lameduck::metrics", url = %url, "the last run's metrics deleted from the Pushgateway");
                }
                Ok(Err(err)) => {
                    tracing::warn!(target: "lameduck::metrics", url = %url, error = %err, "cannot delete the last run's metrics from the Pushgateway");
                }
                Err(_) => {
                    tracing::warn!(target: "lameduck::metrics", url = %url, "deleting the last run's metrics from the Pushgateway timed out");
                }
            }
        });
    }

    async fn send(&self, method: Method, body: String) -> Result<(), PushError> {
        let fail = |what: &str, err: &dyn fmt::Display| {
            PushError::new(format!("{what} {}: {err}", self.group_url()))
        };
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| fail("cannot connect to", &e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail("cannot talk to", &e))?;
        let conn = tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(self.path())
            .header(header::HOST, &self.authority)
            .header(
                header::CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail("cannot build a request for", &e))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| fail("no answer from", &e));
        conn.abort();
        let resp = resp?;
        if !resp.status().is_success() {
            return Err(PushError::new(format!(
                "{} answered {}",
                self.group_url(),
                resp.status()
            )));
        }
        Ok(())
    }
}

impl fmt::Debug for Pushgateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pushgateway")
            .field("group", &self.group_url())
            .field("timeout", &self.timeout)
            .field("delete_at_start", &self.delete_at_start)
            .finish()
    }
}

/// One label of the grouping key in a path: `name/value`, or, for a
/// value that is not plain, `name@base64/` and the value base64url-encoded
/// (the Pushgateway's way for `/` and empty values).
fn label(name: &str, value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if plain {
        return format!("{name}/{value}");
    }
    if value.is_empty() {
        return format!("{name}@base64/=");
    }
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in value.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    // The Pushgateway wants the padding.
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    format!("{name}@base64/{out}")
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_says_what_is_wrong() {
        let err = Pushgateway::new("https://gw:9091").unwrap_err();
        assert!(err.to_string().contains("http://"), "{err}");
        let err = Pushgateway::new("http://gw").unwrap_err();
        assert!(err.to_string().contains("host and a port"), "{err}");
    }

    #[test]
    fn grouping_values_that_are_not_plain_are_base64url_encoded() {
        assert_eq!(label("job", "orders-1"), "job/orders-1");
        assert_eq!(label("job", "a/b"), "job@base64/YS9i");
        assert_eq!(label("instance", ""), "instance@base64/=");
        let gw = Pushgateway::new("http://gw:9091/proxy/")
            .unwrap()
            .job("j")
            .instance("i");
        assert_eq!(
            gw.group_url(),
            "http://gw:9091/proxy/metrics/job/j/instance/i"
        );
        assert_eq!(gw.path(), "/proxy/metrics/job/j/instance/i");
    }
}
