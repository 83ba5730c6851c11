//! Why a certificate could not be loaded.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::BoxError;

/// Why [`Tls::from_pem_files`](super::Tls::from_pem_files) or
/// [`Tls::reload`](super::Tls::reload) failed. After a failed reload the
/// certificate served is still the one loaded before.
#[derive(Debug)]
pub struct TlsError {
    kind: TlsErrorKind,
    path: Option<PathBuf>,
    source: Option<BoxError>,
}

/// The ways loading a certificate can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsErrorKind {
    /// A file could not be read (missing, no permission).
    Read,
    /// The certificate file holds no PEM certificate.
    NoCertificate,
    /// The key file holds no PEM private key.
    NoKey,
    /// A file is malformed, the key is of a kind rustls does not take, or
    /// the key does not match the certificate.
    Invalid,
    /// There are no files to reload: the `Tls` was made from a
    /// configuration.
    NoFiles,
}

impl TlsError {
    pub(crate) fn new(kind: TlsErrorKind, path: Option<PathBuf>, source: Option<BoxError>) -> Self {
        Self { kind, path, source }
    }

    /// What went wrong.
    pub fn kind(&self) -> TlsErrorKind {
        self.kind
    }

    /// The file it went wrong with, if one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            TlsErrorKind::Read => "cannot read",
            TlsErrorKind::NoCertificate => "no PEM certificate in",
            TlsErrorKind::NoKey => "no PEM private key in",
            TlsErrorKind::Invalid => "invalid certificate or key in",
            TlsErrorKind::NoFiles => {
                return f.write_str("no certificate files to reload: the TLS configuration was given, not read from files");
            }
        };
        match &self.path {
            Some(path) => write!(f, "{what} {}", path.display()),
            None => f.write_str(what),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}
