//! What was still open at a moment of the shutdown, for the flight record:
//! each connection a component serves, with what it is doing.

use std::sync::Arc;
use std::time::Duration;

/// One open connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Connection {
    /// Who is at the other end.
    pub(crate) peer: String,
    /// `http/1`, `http/2`, `upgraded`, or `unknown` before the first bytes.
    pub(crate) protocol: &'static str,
    /// `new`, `idle`, `reading`, `handling`, `writing`, `stream` or
    /// `upgraded`.
    pub(crate) state: &'static str,
    /// Requests on it not over yet.
    pub(crate) in_flight: usize,
    /// Since its last byte was read.
    pub(crate) idle: Duration,
    /// Since it was accepted.
    pub(crate) age: Duration,
}

/// Lists one component's open connections.
pub(crate) type ListFn = Arc<dyn Fn() -> Vec<Connection> + Send + Sync>;

/// Each component's list, by component index, with the component's name.
#[derive(Default)]
pub(crate) struct Lists(pub(crate) std::collections::HashMap<usize, (Arc<str>, ListFn)>);

impl std::fmt::Debug for Lists {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.0.values().map(|(n, _)| n))
            .finish()
    }
}
