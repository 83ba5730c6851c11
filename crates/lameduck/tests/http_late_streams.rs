//! An HTTP/2 client that opens a stream just after the server's final
//! GOAWAY, and sends a `WINDOW_UPDATE` for it (as gRPC clients do): the
//! stream is ignored, and the connection and its streams in flight are
//! not. Spoken frame by frame over a real socket, to hit the exact order.
#![cfg(feature = "http")]

mod http_support;

use std::sync::Arc;
use std::time::Duration;

use http_support::{Running, budget, handler, text};
use lameduck::Phase;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

const LONG: Duration = Duration::from_secs(60);
/// A bound on every read, never reached when the test passes.
const BOUND: Duration = Duration::from_secs(20);

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

// The frame builder of the library's own unit tests: one for both.
#[path = "../src/http/server/wire/test_frame.rs"]
mod test_frame;
use test_frame::frame;

/// A `GET` of `path` (HPACK: :method GET, :scheme http, a literal :path).
fn get(stream: u32, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
    block.extend_from_slice(path.as_bytes());
    frame(HEADERS, END_HEADERS | END_STREAM, stream, &block)
}

#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// The next frame from the server; `None` when it closed the connection.
async fn next(socket: &mut TcpStream) -> Option<Frame> {
    let mut head = [0u8; 9];
    let read = tokio::time::timeout(BOUND, socket.read_exact(&mut head))
        .await
        .expect("the server said something in time");
    if read.is_err() {
        return None;
    }
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0; len];
    tokio::time::timeout(BOUND, socket.read_exact(&mut payload))
        .await
        .expect("a whole frame in time")
        .ok()?;
    Some(Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        payload,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_update_for_a_stream_opened_after_the_final_goaway_fails_no_stream_in_flight() {
    let release = Arc::new(Notify::new());
    let started = Arc::new(Notify::new());
    let service = {
        let (release, started) = (release.clone(), started.clone());
        handler(move |req| {
            let (release, started) = (release.clone(), started.clone());
            async move {
                if req.uri().path() == "/slow" {
                    started.notify_one();
                    release.notified().await;
                }
                text("done")
            }
        })
    };
    let app = Running::start(budget(LONG, LONG, LONG), service, |s| s).await;
    let mut socket = TcpStream::connect(app.addr).await.unwrap();
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    hello.extend(get(1, "/slow"));
    socket.write_all(&hello).await.unwrap();
    started.notified().await;

    app.handle.shutdown("test");
    app.handle.reached(Phase::Draining).await;
    // The server's SETTINGS (acknowledged), then GOAWAY(2^31-1) and its PING.
    let ping = loop {
        let f = next(&mut socket).await.expect("the shutdown PING");
        match f.kind {
            SETTINGS if f.flags & ACK == 0 => {
                socket
                    .write_all(&frame(SETTINGS, ACK, 0, &[]))
                    .await
                    .unwrap();
            }
            PING if f.flags & ACK == 0 => break f.payload,
            _ => {}
        }
    };
    // In one write: the PING's answer (the server chooses its last stream
    // now: 1), a stream opened before the final GOAWAY could arrive, and a
    // window update for that stream.
    let mut late = frame(PING, ACK, 0, &ping);
    late.extend(get(3, "/"));
    late.extend(frame(WINDOW_UPDATE, 0, 3, &[0, 1, 0, 0]));
    socket.write_all(&late).await.unwrap();

    // The final GOAWAY comes before the slow response is released, so the
    // late frames were read with stream 1 still in flight.
    let goaway = loop {
        let f = next(&mut socket).await.expect("the final GOAWAY");
        if f.kind == GOAWAY {
            break f;
        }
    };
    let last = u32::from_be_bytes(goaway.payload[..4].try_into().unwrap()) & 0x7fff_ffff;
    let code = u32::from_be_bytes(goaway.payload[4..8].try_into().unwrap());
    assert_eq!((last, code), (1, 0), "GOAWAY(last stream 1, NO_ERROR)");
    release.notify_one();

    let mut answered = false;
    let mut ended = false;
    let mut errors = Vec::new();
    while let Some(f) = next(&mut socket).await {
        match f.kind {
            HEADERS if f.stream == 1 => answered = true,
            DATA if f.stream == 1 && f.flags & END_STREAM != 0 => ended = true,
            GOAWAY => errors.push(u32::from_be_bytes(f.payload[4..8].try_into().unwrap())),
            _ => {}
        }
        if ended {
            break;
        }
    }
    assert!(
        errors.is_empty(),
        "the server ended the connection with GOAWAY codes {errors:?}"
    );
    assert!(
        answered && ended,
        "stream 1, in flight, got its whole response"
    );
}
