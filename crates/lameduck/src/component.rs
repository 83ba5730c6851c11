//! Components: the named parts of a service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::{Context, RestartPolicy};

/// The error a component returns: anything that is an error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
pub(crate) type RunFn = Box<dyn FnMut(Context) -> BoxFuture<Result<(), BoxError>> + Send>;
pub(crate) type CloseFn = Box<dyn FnOnce() -> BoxFuture<Result<(), BoxError>> + Send>;

/// A named unit of a service — an HTTP server, a queue consumer, a database
/// pool, a telemetry exporter — with a run, an optional close, its
/// dependencies and its restart policy.
///
/// # Life of a component
///
/// 1. **Start.** Once every dependency is ready, the app calls the run
///    function with a fresh [`Context`]. Whatever the function does before
///    calling [`Context::ready`] is its start: connect, bind, warm up.
///    Components that depend on it start only after `ready()`, and the
///    service is ready only when every component is.
/// 2. **Run.** The function serves until its stop signal
///    ([`Context::on_stopping`]) fires, then finishes its in-flight work and
///    returns. The stop signal of a component fires only after every
///    component that depends on it has returned, so a database pool outlives
///    the HTTP server that uses it.
/// 3. **Close.** After every component has returned, the close functions run
///    in reverse dependency order, each bounded by its close timeout: flush a
///    producer, close a pool, push the last metrics.
///
/// A run that returns `Err` or panics has failed; its [`RestartPolicy`]
/// decides whether it is started again (the function is called anew with a
/// new context).
///
/// # Examples
///
/// ```
/// use lameduck::{Component, Restart, RestartPolicy};
///
/// let db = Component::new("db", |ctx| async move {
///     // connect ...
///     ctx.ready();
///     ctx.on_stopping().await;
///     Ok(())
/// })
/// .on_close(|| async {
///     // close the pool ...
///     Ok(())
/// });
///
/// let http = Component::new("http", |ctx| async move {
///     ctx.ready();
///     ctx.on_stopping().await;
///     Ok(())
/// })
/// .depends_on("db")
/// .restart(RestartPolicy::new(Restart::Permanent));
/// # let _ = (db, http);
/// ```
pub struct Component {
    pub(crate) name: Arc<str>,
    pub(crate) deps: Vec<Arc<str>>,
    pub(crate) policy: RestartPolicy,
    /// Set on the component; otherwise the budget's, or the default.
    pub(crate) close_timeout: Option<Duration>,
    pub(crate) run: RunFn,
    pub(crate) close: Option<CloseFn>,
}

impl Component {
    /// A component named `name` that runs `run`.
    ///
    /// `run` is called once at start and again for each restart.
    pub fn new<F, Fut>(name: impl Into<Arc<str>>, mut run: F) -> Self
    where
        F: FnMut(Context) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        Self {
            name: name.into(),
            deps: Vec::new(),
            policy: RestartPolicy::default(),
            close_timeout: None,
            run: Box::new(move |ctx| Box::pin(run(ctx))),
            close: None,
        }
    }

    /// Declares that this component needs `name`: it starts after `name` is
    /// ready and is stopped before `name` is.
    pub fn depends_on(mut self, name: impl Into<Arc<str>>) -> Self {
        self.deps.push(name.into());
        self
    }

    /// Sets the restart policy (default: transient, see [`RestartPolicy`]).
    pub fn restart(mut self, policy: RestartPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets what to do at Closing, after every component has stopped.
    pub fn on_close<F, Fut>(mut self, close: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.close = Some(Box::new(move || Box::pin(close())));
        self
    }

    /// Sets the bound on this component's close. It counts against the
    /// grace period in the [`Budget`](crate::Budget).
    ///
    /// Set it here or with [`Budget::close_timeout`](crate::Budget::close_timeout)
    /// under this component's name, not both: [`AppBuilder::build`](crate::AppBuilder::build)
    /// rejects a close timeout set twice, naming both places. Set in
    /// neither, it is [`DEFAULT_CLOSE_TIMEOUT`](crate::DEFAULT_CLOSE_TIMEOUT)
    /// (1 s).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = Some(timeout);
        self
    }

    /// The component's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Component")
            .field("name", &self.name)
            .field("deps", &self.deps)
            .field("policy", &self.policy)
            .field("close_timeout", &self.close_timeout)
            .field("has_close", &self.close.is_some())
            .finish_non_exhaustive()
    }
}
