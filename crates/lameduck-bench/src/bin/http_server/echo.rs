//! The upgraded pair: a connection that asks for `Upgrade: echo` gets
//! `101`, then every byte it sends back, as a WebSocket relay moves its
//! frames. What it measures is the upgraded IO's reads and writes, which
//! lameduck's server wraps to close the connection at Stopping.

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The echo handler, for `bare-echo` and `lameduck-echo`
/// (`Answer(echo)`): `101`, and the upgraded connection's bytes back.
pub(super) fn echo(mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut io = TokioIo::new(upgraded);
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = io.read(&mut buf).await {
            if io.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    let mut resp = Response::new(Full::default());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("upgrade"),
    );
    h.insert(header::UPGRADE, header::HeaderValue::from_static("echo"));
    resp
}
