//! Probes beside the load: the readiness endpoint, polled like a kubelet
//! would (a fresh HTTP/1.1 connection each time), and bare TCP connects that
//! time the listener closing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONNECTION, HOST};
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::client::Client;
use crate::dial::Dialer;
use crate::error::DrillError;
use crate::events::{EventLog, ProbeResult, ReadinessProbe};
use crate::outcome::{Outcome, classify_connect, classify_error, describe};
use crate::record::Clock;

/// The longest a single readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Where a URL's host and port resolve to (the first address).
pub(crate) async fn resolve(uri: &Uri) -> Result<SocketAddr, DrillError> {
    let host = uri.host().unwrap_or_default();
    let default = if uri.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    let port = uri.port_u16().unwrap_or(default);
    let target = format!("{host}:{port}");
    let mut found = tokio::net::lookup_host(target.as_str())
        .await
        .map_err(|source| DrillError::Resolve {
            host: target.clone(),
            source: Some(source),
        })?;
    found.next().ok_or_else(|| DrillError::Resolve {
        host: target.clone(),
        source: None,
    })
}

/// A readiness URL and where it resolves to.
#[derive(Debug, Clone)]
pub(crate) struct ReadyCheck {
    pub(crate) dialer: Dialer,
    pub(crate) uri: Uri,
    /// Without a readiness URL in gRPC mode, the server is ready when a call
    /// of the drill's answers `OK`: a gRPC server may speak HTTP/2 only.
    pub(crate) call: Option<Arc<Client>>,
}

impl ReadyCheck {
    /// One `GET`, on a fresh connection, read to the end.
    pub(crate) async fn probe(&self) -> ProbeResult {
        match self.get().await {
            Ok(status) => ProbeResult::Status(status),
            Err((outcome, _)) => ProbeResult::Failed(outcome),
        }
    }

    /// One `GET`: its status, or how it failed and why.
    async fn get(&self) -> Result<u16, (Outcome, String)> {
        let result = match &self.call {
            Some(client) => tokio::time::timeout(PROBE_TIMEOUT, call(client)).await,
            None => tokio::time::timeout(PROBE_TIMEOUT, self.try_get()).await,
        };
        match result {
            Ok(result) => result,
            Err(_) => Err((Outcome::Timeout, "no answer within 1s".to_owned())),
        }
    }

    async fn try_get(&self) -> Result<u16, (Outcome, String)> {
        let failed = |err: &hyper::Error| (classify_error(err, false), describe(err));
        let stream = self
            .dialer
            .dial()
            .await
            .map_err(|err| (classify_connect(&err), err.to_string()))?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|err| failed(&err))?;
        tokio::spawn(conn);
        let mut request = Request::new(Empty::<Bytes>::new());
        *request.uri_mut() = self
            .uri
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
        if let Some(authority) = self.uri.authority()
            && let Ok(value) = HeaderValue::from_str(authority.as_str())
        {
            request.headers_mut().insert(HOST, value);
        }
        request
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| failed(&err))?;
        let status = response.status().as_u16();
        match response.into_body().collect().await {
            Ok(_) => Ok(status),
            Err(err) => Err(failed(&err)),
        }
    }

    /// Probes every `interval` until one answers 2xx or `timeout` passes.
    /// Returns the last result seen when it gives up.
    pub(crate) async fn wait_ready(
        &self,
        timeout: Duration,
        interval: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.get().await {
                Ok(200..=299) => return Ok(()),
                Ok(status) => format!("HTTP {status}"),
                Err((Outcome::Refused, _)) => "connection refused".to_owned(),
                Err((_, why)) => why,
            };
            if Instant::now() + interval >= deadline {
                return Err(last);
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// Probes every `interval`, forever (the drill aborts the task), and logs
    /// every result.
    pub(crate) async fn poll(self, interval: Duration, clock: Clock, events: Arc<EventLog>) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let start_us = clock.now_us();
            let result = self.probe().await;
            events.readiness(ReadinessProbe {
                start_us,
                end_us: clock.now_us(),
                result,
            });
        }
    }
}

/// One call of the drill's: `200` when it counts as `ok`, else how it
/// failed and why.
async fn call(client: &Client) -> Result<u16, (Outcome, String)> {
    let ending = client.send(0).await;
    if ending.raw.is_ok() {
        return Ok(200);
    }
    let why = ending.detail.unwrap_or_else(|| "no detail".to_owned());
    Err((ending.raw.resolve(false), why))
}

/// Tries a bare TCP connect every `interval`, forever (the drill aborts the
/// task), and logs each refused one: the first refused connect after the
/// signal is when the listener closed.
pub(crate) async fn probe_listener(
    addr: SocketAddr,
    interval: Duration,
    clock: Clock,
    events: Arc<EventLog>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let start_us = clock.now_us();
        let refused = match tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(_stream)) => false,
            Ok(Err(err)) => classify_connect(&err) == Outcome::Refused,
            Err(_) => false,
        };
        events.connect_probe(start_us, refused);
    }
}
