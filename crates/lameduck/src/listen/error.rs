//! What can go wrong getting a listener.

use std::io;

/// A listener could not be inherited or bound.
///
/// The message says what and why; for a malformed environment it starts
/// with the variable's name (`LISTEN_FDS: ...`), which
/// [`variable`](Self::variable) also gives.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ListenError {
    kind: ListenErrorKind,
    variable: Option<&'static str>,
    /// Ends with the operating system's reason when there is one, so that
    /// `{e}` alone says it (`cannot bind the "http" listener: Address
    /// already in use (os error 98)`); it is not repeated as a `source`.
    message: String,
    io: Option<io::Error>,
}

/// The kind of a [`ListenError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListenErrorKind {
    /// `LISTEN_PID`, `LISTEN_FDS` or `LISTEN_FDNAMES` is malformed, foreign
    /// (meant for another process) or inconsistent.
    Environment,
    /// An inherited descriptor is not open, not a socket, or not listening.
    NotListening,
    /// The inherited socket with that name is of another kind (a Unix
    /// socket where TCP was asked for, say).
    WrongType,
    /// Binding a fresh socket failed.
    Bind,
    /// The inherited sockets were already taken by an earlier
    /// [`Listeners::from_env`](super::Listeners::from_env).
    AlreadyTaken,
    /// Another I/O error.
    Io,
}

impl ListenError {
    /// An error in `variable`, described by `what` (which may start with
    /// the variable's name already).
    pub(crate) fn env(variable: &'static str, what: String) -> Self {
        Self {
            kind: ListenErrorKind::Environment,
            variable: Some(variable),
            message: if what.starts_with(variable) {
                what
            } else {
                format!("{variable}: {what}")
            },
            io: None,
        }
    }

    pub(crate) fn new(kind: ListenErrorKind, message: String, io: Option<io::Error>) -> Self {
        let variable = matches!(kind, ListenErrorKind::NotListening).then_some("LISTEN_FDS");
        let message = match &io {
            Some(e) => format!("{message}: {e}"),
            None => message,
        };
        Self {
            kind,
            variable,
            message,
            io,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ListenErrorKind {
        self.kind
    }

    /// The environment variable at fault, if one is.
    pub fn variable(&self) -> Option<&'static str> {
        self.variable
    }

    /// The operating system's error behind it, if one is (its reason is
    /// already at the end of the message).
    pub fn io_error(&self) -> Option<&io::Error> {
        self.io.as_ref()
    }
}

impl From<ListenError> for io::Error {
    fn from(e: ListenError) -> Self {
        let kind = match e.kind {
            ListenErrorKind::Environment | ListenErrorKind::WrongType => {
                io::ErrorKind::InvalidInput
            }
            ListenErrorKind::NotListening => io::ErrorKind::InvalidInput,
            ListenErrorKind::Bind | ListenErrorKind::AlreadyTaken | ListenErrorKind::Io => {
                io::ErrorKind::Other
            }
        };
        // The operating system's kind, when there is one (`AddrInUse`).
        let kind = e.io.as_ref().map_or(kind, io::Error::kind);
        io::Error::new(kind, e)
    }
}
