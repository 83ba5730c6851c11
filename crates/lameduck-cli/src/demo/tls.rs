//! The demo's HTTPS: a certificate from PEM files (reloaded on the control
//! socket's `reload`, and whenever the files change), or a self-signed one
//! made at start.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use lameduck::http::Tls;

/// How often the certificate files are looked at for a change.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// `--tls-cert`, `--tls-key`, `--tls-self-signed`.
#[derive(Debug, clap::Args)]
pub(super) struct TlsFlags {
    /// Serve HTTPS with this certificate chain (PEM); reloaded without a
    /// restart on the control socket's `reload` and when the file changes
    #[arg(
        long,
        value_name = "PATH",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS with a self-signed certificate for localhost, made at
    /// start (clients need --insecure, or -k for curl)
    #[arg(long)]
    tls_self_signed: bool,
}

impl TlsFlags {
    /// The TLS to serve with, if any; starts watching the files.
    pub(super) fn load(&self) -> anyhow::Result<Option<Tls>> {
        if self.tls_self_signed {
            return self_signed().map(Some);
        }
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let tls = Tls::from_pem_files(cert, key).context("loading --tls-cert and --tls-key")?;
        tokio::spawn(tls.clone().reload_on_change(WATCH_EVERY));
        Ok(Some(tls))
    }
}

fn self_signed() -> anyhow::Result<Tls> {
    let made = rcgen::generate_simple_self_signed(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .context("making a self-signed certificate")?;
    let key = rustls_key(made.key_pair.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)
        .context("using the self-signed certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls::from_config(Arc::new(config)))
}

fn rustls_key(der: Vec<u8>) -> rustls::pki_types::PrivateKeyDer<'static> {
    rustls::pki_types::PrivateKeyDer::Pkcs8(der.into())
}
