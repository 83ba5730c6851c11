//! HTTPS: ALPN picks HTTP/2 or HTTP/1.1, a reload changes the certificate
//! of new handshakes only (or, when the files are bad, nothing), and the
//! shutdown's guarantees hold through TLS: a request already sent is
//! served, a handshake in progress holds nothing up, a response counts
//! until it is on the wire, and closes say `close_notify`.
#![cfg(feature = "tls")]

mod http_support;

use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Full};
use http_support::tls::{Cert, PemDir, client, connect, presented};
use http_support::{H1, H2, Running, budget, handler, text};
use lameduck::http::{Server, Tls, TlsErrorKind};
use lameduck::{ExitStatus, Phase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LONG: Duration = Duration::from_secs(60);
/// A bound on each wait below, never reached when the test passes.
const BOUND: Duration = Duration::from_secs(20);

/// An HTTPS server on a certificate of its own, read from PEM files.
struct Https {
    cert: Cert,
    pem: PemDir,
    tls: Tls,
    app: Running,
}

async fn https<S>(service: S, configure: impl FnOnce(Server<S>) -> Server<S>) -> Https
where
    Server<S>: Into<lameduck::Component>,
{
    let cert = Cert::new();
    let pem = PemDir::new(&cert);
    let tls = Tls::from_pem_files(pem.cert(), pem.key()).unwrap();
    let app = Running::start(budget(Duration::ZERO, LONG, LONG), service, |s| {
        configure(s.tls(tls.clone()))
    })
    .await;
    Https {
        cert,
        pem,
        tls,
        app,
    }
}

type Req = http::Request<hyper::body::Incoming>;
type Res = Response<Full<Bytes>>;

/// Answers with the HTTP version the request came in.
fn hello() -> impl tower_service::Service<
    Req,
    Response = Res,
    Error = std::convert::Infallible,
    Future = http_support::BoxFut<Result<Res, std::convert::Infallible>>,
> + Clone {
    handler(|req: Req| {
        let version = format!("{:?}", req.version());
        async move { Response::new(Full::new(Bytes::from(version))) }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_serves_http2_and_http1_on_one_https_port() {
    let Https { cert, app, .. } = https(hello(), |s| s).await;

    let h2 = connect(app.addr, &client(&[&cert], &[b"h2", b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut h2 = H2::over(h2).await;
    let resp = h2.request("/").await.unwrap();
    assert_eq!(resp.body(), "HTTP/2.0");

    let h1 = connect(app.addr, &client(&[&cert], &[b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(h1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut h1 = H1::over(h1).await;
    assert_eq!(h1.get("/").await.unwrap().body(), "HTTP/1.1");

    let report = app.stop().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_new_handshakes_with_the_new_certificate_and_open_connections_keep_working()
{
    let Https {
        cert: old,
        pem,
        tls,
        app,
    } = https(hello(), |s| s).await;
    let new = Cert::new();
    let trusting_both = client(&[&old, &new], &[b"http/1.1"]);
    let before = connect(app.addr, &trusting_both).await.unwrap();
    assert_eq!(presented(&before), old.der);
    let mut before = H1::over(before).await;
    assert_eq!(before.get("/").await.unwrap().status(), 200);

    pem.write(&new.cert_pem, &new.key_pem);
    tls.reload().expect("the new files load");

    let after = connect(app.addr, &trusting_both).await.unwrap();
    assert_eq!(
        presented(&after),
        new.der,
        "a new handshake after the reload"
    );
    let mut after = H1::over(after).await;
    assert_eq!(after.get("/").await.unwrap().status(), 200);
    assert_eq!(
        before.get("/").await.unwrap().status(),
        200,
        "the connection made before the reload still serves"
    );
    drop((before, after));
    let report = app.stop().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_of_bad_files_keeps_the_old_certificate_and_says_why() {
    let Https {
        cert: old,
        pem,
        tls,
        app,
    } = https(hello(), |s| s).await;
    let other = Cert::new();

    // A key that belongs to another certificate.
    pem.write(&old.cert_pem, &other.key_pem);
    let err = tls.reload().unwrap_err();
    assert_eq!(err.kind(), TlsErrorKind::Invalid, "{err}");
    assert_eq!(err.path(), Some(pem.key().as_path()));
    let why = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(why.contains("tls.key"), "{why}");

    // A certificate file half written.
    pem.write(&old.cert_pem[..old.cert_pem.len() / 2], &old.key_pem);
    let err = tls.reload().unwrap_err();
    assert_eq!(err.kind(), TlsErrorKind::Invalid, "{err}");

    // No key at all.
    pem.write(&old.cert_pem, "");
    assert_eq!(tls.reload().unwrap_err().kind(), TlsErrorKind::NoKey);

    let stream = connect(app.addr, &client(&[&old], &[b"http/1.1"]))
        .await
        .expect("handshakes still work");
    assert_eq!(presented(&stream), old.der, "the old certificate is served");
    drop(stream);
    let report = app.stop().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
}

/// Files that change are picked up without anyone asking: a Kubernetes
/// Secret volume, or a certificate renewed in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_on_change_serves_the_certificate_the_files_hold_now() {
    let Https {
        cert: old,
        pem,
        tls,
        app,
    } = https(hello(), |s| s).await;
    let new = Cert::new();
    let watch = tokio::spawn(tls.clone().reload_on_change(Duration::from_millis(10)));
    let trusting_both = client(&[&old, &new], &[b"http/1.1"]);
    pem.write(&new.cert_pem, &new.key_pem);
    // Observable state, polled within a bound.
    tokio::time::timeout(BOUND, async {
        loop {
            let stream = connect(app.addr, &trusting_both).await.unwrap();
            if presented(&stream) == new.der {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the new certificate is served");
    watch.abort();
    let report = app.stop().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
}

/// The app's reload (what the control socket's `reload` calls) reloads the
/// server's certificate, and names the server when its files are bad.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_reload_reloads_the_servers_certificate_and_names_it_when_the_files_are_bad() {
    let Https { pem, app, .. } = https(hello(), |s| s.name("api")).await;
    let new = Cert::new();

    pem.write(&new.cert_pem, &new.key_pem);
    let reloaded = app.handle.reload().expect("the reload succeeds");
    assert_eq!(reloaded, vec!["api".into()] as Vec<std::sync::Arc<str>>);
    let stream = connect(app.addr, &client(&[&new], &[b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(presented(&stream), new.der);

    pem.write("not a certificate", &new.key_pem);
    let err = app.handle.reload().unwrap_err();
    let failed: Vec<_> = err.failures().map(|(name, _)| name.to_string()).collect();
    assert_eq!(failed, ["api"], "{err}");
    assert!(err.to_string().contains("tls.crt"), "{err}");
    let stream = connect(app.addr, &client(&[&new], &[b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(
        presented(&stream),
        new.der,
        "the last good certificate stays"
    );
    drop(stream);
    let report = app.stop().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_still_handshaking_at_stopping_does_not_hold_the_shutdown_up() {
    let cert = Cert::new();
    let pem = PemDir::new(&cert);
    // A handshake timeout far beyond the bound: only the shutdown can end
    // the stalled handshake in time.
    let tls = Tls::from_pem_files(pem.cert(), pem.key())
        .unwrap()
        .handshake_timeout(LONG);
    let mut app = Running::start(budget(Duration::ZERO, LONG, LONG), hello(), |s| {
        s.tls(tls).first_request_grace(Duration::from_millis(50))
    })
    .await;
    // Connected, then a few bytes of a ClientHello, then nothing.
    let mut stalled = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stalled.write_all(&[22, 3, 1, 0, 200, 1]).await.unwrap();

    app.handle.shutdown("test");
    let report = tokio::time::timeout(BOUND, app.report())
        .await
        .expect("the stalled handshake does not hold the shutdown up");
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(BOUND, stalled.read_to_end(&mut rest))
        .await
        .expect("the server closed the stalled connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_https_connection_closed_at_stopping_ends_with_close_notify() {
    let Https { cert, app, .. } = https(handler(|_| async { text("hi") }), |s| s).await;
    let mut stream = connect(app.addr, &client(&[&cert], &[b"http/1.1"]))
        .await
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut body = [0u8; 2];
    stream.read_exact(&mut body).await.unwrap();

    let report = app.stop().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
    // rustls reports a close without close_notify as an unexpected end.
    let mut rest = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut rest))
        .await
        .expect("closed")
        .expect("a clean TLS close (close_notify), not a truncation");
    assert!(rest.is_empty());
}

/// hyper alone would close the idle connection with the next request
/// unread; over TLS the request is in the socket as a record nobody has
/// decrypted yet. It is served.
#[test]
fn a_request_already_sent_over_tls_at_stopping_is_served_not_reset() {
    // One thread: nothing runs between the write below and the shutdown,
    // so the server learns of the stop before it reads the request.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let Https { cert, mut app, .. } = https(handler(|_| async { text("hi") }), |s| s).await;
        let mut stream = connect(app.addr, &client(&[&cert], &[b"http/1.1"]))
            .await
            .unwrap();
        let request = b"GET / HTTP/1.1\r\nhost: test\r\n\r\n";
        stream.write_all(request).await.unwrap();
        assert!(read_head(&mut stream).await.starts_with("HTTP/1.1 200"));
        let mut body = [0u8; 2];
        stream.read_exact(&mut body).await.unwrap();

        // The connection is idle. Write the next request and stop, without
        // yielding in between (a write that had to wait would).
        use futures_util::FutureExt;
        stream
            .write_all(request)
            .now_or_never()
            .expect("written at once")
            .unwrap();
        app.handle.shutdown("test");
        let report = app.report().await;
        assert_eq!(report.status(), ExitStatus::Clean, "{report}");

        let second = read_head(&mut stream).await;
        assert!(
            second.starts_with("HTTP/1.1 200"),
            "the request sent was not served: {second:?}"
        );
        assert!(
            second.to_ascii_lowercase().contains("connection: close"),
            "{second}"
        );
        let mut rest = Vec::new();
        stream
            .read_to_end(&mut rest)
            .await
            .expect("a clean close, not a reset");
        assert_eq!(rest, b"hi");
    });
}

/// A body far larger than the socket buffers and rustls's, to a client
/// that pauses until Stopping: it arrives whole, and the shutdown waits for
/// it, HTTP/1.1 (flushed through TLS) and HTTP/2 (each stream's last frame
/// flushed) alike.
async fn an_https_download_paused_at_stopping_arrives_whole(alpn: &'static [u8]) {
    const SIZE: usize = 8 << 20;
    let body: Bytes = (0..SIZE)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let service = {
        let body = body.clone();
        handler(move |_| {
            let body = body.clone();
            async move { Response::new(Full::new(body)) }
        })
    };
    let Https { cert, mut app, .. } = https(service, |s| s).await;
    let stream = connect(app.addr, &client(&[&cert], &[alpn])).await.unwrap();
    let req = http::Request::get("http://test/big")
        .header("host", "test")
        .body(Full::default())
        .unwrap();
    let resp = if alpn == b"h2" {
        let mut h2 = H2::over(stream).await;
        h2.send.send_request(req).await.unwrap()
    } else {
        let mut h1 = H1::over(stream).await;
        h1.send.send_request(req).await.unwrap()
    };
    // Nothing of the body is read until Stopping.
    app.handle.shutdown("test");
    app.handle.reached(Phase::Stopping).await;
    let got = resp
        .into_body()
        .collect()
        .await
        .expect("no reset")
        .to_bytes();
    assert!(got == body, "the body arrived cut or corrupted");
    let report = app.report().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
    assert_eq!(report.work.in_flight_at_stop, 1, "{report}");
    assert_eq!(report.work.finished, 1, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_http1_response_still_being_written_at_stopping_arrives_whole() {
    an_https_download_paused_at_stopping_arrives_whole(b"http/1.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_http2_response_still_being_written_at_stopping_arrives_whole() {
    an_https_download_paused_at_stopping_arrives_whole(b"h2").await;
}

async fn read_head<T: tokio::io::AsyncRead + Unpin>(stream: &mut T) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(0) | Err(_) => break,
            Ok(_) => head.push(byte[0]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}
