//! Opening connections: plain TCP for `http://`, TCP then TLS for
//! `https://` (rustls with the ring provider, the one the `lameduck` library
//! serves with), with the HTTP version offered by ALPN.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use http::Uri;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::{ConfigError, HttpVersion};

/// How an `https://` server's certificate is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Trust {
    /// Only the certificates in this PEM file are trusted as roots
    /// (`--cacert`): the server's chain must lead to one of them and name
    /// the URL's host.
    CaFile(PathBuf),
    /// Any certificate is accepted, whoever signed it and whatever host it
    /// names (`--insecure`); the handshake's signatures are still checked.
    Insecure,
    /// Nothing given: an `https://` URL is refused, the drill knows no
    /// system roots.
    #[default]
    Unset,
}

/// A connection, plain or TLS, for hyper.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Opens connections to one URL's address.
#[derive(Clone)]
pub(crate) struct Dialer {
    addr: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Dialer {
    /// A dialer for `uri` at `addr`, offering `http` by ALPN when it is an
    /// `https://` URL.
    pub(crate) fn new(uri: &Uri, addr: SocketAddr, tls: Option<&Tls>, http: HttpVersion) -> Self {
        let tls = (uri.scheme_str() == Some("https")).then_some(tls).flatten();
        let tls = tls.map(|tls| {
            let host = uri.host().unwrap_or_default();
            // An IPv6 literal comes bracketed in a URI.
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(host.to_owned())
                .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into()));
            let config = match http {
                HttpVersion::Http1 => &tls.http1,
                HttpVersion::Http2 => &tls.http2,
            };
            (TlsConnector::from(Arc::clone(config)), name)
        });
        Dialer { addr, tls }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connects, and shakes hands when the URL is `https://`.
    ///
    /// # Errors
    ///
    /// The connect's error, or the handshake's (a certificate not trusted is
    /// `InvalidData`, with rustls's reason).
    pub(crate) async fn dial(&self) -> io::Result<Pin<Box<dyn Stream>>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => Ok(Box::pin(tcp)),
            Some((connector, name)) => {
                let tls = connector.connect(name.clone(), tcp).await?;
                Ok(Box::pin(tls))
            }
        }
    }
}

/// The client side of TLS, one configuration per ALPN offer.
#[derive(Debug)]
pub(crate) struct Tls {
    http1: Arc<ClientConfig>,
    http2: Arc<ClientConfig>,
}

impl Tls {
    /// Reads the trust (the CA file) once, for every connection of a drill.
    ///
    /// # Errors
    ///
    /// When `trust` is [`Trust::Unset`], or the CA file cannot be read or
    /// holds no certificate rustls accepts as a root.
    pub(crate) fn new(trust: &Trust) -> Result<Self, ConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|err| ConfigError::new(format!("TLS: {err}")))?;
        let builder = match trust {
            Trust::Unset => {
                return Err(ConfigError::new(
                    "an https:// URL needs --cacert FILE (the CA that signed the server's \
                     certificate) or --insecure",
                ));
            }
            Trust::CaFile(path) => builder.with_root_certificates(roots(path)?),
            Trust::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(
                    provider.signature_verification_algorithms,
                ))),
        };
        let config = builder.with_no_client_auth();
        let offer = |alpn: &[u8]| {
            let mut config = config.clone();
            config.alpn_protocols = vec![alpn.to_vec()];
            Arc::new(config)
        };
        Ok(Tls {
            http1: offer(b"http/1.1"),
            http2: offer(b"h2"),
        })
    }
}

fn roots(path: &Path) -> Result<RootCertStore, ConfigError> {
    let bad = |why: String| ConfigError::new(format!("--cacert {}: {why}", path.display()));
    let bytes = std::fs::read(path).map_err(|err| bad(format!("cannot read it: {err}")))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|err| bad(format!("not PEM: {err}")))?;
        roots
            .add(cert)
            .map_err(|err| bad(format!("a certificate rustls refuses: {err}")))?;
    }
    if roots.is_empty() {
        return Err(bad("no CERTIFICATE block in it".to_owned()));
    }
    Ok(roots)
}

/// `--insecure`: any certificate for any name, signatures still checked.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_without_a_trust_is_refused_with_the_flags_to_give() {
        let err = Tls::new(&Trust::Unset).unwrap_err();
        assert!(err.to_string().contains("--cacert FILE"), "{err}");
        assert!(err.to_string().contains("--insecure"), "{err}");
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        let path = std::env::temp_dir().join(format!("drill-cacert-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = Tls::new(&Trust::CaFile(path.clone())).unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
        let err = Tls::new(&Trust::CaFile("/nonexistent/ca.pem".into())).unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
    }
}
