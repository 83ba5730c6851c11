//! HTTPS (feature `tls`): the certificate a [`Server`](super::Server)
//! presents, reloaded without a restart, and the TLS side of each
//! connection's shutdown.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

mod conn;
mod error;
mod handshake;

pub use error::{TlsError, TlsErrorKind};
pub(crate) use handshake::handshake;

/// The default for [`Tls::handshake_timeout`].
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate and key a [`Server`](super::Server) serves HTTPS with:
/// a cheap, cloneable handle whose configuration can be replaced while the
/// server runs.
///
/// [`from_pem_files`](Self::from_pem_files) reads a certificate chain and a
/// private key from PEM files and offers ALPN `h2` and `http/1.1`, so one
/// port serves HTTP/2 (gRPC included) and HTTP/1.1 alike.
/// [`reload`](Self::reload) reads the files again: handshakes from then on
/// present the new certificate, while connections already open keep the
/// one they were made with. A reload that fails — a file missing or half
/// written, a key that does not match the certificate — changes nothing and
/// says why. A server with a `Tls` read from files also reloads it on
/// [`AppHandle::reload`](crate::AppHandle::reload) (the control socket's
/// `reload` command, feature `upgrade`).
///
/// The handshake runs in the connection's own task, never in the accept
/// loop, so a slow client stalls no one else; it has its own
/// [timeout](Self::handshake_timeout). At Stopping a connection still
/// handshaking gets the server's
/// [`first_request_grace`](super::Server::first_request_grace) from its
/// last byte, as a request head does, and is closed after that; at
/// Cancelling at once. Connections the server closes cleanly end with
/// TLS's `close_notify`.
///
/// The ring provider does the cryptography (no OpenSSL, no C toolchain
/// beyond ring's own).
///
/// # Examples
///
/// ```no_run
/// use lameduck::App;
/// use lameduck::http::{Server, Tls};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let router = lameduck::http::Probes::new(lameduck::Health::new());
/// let tls = Tls::from_pem_files("/etc/tls/tls.crt", "/etc/tls/tls.key")?;
/// let https = Server::bind("0.0.0.0:8443", router)?.tls(tls.clone());
/// let app = App::builder("svc").component(https).build()?;
/// // Later, when the files have changed (a renewed certificate):
/// if let Err(err) = tls.reload() {
///     eprintln!("still serving the old certificate: {err}");
/// }
/// let report = app.await;
/// # let _ = report; Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Tls {
    shared: Arc<Shared>,
    handshake_timeout: Duration,
}

struct Shared {
    current: RwLock<Arc<ServerConfig>>,
    files: Option<PemFiles>,
    /// One reload at a time (two racing reads of the files could otherwise
    /// install the older one last), and the files' bytes as last read.
    reloading: Mutex<Contents>,
}

/// The certificate and key files' bytes.
type Contents = (Vec<u8>, Vec<u8>);

#[derive(Clone, Debug)]
struct PemFiles {
    cert: PathBuf,
    key: PathBuf,
}

impl Tls {
    /// Reads a certificate chain (the server's certificate first, then its
    /// intermediates) from `cert` and a private key (PKCS#8, PKCS#1 or
    /// SEC1) from `key`, both PEM; offers ALPN `h2` and `http/1.1`, TLS 1.3
    /// and 1.2.
    ///
    /// The paths are kept for [`reload`](Self::reload), and read again as
    /// they are then: a Kubernetes Secret mounted as a volume, whose files
    /// are replaced through a symbolic link, is read whole.
    ///
    /// # Errors
    ///
    /// A [`TlsError`] naming the file and what is wrong with it: it cannot
    /// be read, holds no certificate or no key, or the key does not match
    /// the certificate.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TlsError> {
        let files = PemFiles {
            cert: cert.as_ref().to_path_buf(),
            key: key.as_ref().to_path_buf(),
        };
        let contents = files.contents();
        let config = PemFiles::parse(&files, &contents)?;
        let tls = Self::with_files(config, Some(files));
        *tls.shared
            .reloading
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = contents;
        Ok(tls)
    }

    /// Serves with a rustls configuration built elsewhere (client
    /// certificates, several certificates chosen by SNI, another provider).
    /// Its `alpn_protocols` decide the protocols offered: set `h2` and
    /// `http/1.1` to serve both.
    pub fn from_config(config: Arc<ServerConfig>) -> Self {
        Self::with_files(config, None)
    }

    fn with_files(config: Arc<ServerConfig>, files: Option<PemFiles>) -> Self {
        Self {
            shared: Arc::new(Shared {
                current: RwLock::new(config),
                files,
                reloading: Mutex::new(Contents::default()),
            }),
            handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        }
    }

    /// How long a client has, from its connection's accept, to complete
    /// the TLS handshake (default 10 s, [`DEFAULT_TLS_HANDSHAKE_TIMEOUT`]);
    /// a client that takes longer is disconnected.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Reads the PEM files given to [`from_pem_files`](Self::from_pem_files)
    /// again and serves new handshakes with what they hold now. Connections
    /// already open keep their certificate.
    ///
    /// # Errors
    ///
    /// When the files cannot be read or do not hold a matching certificate
    /// and key (the certificate served stays the old one), or when this
    /// `Tls` was made with [`from_config`](Self::from_config) (use
    /// [`set_config`](Self::set_config)).
    pub fn reload(&self) -> Result<(), TlsError> {
        self.read_files(true).map(|_| ())
    }

    /// Reads the files and loads what they hold, unless it is what they
    /// held at the last read and `always` is false; whether it loaded.
    fn read_files(&self, always: bool) -> Result<bool, TlsError> {
        let Some(files) = &self.shared.files else {
            return Err(TlsError::new(TlsErrorKind::NoFiles, None, None));
        };
        let mut last = self
            .shared
            .reloading
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let contents = files.contents();
        if contents == *last && !always {
            return Ok(false);
        }
        // Tried once per change: a file still being written changes again.
        *last = contents;
        let config = PemFiles::parse(files, &last)?;
        self.set_config(config);
        tracing::info!(target: "lameduck::http", cert = %files.cert.display(), "TLS certificate reloaded");
        Ok(true)
    }

    /// Reloads whenever the PEM files' contents change, looking every
    /// `every` (say 10 s); runs until dropped. Spawn it next to the
    /// server:
    ///
    /// ```no_run
    /// # async fn f(tls: lameduck::http::Tls) {
    /// tokio::spawn(tls.clone().reload_on_change(std::time::Duration::from_secs(10)));
    /// # }
    /// ```
    ///
    /// It compares the files' bytes, not their times, so it sees a
    /// Kubernetes Secret volume's update (files swapped in through a
    /// symbolic link) and a certificate renewed in place alike. A change it
    /// cannot load (a file half written, a key not yet matching) is logged,
    /// and tried again once the files change again; the old certificate
    /// serves meanwhile. With a `Tls` made [from a configuration](Self::from_config)
    /// it returns at once.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping it stops the watch, nothing else.
    pub async fn reload_on_change(self, every: Duration) {
        if self.shared.files.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            // Compared with what was last read (at the start, or by any
            // reload): a change is tried once; a file still being written
            // changes again, and is tried again.
            if let Err(err) = self.read_files(false) {
                tracing::warn!(target: "lameduck::http", error = %err, cause = ?std::error::Error::source(&err).map(ToString::to_string), "the certificate files changed but do not load; the old certificate stays");
            }
        }
    }

    /// Serves new handshakes with `config`. Connections already open keep
    /// theirs.
    pub fn set_config(&self, config: Arc<ServerConfig>) {
        *self
            .shared
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// The configuration new handshakes use now.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.shared
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether there are files to [`reload`](Self::reload).
    pub(crate) fn has_files(&self) -> bool {
        self.shared.files.is_some()
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.handshake_timeout
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.shared.files)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl PemFiles {
    /// What the files hold now; an unreadable one is an error kept in
    /// place of its bytes, read again at the next look.
    fn contents(&self) -> Contents {
        (read(&self.cert), read(&self.key))
    }

    fn parse(&self, (cert, key): &Contents) -> Result<Arc<ServerConfig>, TlsError> {
        let cert_err = |kind, source| TlsError::new(kind, Some(self.cert.clone()), source);
        let key_err = |kind, source| TlsError::new(kind, Some(self.key.clone()), source);
        // An unreadable file reads as empty: say why it could not be read.
        for (path, bytes) in [(&self.cert, cert), (&self.key, key)] {
            if bytes.is_empty()
                && let Err(err) = std::fs::File::open(path)
            {
                return Err(TlsError::new(
                    TlsErrorKind::Read,
                    Some(path.clone()),
                    Some(err.into()),
                ));
            }
        }
        let certs = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| cert_err(pem_kind(&e, TlsErrorKind::NoCertificate), Some(e.into())))?;
        if certs.is_empty() {
            return Err(cert_err(TlsErrorKind::NoCertificate, None));
        }
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| key_err(pem_kind(&e, TlsErrorKind::NoKey), Some(e.into())))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| key_err(TlsErrorKind::Invalid, Some(e.into())))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| key_err(TlsErrorKind::Invalid, Some(e.into())))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// A file's bytes (none when it cannot be read: `parse` then says why).
fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

/// What a PEM error says about the file: unreadable, or holding nothing of
/// what was looked for (`none`), or malformed.
fn pem_kind(err: &rustls::pki_types::pem::Error, none: TlsErrorKind) -> TlsErrorKind {
    use rustls::pki_types::pem::Error;
    match err {
        Error::Io(_) => TlsErrorKind::Read,
        Error::NoItemsFound => none,
        _ => TlsErrorKind::Invalid,
    }
}
