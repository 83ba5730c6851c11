//! Why a server's run failed.

use std::fmt;

/// Why a [`Server`](super::Server)'s run failed.
#[derive(Debug)]
pub struct ServeError {
    kind: ServeErrorKind,
}

/// The ways a server's run can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServeErrorKind {
    /// The component was started again after a failure, but its listener
    /// went with the first run: a listener handed in is served once.
    ListenerGone,
}

impl ServeError {
    pub(crate) fn new(kind: ServeErrorKind) -> Self {
        Self { kind }
    }

    /// What went wrong.
    pub fn kind(&self) -> ServeErrorKind {
        self.kind
    }
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ServeErrorKind::ListenerGone => {
                f.write_str("the listener was used by an earlier run and is closed")
            }
        }
    }
}

impl std::error::Error for ServeError {}
