//! HTTP/2 as it crosses the socket: which response streams are still open
//! on the wire, and when each one's last frame has been handed over.
//!
//! hyper tells its caller nothing about streams; h2 queues each stream's
//! data behind its flow-control window, so a response body can be over for
//! hyper while megabytes of it wait for a client that stopped reading. The
//! IO wrapper feeds every byte read and written through a [`Frames`]
//! reader, nine bytes of frame header at a time (payloads are skipped, not
//! copied), and [`Streams`] keeps the open response streams: begun by the
//! server's `HEADERS`, ended by `END_STREAM` on its `DATA` or trailers, or
//! by a `RST_STREAM` from either side (RFC 9113, sections 4.1, 5.1 and 6).

use crate::http::conn::ConnState;

pub(super) const DATA: u8 = 0x0;
pub(super) const HEADERS: u8 = 0x1;
pub(super) const RST_STREAM: u8 = 0x3;
pub(super) const PING: u8 = 0x6;
pub(super) const GOAWAY: u8 = 0x7;
pub(super) const WINDOW_UPDATE: u8 = 0x8;
pub(super) const END_STREAM: u8 = 0x1;
/// A PING's flag: this one answers the peer's.
pub(super) const ACK: u8 = 0x1;

/// The client's connection preface, which comes before its first frame.
pub(super) const PREFACE_LEN: usize = 24;

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Head {
    pub(super) len: u32,
    pub(super) kind: u8,
    pub(super) flags: u8,
    pub(super) stream: u32,
}

/// What a [`Frames`] reader finds in the bytes fed to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// A frame header, and where it began: its offset in the bytes of this
    /// feed, negative when it began in bytes fed before.
    Head(Head, isize),
    /// The first eight bytes of a `PING` or `GOAWAY` payload (a PING's
    /// opaque data; a GOAWAY's last stream id and error code), after the
    /// frame's [`Found::Head`].
    Body(Head, [u8; 8]),
}

/// Splits one direction of a connection into frame headers.
#[derive(Debug, Default)]
pub(super) struct Frames {
    head: [u8; 9],
    have: usize,
    /// Bytes still to pass over: a payload, or the client's preface.
    skip: usize,
    /// The frame whose payload is being kept, and how much of it is.
    body: Option<(Head, [u8; 8], usize)>,
}

impl Frames {
    /// A reader for what the client sends, which begins with the preface.
    pub(super) fn client() -> Self {
        Self {
            skip: PREFACE_LEN,
            ..Self::default()
        }
    }

    /// The bytes of a frame header begun and not yet complete.
    pub(super) fn partial(&self) -> &[u8] {
        &self.head[..self.have]
    }

    /// Feeds `bytes`, calling `on` for each complete frame header, and for
    /// the start of each `PING` and `GOAWAY` payload.
    pub(super) fn feed(&mut self, bytes: &[u8], mut on: impl FnMut(Found)) {
        let mut at = 0;
        while at < bytes.len() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len() - at);
                if let Some((head, body, kept)) = &mut self.body {
                    let k = n.min(8 - *kept);
                    body[*kept..*kept + k].copy_from_slice(&bytes[at..at + k]);
                    *kept += k;
                    if *kept == 8 {
                        on(Found::Body(*head, *body));
                        self.body = None;
                    }
                }
                self.skip -= n;
                at += n;
                continue;
            }
            let h = if self.have == 0
                && let Some(whole) = bytes[at..].first_chunk::<9>()
            {
                // A whole header at hand (nearly always): read in place.
                at += 9;
                *whole
            } else {
                let n = (9 - self.have).min(bytes.len() - at);
                self.head[self.have..self.have + n].copy_from_slice(&bytes[at..at + n]);
                self.have += n;
                at += n;
                if self.have < 9 {
                    continue;
                }
                self.have = 0;
                self.head
            };
            let head = Head {
                len: u32::from_be_bytes([0, h[0], h[1], h[2]]),
                kind: h[3],
                flags: h[4],
                stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
            };
            self.skip = head.len as usize;
            // Both payloads are at least eight bytes when well formed; a
            // shorter one is h2's to refuse.
            self.body =
                (matches!(head.kind, PING | GOAWAY) && head.len >= 8).then_some((head, [0; 8], 0));
            on(Found::Head(head, at as isize - 9));
        }
    }
}

/// The response streams open on one connection's wire.
#[derive(Debug, Default)]
pub(super) struct Streams {
    /// Each open stream and the data bytes written on it so far. A handful
    /// at a time, so a vector beats a map.
    open: Vec<(u32, u64)>,
    /// Streams whose last frame has been written, by their data bytes:
    /// on the wire at the next flush (a write into a buffering stream, as
    /// TLS is, is not yet a write to the socket).
    written: Vec<u64>,
    /// Response header blocks begun on the wire so far (written).
    begun: usize,
}

impl Streams {
    /// A frame the server wrote.
    pub(super) fn sent(&mut self, found: Found, conn: &ConnState) {
        let Found::Head(head, _) = found else { return };
        match head.kind {
            HEADERS => match self.find(head.stream) {
                // Trailers: the body's last frame.
                Some(i) if head.flags & END_STREAM != 0 => self.end(i),
                Some(_) => {}
                None => {
                    self.begun += 1;
                    // With END_STREAM the response has no body: nothing was
                    // parked for it (its body was never polled).
                    if head.flags & END_STREAM == 0 {
                        self.open.push((head.stream, 0));
                    }
                }
            },
            DATA => {
                if let Some(i) = self.find(head.stream) {
                    self.open[i].1 += u64::from(head.len);
                    if head.flags & END_STREAM != 0 {
                        self.end(i);
                    }
                }
            }
            RST_STREAM => self.reset(head.stream),
            _ => return,
        }
        self.publish(conn);
    }

    /// A frame the client sent.
    pub(super) fn received(&mut self, found: Found, conn: &ConnState) {
        if let Found::Head(head, _) = found
            && head.kind == RST_STREAM
        {
            self.reset(head.stream);
            self.publish(conn);
        }
    }

    fn find(&self, stream: u32) -> Option<usize> {
        self.open.iter().position(|&(s, _)| s == stream)
    }

    fn end(&mut self, i: usize) {
        let (_, bytes) = self.open.swap_remove(i);
        self.written.push(bytes);
    }

    /// The connection was flushed: every stream written in full is on the
    /// wire.
    pub(super) fn flushed(&mut self, conn: &ConnState) {
        conn.set_begun(self.begun);
        if self.written.is_empty() {
            return;
        }
        for bytes in self.written.drain(..) {
            conn.release_stream(bytes);
        }
        self.publish(conn);
    }

    fn reset(&mut self, stream: u32) {
        if let Some(i) = self.find(stream) {
            // h2 drops what it had queued: nothing more will be written.
            self.open.swap_remove(i);
        }
    }

    fn publish(&self, conn: &ConnState) {
        let open = self.open.len() + self.written.len();
        conn.set_open_streams(open);
        // Nothing open on the wire and every response the service gave has
        // begun there: no body can still be waiting, whatever is parked
        // (a body whose stream the client reset).
        if open == 0 && conn.has_parked() && conn.responses() == self.begun {
            conn.release_all_parked();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: u32, kind: u8, flags: u8, stream: u32) -> Vec<u8> {
        let mut v = len.to_be_bytes()[1..].to_vec();
        v.push(kind);
        v.push(flags);
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend(std::iter::repeat_n(0xab, len as usize));
        v
    }

    #[test]
    fn frame_headers_are_found_across_any_split_of_the_bytes() {
        let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        wire.extend(frame(6, 0x4, 0, 0));
        wire.extend(frame(20, HEADERS, 0x4, 1));
        wire.extend(frame(300, DATA, END_STREAM, 1));
        wire.extend(frame(4, RST_STREAM, 0, 3));
        let want = vec![
            Head {
                len: 6,
                kind: 0x4,
                flags: 0,
                stream: 0,
            },
            Head {
                len: 20,
                kind: HEADERS,
                flags: 0x4,
                stream: 1,
            },
            Head {
                len: 300,
                kind: DATA,
                flags: END_STREAM,
                stream: 1,
            },
            Head {
                len: 4,
                kind: RST_STREAM,
                flags: 0,
                stream: 3,
            },
        ];
        for chunk in [1, 2, 5, 9, 10, 64, wire.len()] {
            let mut frames = Frames::client();
            assert!(frames.partial().is_empty());
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                frames.feed(piece, |found| {
                    if let Found::Head(head, _) = found {
                        got.push(head);
                    }
                });
            }
            assert_eq!(got, want, "split every {chunk} bytes");
        }
    }

    #[test]
    fn a_response_stream_stays_open_on_the_wire_until_its_last_frame() {
        let conn = ConnState::new(None);
        let mut streams = Streams::default();
        let head = |len, kind, flags, stream| {
            Found::Head(
                Head {
                    len,
                    kind,
                    flags,
                    stream,
                },
                0,
            )
        };
        streams.sent(head(10, HEADERS, 0x4, 1), &conn);
        streams.sent(head(10, HEADERS, 0x4 | END_STREAM, 3), &conn);
        assert!(conn.is_busy(), "stream 1 has begun and not ended");
        streams.sent(head(100, DATA, 0, 1), &conn);
        assert!(conn.is_busy());
        streams.sent(head(100, DATA, END_STREAM, 1), &conn);
        assert!(
            conn.is_busy(),
            "stream 1's last frame is written, not flushed"
        );
        streams.flushed(&conn);
        assert!(
            !conn.is_busy(),
            "stream 1 ended with its last DATA frame, flushed"
        );

        streams.sent(head(10, HEADERS, 0x4, 5), &conn);
        assert!(conn.is_busy());
        streams.received(head(4, RST_STREAM, 0, 5), &conn);
        assert!(!conn.is_busy(), "the client reset stream 5");
    }

    #[test]
    fn headers_say_where_they_began_and_ping_payloads_are_kept_across_splits() {
        let mut wire = frame(4, WINDOW_UPDATE, 0, 5);
        let mut ping = frame(0, PING, ACK, 0);
        ping[2] = 8;
        ping.extend(1..=8u8);
        wire.extend(&ping);
        for chunk in [1, 3, 7, 9, 13, wire.len()] {
            let mut frames = Frames::default();
            let mut found = Vec::new();
            let mut fed = 0isize;
            for piece in wire.chunks(chunk) {
                frames.feed(piece, |f| {
                    found.push(match f {
                        Found::Head(head, at) => Found::Head(head, fed + at),
                        body => body,
                    })
                });
                fed += piece.len() as isize;
            }
            let ping_head = Head {
                len: 8,
                kind: PING,
                flags: ACK,
                stream: 0,
            };
            assert_eq!(
                found,
                [
                    Found::Head(
                        Head {
                            len: 4,
                            kind: WINDOW_UPDATE,
                            flags: 0,
                            stream: 5
                        },
                        0
                    ),
                    Found::Head(ping_head, 13),
                    Found::Body(ping_head, [1, 2, 3, 4, 5, 6, 7, 8]),
                ],
                "split every {chunk} bytes"
            );
        }
    }
}
