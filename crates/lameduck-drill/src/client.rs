//! The load client: one request at a time, over a keep-alive pool or a fresh
//! connection, with hyper's connection builders so that every connection is
//! opened, reused and closed exactly when the drill says.
//!
//! It behaves like a careful real client and no better: it never reuses a
//! connection whose response said `Connection: close` or whose server sent
//! GOAWAY, and it sends a request again on a new connection only when the
//! server provably did not process it (a pooled connection found closed
//! before the request was written, or an HTTP/2 stream refused unprocessed),
//! and then on a new connection of its own. Every such retry is flagged in
//! the request's record.

mod conn;
mod grpc;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONNECTION, HOST};
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};

use crate::config::{ConnectionMode, DrillConfig, HttpVersion};
use crate::dial::Dialer;
use crate::events::EventLog;
use crate::outcome::{RawOutcome, classify_connect, classify_error, describe, is_unprocessed_h2};
use crate::record::{Clock, Ending, flags};

use self::conn::Pool;

/// How many times one request may be sent before its last error counts.
const MAX_ATTEMPTS: u32 = 3;

/// Sends the drill's requests to one address.
#[derive(Debug)]
pub(crate) struct Client {
    addr: SocketAddr,
    http2: bool,
    /// Unary gRPC calls, sorted by their `grpc-status`.
    grpc: bool,
    mode: ConnectionMode,
    template: Template,
    pool: Pool,
}

/// The request every attempt is built from.
#[derive(Debug)]
struct Template {
    method: http::Method,
    uri: Uri,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Client {
    pub(crate) fn new(
        config: &DrillConfig,
        dialer: Dialer,
        clock: Clock,
        events: Arc<EventLog>,
    ) -> Self {
        let http2 = config.http == HttpVersion::Http2;
        let mut headers = config.request.headers.clone();
        let uri = if http2 {
            // h2 carries the authority as a pseudo-header, from an absolute URI.
            config.url.clone()
        } else {
            if !headers.contains_key(HOST)
                && let Some(authority) = config.url.authority()
                && let Ok(value) = HeaderValue::from_str(authority.as_str())
            {
                headers.insert(HOST, value);
            }
            config
                .url
                .path_and_query()
                .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()))
        };
        let (method, uri, body) = match &config.grpc {
            Some(call) => grpc::request(call, &config.url, &mut headers),
            None => (
                config.request.method.clone(),
                uri,
                config.request.body.clone(),
            ),
        };
        Client {
            addr: dialer.addr(),
            http2,
            grpc: config.grpc.is_some(),
            mode: config.connections,
            template: Template {
                method,
                uri,
                headers,
                body,
            },
            pool: Pool::new(dialer, http2, clock, events),
        }
    }

    /// Whether request number `seq` goes over a fresh connection.
    fn is_fresh(&self, seq: u64) -> bool {
        match self.mode {
            ConnectionMode::Keepalive => false,
            ConnectionMode::Fresh => true,
            ConnectionMode::Mixed => seq.is_multiple_of(2),
        }
    }

    fn build(&self, fresh: bool) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.template.body.clone()));
        *request.method_mut() = self.template.method.clone();
        *request.uri_mut() = self.template.uri.clone();
        *request.headers_mut() = self.template.headers.clone();
        if fresh && !self.http2 {
            // Let the server close first, so TIME_WAIT sockets pile up on its
            // side and not on the drill's ephemeral ports.
            request
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        request
    }

    /// Sends request number `seq` and reads its response to the end.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future (at the request timeout) drops the connection it
    /// was using, never one in the pool.
    pub(crate) async fn send(&self, seq: u64) -> Ending {
        let fresh = self.is_fresh(seq);
        let mut flags = if fresh { 0 } else { flags::KEEPALIVE };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let may_retry = attempt < MAX_ATTEMPTS;
            let start = Instant::now();
            let fail = |raw, flags, detail: String| Ending {
                start,
                raw,
                flags,
                detail: Some(detail),
            };
            // A request sent again goes on a connection of its own: a
            // server serves a new connection's first stream before it says
            // GOAWAY, while on a shared one, opened during the drain, other
            // requests can take that place and see this one refused again.
            let alone = fresh || flags & flags::RETRIED != 0;
            let (mut conn, reused) = match self.pool.checkout(alone).await {
                Ok(found) => found,
                Err(err) => {
                    return fail(
                        RawOutcome::Failed(classify_connect(&err)),
                        flags,
                        format!("connect to {}: {err}", self.addr),
                    );
                }
            };
            let result = conn.send(self.build(fresh)).await;
            let response = match result {
                Ok(response) => response,
                Err(err) => {
                    if err.unsent {
                        // Closed under us: never offered again, the retry
                        // below included.
                        self.pool.discard(&conn).await;
                    }
                    conn.close_by_us();
                    // Handed back unsent, the request never left the drill:
                    // a pooled connection closed under us, or an HTTP/2
                    // server said GOAWAY before the request was written.
                    // Refused unprocessed by HTTP/2: the server says it did
                    // not act on it. Real clients send both again.
                    let retry = (err.unsent && (reused || self.http2))
                        || (self.http2 && is_unprocessed_h2(&err.error));
                    if may_retry && retry {
                        flags |= flags::RETRIED;
                        continue;
                    }
                    let outcome = if err.unsent {
                        crate::Outcome::Incomplete
                    } else {
                        classify_error(&err.error, self.http2)
                    };
                    return fail(RawOutcome::Failed(outcome), flags, describe(&err.error));
                }
            };
            let status = response.status().as_u16();
            let close = !self.http2
                && response.headers().get_all(CONNECTION).iter().any(|v| {
                    v.to_str()
                        .is_ok_and(|v| v.to_ascii_lowercase().contains("close"))
                });
            if close && !fresh {
                flags |= flags::CONNECTION_CLOSE;
            }
            let (parts, body) = response.into_parts();
            return match body.collect().await {
                Ok(collected) => {
                    if alone || close {
                        conn.close_by_us();
                    } else {
                        self.pool.checkin(conn);
                    }
                    let (raw, detail) = if self.grpc {
                        grpc::ending(status, &parts.headers, collected.trailers())
                    } else {
                        let detail = (!(200..300).contains(&status))
                            .then(|| status_detail(status, &parts.headers, &collected.to_bytes()));
                        (RawOutcome::Status(status), detail)
                    };
                    Ending {
                        start,
                        raw,
                        flags,
                        detail,
                    }
                }
                Err(err) => {
                    conn.close_by_us();
                    let outcome = classify_error(&err, self.http2);
                    fail(
                        RawOutcome::Failed(outcome),
                        flags,
                        format!("reading the body of a {status}: {}", describe(&err)),
                    )
                }
            };
        }
    }

    /// Closes the pooled connections (at the end of the load), so that their
    /// closing is not mistaken for the server's GOAWAY.
    pub(crate) fn close(&self) {
        self.pool.close();
    }
}

/// A failure sample's detail for a complete non-2xx answer: `HTTP 500`; a
/// 503 also with what the server said, which tells a server shedding load
/// while it drains from one answering work it cancelled at its shutdown
/// timeout (lameduck's: `HTTP 503 (Retry-After: 1): shutting down`).
fn status_detail(status: u16, headers: &http::HeaderMap, body: &[u8]) -> String {
    let mut detail = format!("HTTP {status}");
    if status != 503 {
        return detail;
    }
    if let Some(after) = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
    {
        detail.push_str(&format!(" (Retry-After: {after})"));
    }
    // Its first line, if it is short text: a page of HTML says nothing here.
    let text = std::str::from_utf8(body).unwrap_or("");
    let line = text.lines().next().unwrap_or("").trim();
    if !line.is_empty() && line.len() <= 80 && !line.starts_with('<') {
        detail.push_str(&format!(": {line}"));
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_503_sample_says_what_the_server_answered_so_a_cancel_time_503_is_told_from_shedding() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        assert_eq!(
            status_detail(503, &headers, b"shutting down\n"),
            "HTTP 503 (Retry-After: 1): shutting down"
        );
        let none = http::HeaderMap::new();
        assert_eq!(status_detail(503, &none, b"draining"), "HTTP 503: draining");
        assert_eq!(status_detail(503, &none, b"<html><body>"), "HTTP 503");
        assert_eq!(status_detail(500, &headers, b"oops"), "HTTP 500");
    }
}
