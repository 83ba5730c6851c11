//! gRPC (feature `grpc`): the `grpc.health.v1.Health` service answered from
//! the app's health registry.
//!
//! A tonic service — one generated server, or a `tonic::service::Routes`
//! of several — is a tower service, and [`Server`](super::Server) serves it
//! like any other, over h2c or, with feature `tls`, HTTPS with ALPN `h2`.
//! Every call then goes through the shutdown sequence stream by stream:
//!
//! | phase | gRPC calls |
//! |---|---|
//! | Draining | served; each connection gets GOAWAY, so clients open new streams elsewhere; [`HealthService`] answers `NOT_SERVING` from the first instant, and `Watch` streams are told at once |
//! | Stopping | the listener closes; calls in flight, streaming ones included, run on; `Watch` streams end with `UNAVAILABLE` |
//! | Cancelling | handlers see [`Cancel`] fire (a tonic handler takes it with [`Cancel::current`]); a call with no response yet is answered at once with the status `UNAVAILABLE` (trailers-only: HTTP 200, `grpc-status: 14`), not an HTTP 503; a streaming response ends at its next message boundary with `UNAVAILABLE`, never as a broken stream |
//! | hard deadline | aborted, each named in the report |
//!
//! A streaming response can end at Stopping instead (a subscription that
//! never ends on its own) by putting [`StreamEnd::AtStopping`](super::StreamEnd)
//! in the response's extensions (`tonic::Response::extensions_mut`).
//!
//! The statuses are decided from the request's `content-type`
//! (`application/grpc…`), so they hold for any gRPC server implementation
//! served by [`Server`](super::Server) or under [`DrainLayer`](super::DrainLayer),
//! with or without this feature.
//!
//! # Examples
//!
//! ```no_run
//! use lameduck::App;
//! use lameduck::http::Server;
//! use lameduck::http::grpc::HealthService;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Your services go next to it: `.add_service(GreeterServer::new(greeter))`.
//! let routes = tonic::service::Routes::new(HealthService::new().into_server());
//! let grpc = Server::bind("0.0.0.0:50051", routes)?.name("grpc");
//! let report = App::builder("svc").component(grpc).build()?.await;
//! # let _ = report; Ok(())
//! # }
//! ```

use std::pin::Pin;
use std::sync::Arc;

use tonic::codegen::tokio_stream::{self, Stream, StreamExt};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health as HealthApi, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use super::{Cancel, StreamEnd};
use crate::Health;

/// The gRPC health service (`grpc.health.v1.Health`, what Kubernetes'
/// `grpc` probes, Envoy and `grpc_health_probe` ask), answered from the
/// app's [`Health`]: `SERVING` when the app is ready, `NOT_SERVING` from
/// the first instant of Draining (and while starting).
///
/// | service asked for | answer |
/// |---|---|
/// | `""` (the server as a whole) | the app's readiness |
/// | a name given with [`service`](Self::service) or [`serving`](Self::serving) | the app's readiness |
/// | anything else | `Check`: status `NOT_FOUND`; `Watch`: `SERVICE_UNKNOWN` |
///
/// `Check` reads the registry at the call; `Watch` sends the status at
/// once, then every change as it happens (the drain's `NOT_SERVING` is
/// sent the instant readiness flips), and ends at Stopping with status
/// `UNAVAILABLE`, as its client then watches another instance.
///
/// [`new`](Self::new) answers from the health of the app whose
/// [`Server`](super::Server) took the call, which it finds in the call's
/// [`Cancel`]; [`from_health`](Self::from_health) from a registry given.
#[derive(Clone, Debug, Default)]
pub struct HealthService {
    health: Option<Health>,
    services: Arc<Vec<String>>,
}

impl HealthService {
    /// Answers from the health of the app whose server takes each call.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers from `health` (under a server of your own, say).
    pub fn from_health(health: Health) -> Self {
        Self {
            health: Some(health),
            ..Self::default()
        }
    }

    /// Answers for the gRPC service `name` (`package.Service`) too.
    pub fn service(mut self, name: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.services).push(name.into());
        self
    }

    /// Answers for the tonic service `S` too, by its name.
    pub fn serving<S: tonic::server::NamedService>(self) -> Self {
        self.service(S::NAME)
    }

    /// The tonic service to serve (with `tonic::service::Routes`, say).
    pub fn into_server(self) -> HealthServer<Self> {
        HealthServer::new(self)
    }

    fn health_of<T>(&self, req: &Request<T>) -> Option<Health> {
        self.health.clone().or_else(|| {
            let cancel = Cancel::current().or_else(|| req.extensions().get::<Cancel>().cloned());
            cancel?.health().cloned()
        })
    }

    fn is_known(&self, service: &str) -> bool {
        service.is_empty() || self.services.iter().any(|s| s == service)
    }
}

fn no_registry() -> Status {
    Status::unavailable(
        "no health registry: serve with lameduck's Server or use HealthService::from_health",
    )
}

fn status_of(health: &Health) -> ServingStatus {
    if health.is_ready() {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

fn answer(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status.into(),
    }
}

type Watch = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

// tonic's API: its `Status` is large, and every answer is a `Result` of one.
#[allow(clippy::result_large_err)]
#[tonic::async_trait]
impl HealthApi for HealthService {
    async fn check(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let health = self.health_of(&req).ok_or_else(no_registry)?;
        if !self.is_known(&req.get_ref().service) {
            return Err(Status::not_found("unknown service"));
        }
        Ok(Response::new(answer(status_of(&health))))
    }

    type WatchStream = Watch;

    async fn watch(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let health = self.health_of(&req).ok_or_else(no_registry)?;
        let stream: Watch = if self.is_known(&req.get_ref().service) {
            let mut last = None;
            // The receiver's current value first, then one per change;
            // only the changes of the status are sent.
            let changes = tokio_stream::wrappers::WatchStream::new(health.subscribe());
            Box::pin(changes.filter_map(move |_| {
                let now = status_of(&health);
                (last != Some(now)).then(|| {
                    last = Some(now);
                    Ok(answer(now))
                })
            }))
        } else {
            // The protocol: tell, and keep the call open.
            Box::pin(
                tokio_stream::once(Ok(answer(ServingStatus::ServiceUnknown)))
                    .chain(tokio_stream::pending()),
            )
        };
        let mut resp = Response::new(stream);
        // A watch never ends on its own: at Stopping its client goes to
        // watch another instance.
        resp.extensions_mut().insert(StreamEnd::AtStopping);
        Ok(resp)
    }
}
