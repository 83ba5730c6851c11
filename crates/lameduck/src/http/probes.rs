//! `/livez`, `/readyz` and `/startupz`, served from the health registry.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;

use crate::{Health, Status};

/// The Kubernetes probe endpoints, answered from a [`Health`] registry.
///
/// | path | answers | `200` when |
/// |---|---|---|
/// | `/livez` | liveness | no component reports itself broken |
/// | `/readyz` | readiness | running (not starting, not draining) and every component ready |
/// | `/startupz` | startup | every component reported ready once |
///
/// Each answers `ok` with `200` or `failed` with `503`. With `?verbose`, the
/// body lists every check in the Kubernetes format (`[+]db ok`,
/// `[-]phase failed: draining`). `/readyz/<check>` (and likewise for the
/// others) answers for one check alone, `404` if there is no such check.
/// Readiness fails from the first instant of Draining; liveness does not,
/// so an orchestrator never restarts a service for shutting down.
///
/// A [`Server`](super::Server) serves them on an admin listener
/// ([`Server::admin`](super::Server::admin)) or on its main listener
/// ([`Server::probes_on_main`](super::Server::probes_on_main)). `Probes` is
/// also a [`tower_service::Service`], to mount in a server of your own; any
/// other path gets `404`.
///
/// # Examples
///
/// ```
/// use lameduck::Health;
/// use lameduck::http::Probes;
///
/// let probes = Probes::new(Health::new());
/// let req = http::Request::get("/readyz?verbose").body(()).unwrap();
/// let resp = probes.respond(&req).expect("a probe path");
/// assert_eq!(resp.status(), 503); // never started
/// ```
#[derive(Clone, Debug)]
pub struct Probes {
    health: Health,
    /// `/metrics`, on an app's admin listener (feature `metrics`).
    #[cfg(feature = "metrics")]
    metrics: Option<crate::metrics::Metrics>,
}

impl Probes {
    /// Probes that answer from `health` (an app's is
    /// [`AppHandle::health`](crate::AppHandle::health)).
    pub fn new(health: Health) -> Self {
        Self {
            health,
            #[cfg(feature = "metrics")]
            metrics: None,
        }
    }

    /// Also answers `/metrics` from `metrics` (feature `metrics`):
    /// OpenMetrics text to a scraper that asks for it, the Prometheus text
    /// format otherwise — and a scrape counts for the final scrape. For an
    /// admin listener of your own; `http::Server`'s admin listeners do it
    /// for the app's metrics by themselves.
    #[cfg(feature = "metrics")]
    pub fn with_metrics(mut self, metrics: &crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics.clone());
        self
    }

    /// The probes of `app`'s admin listener, with `/metrics` when the app
    /// has metrics (feature `metrics`).
    pub(crate) fn for_admin(app: &crate::AppHandle) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::hub_of(app).map(crate::metrics::Metrics::from_hub),
            ..Self::new(app.health().clone())
        }
    }

    /// Whether `path` is one of the probe endpoints.
    pub fn is_probe_path(path: &str) -> bool {
        split(path).is_some()
    }

    /// The answer to `req` if its path is a probe's, `None` otherwise.
    pub fn respond<B>(&self, req: &Request<B>) -> Option<Response<Bytes>> {
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics
            && req.uri().path() == "/metrics"
        {
            return Some(scrape(metrics, req));
        }
        let (probe, check) = split(req.uri().path())?;
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Some(resp);
        }
        let status = match probe {
            Probe::Live => self.health.liveness(),
            Probe::Ready => self.health.readiness(),
            Probe::Started => self.health.startup(),
        };
        let verbose = req.uri().query().is_some_and(|q| {
            q.split('&')
                .any(|kv| kv == "verbose" || kv.starts_with("verbose="))
        });
        Some(match check {
            None => answer(&status, verbose),
            Some(name) => match status.checks.iter().find(|c| c.name == name) {
                None => text(StatusCode::NOT_FOUND, format!("no check named {name:?}\n")),
                Some(c) => answer(
                    &Status {
                        ok: c.ok,
                        checks: vec![c.clone()],
                    },
                    true,
                ),
            },
        })
    }
}

#[derive(Clone, Copy)]
enum Probe {
    Live,
    Ready,
    Started,
}

fn split(path: &str) -> Option<(Probe, Option<&str>)> {
    let (head, check) = match path.get(1..)?.split_once('/') {
        Some((head, check)) if !check.is_empty() => (head, Some(check)),
        Some((head, _)) => (head, None),
        None => (&path[1..], None),
    };
    let probe = match head {
        "livez" => Probe::Live,
        "readyz" => Probe::Ready,
        "startupz" => Probe::Started,
        _ => return None,
    };
    path.starts_with('/').then_some((probe, check))
}

fn answer(status: &Status, verbose: bool) -> Response<Bytes> {
    let code = if status.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if verbose {
        text(code, format!("{status}\n"))
    } else {
        text(code, if status.ok { "ok\n" } else { "failed\n" })
    }
}

/// `/metrics`: OpenMetrics text, or Prometheus text to a scraper that
/// does not ask for OpenMetrics.
#[cfg(feature = "metrics")]
fn scrape<B>(metrics: &crate::metrics::Metrics, req: &Request<B>) -> Response<Bytes> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    let openmetrics = req.headers().get_all(header::ACCEPT).iter().any(|v| {
        v.as_bytes()
            .windows(21)
            .any(|w| w == b"application/openmetri")
    });
    let (body, content_type) = metrics.scrape(openmetrics);
    let mut resp = text(StatusCode::OK, body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn text(code: StatusCode, body: impl Into<Bytes>) -> Response<Bytes> {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = code;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    // A cached probe answer is a wrong one.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

impl<B> tower_service::Service<Request<B>> for Probes {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let resp = self
            .respond(&req)
            .unwrap_or_else(|| text(StatusCode::NOT_FOUND, "not found\n"));
        ready(Ok(resp.map(Full::new)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_recognised_with_and_without_a_check() {
        assert!(Probes::is_probe_path("/livez"));
        assert!(Probes::is_probe_path("/readyz/"));
        assert!(Probes::is_probe_path("/startupz/db"));
        assert!(!Probes::is_probe_path("/healthz"));
        assert!(!Probes::is_probe_path("/readyzz"));
        assert!(!Probes::is_probe_path(""));
    }

    #[test]
    fn an_unstarted_service_is_live_but_not_ready() {
        let probes = Probes::new(Health::new());
        let get = |uri: &str| {
            probes
                .respond(&Request::get(uri).body(()).unwrap())
                .unwrap()
        };
        assert_eq!(get("/livez").status(), StatusCode::OK);
        assert_eq!(get("/livez").body(), "ok\n");
        let ready = get("/readyz?verbose");
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(ready.body(), "[-]phase failed: not started\nfailed\n");
        assert_eq!(
            get("/readyz/phase").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(get("/readyz/nothing").status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn only_get_and_head_are_allowed() {
        let probes = Probes::new(Health::new());
        let resp = probes
            .respond(&Request::post("/livez").body(()).unwrap())
            .unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
