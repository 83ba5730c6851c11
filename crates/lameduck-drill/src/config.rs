//! The validated description of a drill: what to load, how, and what to do to
//! the server meanwhile.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde::{Deserialize, Serialize};

use crate::Signal;
use crate::dial::Tls;
pub use crate::dial::Trust;

/// The longest drill the engine accepts: it keeps one small record per
/// request, so a bound on time is a bound on memory.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// Everything a [`Drill`](crate::Drill) needs, checked by [`DrillConfig::validate`].
///
/// Start from [`DrillConfig::new`], which fills in the defaults the CLI uses,
/// and change fields; [`Drill::new`](crate::Drill::new) validates.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use lameduck_drill::{DrillConfig, Load, ServerSpec, SignalPlan, Signal};
///
/// let mut config = DrillConfig::new("http://127.0.0.1:8080/").unwrap();
/// config.server = ServerSpec::Spawn { program: "./my-server".into(), args: vec![], log: None };
/// config.load = Load::Concurrency(16);
/// config.duration = Duration::from_secs(5);
/// config.signal = Some(SignalPlan::once(Signal::TERM, Duration::from_secs(2)));
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DrillConfig {
    /// Where the load goes (`http://`, or `https://` with [`tls`](Self::tls)).
    pub url: Uri,
    /// A readiness endpoint to wait for before the load and to poll during it.
    /// Without one the drill waits for `url` to answer 2xx and does not judge
    /// readiness.
    pub ready_url: Option<Uri>,
    /// How long to wait for the server to become ready.
    pub ready_timeout: Duration,
    /// How often to poll `ready_url` during the drill (and while waiting).
    pub ready_interval: Duration,
    /// How often to try a bare TCP connect, to time the listener closing.
    pub connect_probe_interval: Duration,
    /// Closed-loop concurrency or open-loop rate.
    pub load: Load,
    /// Keep-alive, fresh or mixed connections.
    pub connections: ConnectionMode,
    /// HTTP/1.1 or HTTP/2 (prior knowledge over `http://`, offered by ALPN
    /// over `https://`).
    pub http: HttpVersion,
    /// How an `https://` server's certificate is checked; needed (not
    /// [`Trust::Unset`]) when `url` or `ready_url` is `https://`.
    pub tls: Trust,
    /// Method, headers and body of every request.
    pub request: RequestSpec,
    /// Unary gRPC calls instead of plain requests (HTTP/2 only): each is a
    /// `POST` of the message to the method's path, sorted by its
    /// `grpc-status`; `request` then only adds headers.
    pub grpc: Option<GrpcCall>,
    /// How long the load runs.
    pub duration: Duration,
    /// How long one request may take, connect included, before it counts as
    /// a timeout. With a rate, counted from the moment it was due.
    pub timeout: Duration,
    /// What to send, when, and how to judge it; `None` for a plain load test.
    pub signal: Option<SignalPlan>,
    /// How long the signalled server may take to exit (the orchestrator's
    /// `terminationGracePeriodSeconds` or `TimeoutStopSec`).
    pub grace_period: Duration,
    /// The server process: spawned, attached to, or unknown.
    pub server: ServerSpec,
    /// A file holding the PID to signal, read afresh at every signal.
    pub pid_file: Option<PathBuf>,
    /// When set, the report counts the `ok` responses slower than this
    /// ([`Latency::slow`](crate::report::Latency::slow)): a benchmark that
    /// knows its steady-state latency asks how many requests a disturbance
    /// slowed down, which no percentile says.
    pub slow_threshold: Option<Duration>,
    /// The target's flight record (`docs/flight-record.md`), read once the
    /// drill is over so that the report shows the server's phases and
    /// stuck work on the drill's timeline ([`Report::server`](crate::Report::server)).
    /// `{pid}` in the path becomes the first signalled process's id.
    pub flight_record: Option<PathBuf>,
    /// Whether a flight record that cannot be read fails the verdict;
    /// otherwise it is a warning (a skipped condition).
    pub flight_record_required: bool,
}

/// How requests are issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// A fixed number of workers, each sending its next request as soon as
    /// the last one is done (closed loop).
    Concurrency(u32),
    /// A fixed number of requests per second whatever the server does (open
    /// loop), so a stall shows up as latency instead of fewer requests. At
    /// most `max_in_flight` run at once; a request waiting for a slot still
    /// has its latency counted from when it was due.
    Rate {
        /// Requests per second.
        per_second: u32,
        /// Bound on requests in flight (and so on connections and memory).
        max_in_flight: u32,
    },
}

/// How requests use connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionMode {
    /// Reuse connections, as browsers, proxies and most clients do.
    Keepalive,
    /// A new connection for every request (HTTP/1.1 sends `Connection: close`).
    Fresh,
    /// Every other request fresh, the others on keep-alive connections.
    Mixed,
}

/// The HTTP version of the load (readiness probes always use HTTP/1.1).
/// Over `https://` it is the only protocol offered by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2: over cleartext with prior knowledge (h2c), or offered by
    /// ALPN over TLS.
    Http2,
}

impl HttpVersion {
    /// `"1.1"` or `"2"`.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpVersion::Http1 => "1.1",
            HttpVersion::Http2 => "2",
        }
    }
}

/// Method, headers and body sent with every request.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// The method (`GET` by default).
    pub method: Method,
    /// Extra headers; `Host` is filled in from the URL unless set here.
    pub headers: HeaderMap,
    /// The body (empty by default).
    pub body: Bytes,
}

impl Default for RequestSpec {
    fn default() -> Self {
        RequestSpec {
            method: Method::GET,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }
}

impl RequestSpec {
    /// Adds a header given as `Name: value`.
    ///
    /// # Errors
    ///
    /// When the text has no colon or the name or value is not valid HTTP.
    pub fn add_header_line(&mut self, line: &str) -> Result<(), ConfigError> {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| ConfigError::new(format!("header {line:?} is not `Name: value`")))?;
        let name = HeaderName::try_from(name.trim())
            .map_err(|_| ConfigError::new(format!("invalid header name in {line:?}")))?;
        let value = HeaderValue::try_from(value.trim())
            .map_err(|_| ConfigError::new(format!("invalid header value in {line:?}")))?;
        self.headers.append(name, value);
        Ok(())
    }
}

/// One unary gRPC call, sent as every request of the drill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcCall {
    /// `package.Service/Method`, as in the `.proto` file.
    pub method: String,
    /// The request message, encoded (protobuf bytes; empty for an empty
    /// message).
    pub message: Bytes,
}

impl GrpcCall {
    /// A call of `method` (`package.Service/Method`, a leading `/` allowed)
    /// with the encoded `message`.
    ///
    /// # Errors
    ///
    /// When `method` is not `SERVICE/METHOD` with neither part empty, or is
    /// not a valid URI path.
    pub fn new(method: &str, message: impl Into<Bytes>) -> Result<Self, ConfigError> {
        let method = method.strip_prefix('/').unwrap_or(method);
        let valid = method.split_once('/').is_some_and(|(service, name)| {
            !service.is_empty() && !name.is_empty() && !name.contains('/')
        }) && http::uri::PathAndQuery::try_from(format!("/{method}")).is_ok()
            && !method.contains(['?', '#']);
        if !valid {
            return Err(ConfigError::new(format!(
                "--grpc {method:?} is not SERVICE/METHOD (package.Service/Method)"
            )));
        }
        Ok(GrpcCall {
            method: method.to_owned(),
            message: message.into(),
        })
    }

    /// `grpc.health.v1.Health/Check` for `service` (`""`: the server as a
    /// whole).
    pub fn health_check(service: &str) -> Self {
        // HealthCheckRequest { string service = 1; }: field 1, length-delimited.
        let mut message = Vec::with_capacity(service.len() + 6);
        if !service.is_empty() {
            message.push(0x0a);
            let mut len = service.len();
            while len >= 0x80 {
                message.push((len as u8 & 0x7f) | 0x80);
                len >>= 7;
            }
            message.push(len as u8);
            message.extend_from_slice(service.as_bytes());
        }
        GrpcCall {
            method: "grpc.health.v1.Health/Check".to_owned(),
            message: message.into(),
        }
    }

    /// The call's path: `/package.Service/Method`.
    pub fn path(&self) -> String {
        format!("/{}", self.method)
    }

    /// Where the call goes: its [path](Self::path) on `url`'s scheme and
    /// authority (`url`'s own path and query are not sent). `url` itself if
    /// the path does not make a URI with it.
    pub fn uri(&self, url: &Uri) -> Uri {
        let mut parts = url.clone().into_parts();
        parts.path_and_query = self.path().parse().ok();
        Uri::from_parts(parts).unwrap_or_else(|_| url.clone())
    }
}

/// What the drill does to the server, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalPlan {
    /// The signal to send.
    pub signal: Signal,
    /// When to send it the first time, counted from the start of the load.
    pub at: Duration,
    /// How many signals to send in all (at least 1).
    pub repeat: u32,
    /// The time between two signals when `repeat > 1`.
    pub every: Duration,
    /// How to judge the result.
    pub expect: Expectation,
}

impl SignalPlan {
    /// One signal at `at`, judged by the signal's usual meaning.
    pub fn once(signal: Signal, at: Duration) -> Self {
        SignalPlan {
            signal,
            at,
            repeat: 1,
            every: Duration::ZERO,
            expect: signal.default_expectation(),
        }
    }

    /// When the `n`th signal (0-based) is due, from the start of the load.
    pub fn due(&self, n: u32) -> Duration {
        self.at + self.every * n
    }
}

/// What a correct server does with the signal, which decides the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expectation {
    /// Drain and exit: every request that started before the listener closed
    /// succeeds, readiness turns false before the listener closes, and the
    /// process exits with 0 within the grace period.
    Stop,
    /// Restart without a gap: each signal brings in a new process that takes
    /// over the listening socket, readiness answers 2xx throughout, no request
    /// fails at all, and the service keeps answering after the old process
    /// exits.
    Restart,
    /// No signal: a plain load test, which passes when no request fails.
    Load,
}

/// The server process behind the URL.
#[derive(Debug, Clone)]
pub enum ServerSpec {
    /// No process known: the drill can load but not signal (only with no
    /// signal, or with a PID file).
    Unknown,
    /// Spawn this command in its own process group, and stop the group when
    /// the drill is over: unless the drill judged a stop, `TERM` and up to
    /// [`DrillConfig::grace_period`] for every process of the group, then
    /// `KILL` for what is left.
    Spawn {
        /// The program.
        program: OsString,
        /// Its arguments.
        args: Vec<OsString>,
        /// Where its stdout and stderr go: a file, or the drill's stderr.
        log: Option<PathBuf>,
    },
    /// A running process, not started by the drill (never killed by it).
    Attach(u32),
}

impl DrillConfig {
    /// The defaults: 8 workers on keep-alive HTTP/1.1 connections for 10 s,
    /// `GET`, 5 s request timeout, no signal, 30 s grace period.
    ///
    /// # Errors
    ///
    /// When `url` is not an absolute `http://` or `https://` URL.
    pub fn new(url: &str) -> Result<Self, ConfigError> {
        Ok(DrillConfig {
            url: parse_http_url(url, "--url")?,
            ready_url: None,
            ready_timeout: Duration::from_secs(30),
            ready_interval: Duration::from_millis(20),
            connect_probe_interval: Duration::from_millis(10),
            load: Load::Concurrency(8),
            connections: ConnectionMode::Keepalive,
            http: HttpVersion::Http1,
            tls: Trust::Unset,
            request: RequestSpec::default(),
            grpc: None,
            duration: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            signal: None,
            grace_period: Duration::from_secs(30),
            server: ServerSpec::Unknown,
            pid_file: None,
            slow_threshold: None,
            flight_record: None,
            flight_record_required: false,
        })
    }

    /// The expectation that decides the verdict.
    pub fn expectation(&self) -> Expectation {
        self.signal.map_or(Expectation::Load, |plan| plan.expect)
    }

    /// Whether the load or the readiness URL is `https://`.
    pub(crate) fn is_https(&self) -> bool {
        std::iter::once(&self.url)
            .chain(&self.ready_url)
            .any(|uri| uri.scheme_str() == Some("https"))
    }

    /// Checks that the parts fit together (and reads the `--cacert` file
    /// of an `https://` drill).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_http_url(&self.url, "--url")?;
        if let Some(ready) = &self.ready_url {
            check_http_url(ready, "--ready-url")?;
        }
        if self.is_https() {
            Tls::new(&self.tls)?;
        } else if self.tls != Trust::Unset {
            return Err(ConfigError::new(
                "--cacert and --insecure are for https:// URLs",
            ));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return Err(ConfigError::new(
                "--duration must be more than 0 and at most 1h",
            ));
        }
        if self.grpc.is_some() && self.http != HttpVersion::Http2 {
            return Err(ConfigError::new("--grpc needs HTTP/2 (--http 2)"));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new("--timeout must be more than 0"));
        }
        if self.flight_record_required && self.flight_record.is_none() {
            return Err(ConfigError::new(
                "--require-flight-record needs --flight-record",
            ));
        }
        if self.ready_interval.is_zero() || self.connect_probe_interval.is_zero() {
            return Err(ConfigError::new("probe intervals must be more than 0"));
        }
        match self.load {
            Load::Concurrency(0) => {
                return Err(ConfigError::new("--concurrency must be at least 1"));
            }
            Load::Concurrency(n) if n > 10_000 => {
                return Err(ConfigError::new("--concurrency must be at most 10000"));
            }
            Load::Rate { per_second: 0, .. } => {
                return Err(ConfigError::new("--rate must be at least 1"));
            }
            Load::Rate {
                max_in_flight: 0, ..
            } => {
                return Err(ConfigError::new("--max-in-flight must be at least 1"));
            }
            _ => {}
        }
        if let Some(plan) = &self.signal {
            self.validate_plan(plan)?;
        }
        Ok(())
    }

    fn validate_plan(&self, plan: &SignalPlan) -> Result<(), ConfigError> {
        if plan.repeat == 0 {
            return Err(ConfigError::new("--repeat must be at least 1"));
        }
        if plan.repeat > 1 && plan.every.is_zero() {
            return Err(ConfigError::new("--repeat above 1 needs --every"));
        }
        // The mirror image: a time between signals with one signal to send
        // would be ignored without a word.
        if plan.repeat == 1 && !plan.every.is_zero() {
            return Err(ConfigError::new("--every needs --repeat above 1"));
        }
        let last = plan.due(plan.repeat - 1);
        if last >= self.duration {
            return Err(ConfigError::new(format!(
                "the last signal is due at {}, not before the end of the load at {}: \
                 lengthen --duration or move --at/--every",
                humantime::format_duration(last),
                humantime::format_duration(self.duration),
            )));
        }
        if plan.expect == Expectation::Load {
            return Err(ConfigError::new("a signal needs --expect stop or restart"));
        }
        if matches!(self.server, ServerSpec::Unknown) && self.pid_file.is_none() {
            return Err(ConfigError::new(
                "a signal needs a server to send it to: give `-- CMD`, --pid or --pid-file",
            ));
        }
        Ok(())
    }
}

/// Parses an absolute `http://` or `https://` URL with a host.
pub(crate) fn parse_http_url(text: &str, flag: &str) -> Result<Uri, ConfigError> {
    let uri: Uri = text
        .parse()
        .map_err(|err| ConfigError::new(format!("{flag} {text:?} is not a URL: {err}")))?;
    check_http_url(&uri, flag)?;
    Ok(uri)
}

fn check_http_url(uri: &Uri, flag: &str) -> Result<(), ConfigError> {
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(ConfigError::new(format!(
                "{flag} {uri} must start with http:// or https://"
            )));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(ConfigError::new(format!("{flag} {uri} has no host")));
    }
    // `http` parses a port above 65535 and then answers "no port", which
    // would send the drill to port 80 or 443.
    let host_port = uri
        .authority()
        .map_or("", |a| a.as_str().rsplit('@').next().unwrap_or_default());
    if let Some((_, port)) = host_port.rsplit_once(':')
        && !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_err()
    {
        return Err(ConfigError::new(format!(
            "{flag} {uri}: port {port} is out of range: a port is 0 to 65535"
        )));
    }
    Ok(())
}

/// A drill configuration that does not hold together.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DrillConfig {
        let mut config = DrillConfig::new("http://127.0.0.1:1/").unwrap();
        config.server = ServerSpec::Attach(1);
        config
    }

    #[test]
    fn defaults_are_valid() {
        config().validate().unwrap();
    }

    #[test]
    fn https_needs_a_trust_and_other_schemes_are_refused() {
        let mut config = DrillConfig::new("https://example.test/").unwrap();
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("--insecure"), "{err}");
        config.tls = Trust::Insecure;
        config.validate().unwrap();
        let mut config = self::config();
        config.ready_url = Some("https://example.test/readyz".parse().unwrap());
        assert!(config.validate().is_err(), "an https readiness URL too");
        let err = DrillConfig::new("ftp://example.test/").unwrap_err();
        assert!(err.to_string().contains("https://"), "{err}");
    }

    #[test]
    fn a_url_whose_port_is_out_of_range_is_refused_not_sent_to_port_80() {
        let err = DrillConfig::new("http://127.0.0.1:99999/").unwrap_err();
        assert!(
            err.to_string()
                .contains("--url http://127.0.0.1:99999/: port 99999 is out of range"),
            "{err}"
        );
        let mut config = config();
        config.ready_url = Some("http://[::1]:65536/readyz".parse().unwrap());
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("port 65536"), "{err}");
        DrillConfig::new("http://user:pw@[::1]:65535/").unwrap();
        DrillConfig::new("http://[::1]/").unwrap();
    }

    #[test]
    fn signal_after_the_load_ends_is_an_error() {
        let mut config = config();
        config.duration = Duration::from_secs(2);
        config.signal = Some(SignalPlan::once(Signal::TERM, Duration::from_secs(2)));
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("lengthen --duration"), "{err}");
    }

    #[test]
    fn repeats_must_fit_in_the_duration() {
        let mut config = config();
        config.duration = Duration::from_secs(8);
        let mut plan = SignalPlan::once(Signal::HUP, Duration::from_secs(1));
        plan.repeat = 3;
        plan.every = Duration::from_secs(4);
        config.signal = Some(plan);
        assert!(config.validate().is_err());
        plan.every = Duration::from_secs(3);
        config.signal = Some(plan);
        config.validate().unwrap();
    }

    #[test]
    fn every_without_repeat_is_refused_as_repeat_without_every_is() {
        let mut config = config();
        let mut plan = SignalPlan::once(Signal::HUP, Duration::from_secs(1));
        plan.every = Duration::from_secs(1);
        config.signal = Some(plan);
        let err = config.validate().unwrap_err();
        assert!(
            err.to_string().contains("--every needs --repeat above 1"),
            "{err}"
        );
        plan.every = Duration::ZERO;
        plan.repeat = 2;
        config.signal = Some(plan);
        let err = config.validate().unwrap_err();
        assert!(
            err.to_string().contains("--repeat above 1 needs --every"),
            "{err}"
        );
    }

    #[test]
    fn a_signal_needs_a_process() {
        let mut config = config();
        config.server = ServerSpec::Unknown;
        config.signal = Some(SignalPlan::once(Signal::TERM, Duration::from_secs(1)));
        assert!(config.validate().is_err());
    }

    #[test]
    fn grpc_methods_are_service_slash_method_and_need_http2() {
        assert_eq!(GrpcCall::new("/a.B/C", "").unwrap().path(), "/a.B/C");
        for bad in ["a.B", "a.B/", "/C", "a/b/c", "a.B/C?x"] {
            assert!(GrpcCall::new(bad, "").is_err(), "{bad}");
        }
        let mut config = config();
        config.grpc = Some(GrpcCall::health_check(""));
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("--http 2")
        );
        config.http = HttpVersion::Http2;
        config.validate().unwrap();
    }

    #[test]
    fn a_health_check_request_carries_its_service_as_field_one() {
        assert!(GrpcCall::health_check("").message.is_empty());
        assert_eq!(&GrpcCall::health_check("ab").message[..], b"\x0a\x02ab");
        let long = "s".repeat(200);
        let message = GrpcCall::health_check(&long).message;
        assert_eq!(&message[..3], &[0x0a, 0xc8, 0x01]);
        assert_eq!(message.len(), 203);
    }

    #[test]
    fn header_lines_parse() {
        let mut spec = RequestSpec::default();
        spec.add_header_line("X-Test: a b").unwrap();
        assert_eq!(spec.headers["x-test"], "a b");
        assert!(spec.add_header_line("no colon").is_err());
    }
}
