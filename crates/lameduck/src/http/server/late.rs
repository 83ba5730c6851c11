//! HTTP/2 streams a client opens after the server's final GOAWAY, and the
//! frames for them that h2 must not see.
//!
//! A graceful HTTP/2 shutdown sends two GOAWAYs (RFC 9113, section 6.8):
//! the first with the last stream id 2^31-1 and a PING, the second, once
//! the PING is answered, with the last stream the server processed. A
//! client that opened a stream between the two (it had not read the
//! second yet) has that stream ignored, as it should be; but h2 (0.4.20,
//! the newest) then takes the client's `WINDOW_UPDATE` for it as a frame on
//! an idle stream and ends the connection with `GOAWAY(PROTOCOL_ERROR)`
//! (`ensure_not_idle` in its `proto/streams/streams.rs`), failing every
//! call still in flight on it. gRPC clients send that `WINDOW_UPDATE` right
//! after their request: grpcio hit it in about one drain in seven.
//!
//! The IO wrapper reads every frame header the client sends before h2
//! does, so it works out the same last stream id h2 chose — the highest
//! stream the client opened before its answer to the shutdown PING (h2
//! reads frames in order, and chooses at that answer) — and turns each
//! later `WINDOW_UPDATE` for a stream above it into a frame of an unknown
//! type, which h2, as RFC 9113 section 4.1 requires, ignores. The stream
//! does not exist for the server: there is no window to update.

use super::wire::{ACK, Found, GOAWAY, HEADERS, PING, WINDOW_UPDATE};

/// The frame type a dropped frame is given: the first of the types RFC
/// 9113 (section 11.2) keeps for experiments, unknown to every peer.
pub(super) const IGNORED: u8 = 0xf0;

/// The last stream id of a graceful shutdown's first GOAWAY.
const MAX_STREAM: u32 = 0x7fff_ffff;

/// Where one connection is in its graceful shutdown.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Goaway {
    /// No GOAWAY(2^31-1) written yet.
    #[default]
    None,
    /// GOAWAY(2^31-1) written; the PING that follows it not yet.
    First,
    /// The shutdown PING written, with this payload; its answer not yet read.
    Pinged([u8; 8]),
    /// The answer read: the last stream id is chosen.
    Final,
}

/// One connection's shutdown, as its frames show it.
#[derive(Debug, Default)]
pub(super) struct LateStreams {
    goaway: Goaway,
    /// The highest stream the client opened before the answer to the
    /// shutdown PING: the final GOAWAY's last stream id, or above it (a
    /// stream h2 refused counts here and not there; h2 knows that one).
    opened: u32,
}

impl LateStreams {
    /// A frame the server wrote.
    pub(super) fn sent(&mut self, found: Found) {
        let Found::Body(head, body) = found else {
            return;
        };
        match (head.kind, self.goaway) {
            (GOAWAY, Goaway::None) => {
                let last = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) & MAX_STREAM;
                if last == MAX_STREAM {
                    self.goaway = Goaway::First;
                }
            }
            // The first PING after it is h2's shutdown PING: h2 sends no
            // other PING of its own while that one is unanswered.
            (PING, Goaway::First) if head.flags & ACK == 0 => self.goaway = Goaway::Pinged(body),
            _ => {}
        }
    }

    /// A frame the client sent; whether h2 must not see it.
    pub(super) fn received(&mut self, found: Found) -> bool {
        match found {
            Found::Head(head, _) if self.goaway == Goaway::Final => {
                head.kind == WINDOW_UPDATE && head.stream > self.opened
            }
            Found::Head(head, _) => {
                if head.kind == HEADERS {
                    self.opened = self.opened.max(head.stream);
                }
                false
            }
            Found::Body(head, body) => {
                if head.kind == PING && head.flags & ACK != 0 && self.goaway == Goaway::Pinged(body)
                {
                    self.goaway = Goaway::Final;
                }
                false
            }
        }
    }

    /// Whether the final GOAWAY's last stream id is chosen: from here on, a
    /// frame header must reach h2 whole or not at all.
    pub(super) fn is_final(&self) -> bool {
        self.goaway == Goaway::Final
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::server::wire::test_frame::frame;
    use crate::http::server::wire::{Frames, Head};

    const SHUTDOWN: [u8; 8] = [0x0b, 0x7b, 0xa2, 0xf0, 0x8b, 0x9b, 0xfe, 0x54];

    /// What the server writes for a graceful shutdown: GOAWAY(2^31-1), the
    /// shutdown PING.
    fn shutdown_begun(late: &mut LateStreams) {
        let mut out = frame(GOAWAY, 0, 0, &[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        out.extend(frame(PING, 0, 0, &SHUTDOWN));
        Frames::default().feed(&out, |found| late.sent(found));
    }

    /// Feeds the client's bytes; the headers h2 must not see.
    fn client(late: &mut LateStreams, frames: &mut Frames, bytes: &[u8]) -> Vec<Head> {
        let mut dropped = Vec::new();
        frames.feed(bytes, |found| {
            if late.received(found)
                && let Found::Head(head, _) = found
            {
                dropped.push(head);
            }
        });
        dropped
    }

    #[test]
    fn a_window_update_for_a_stream_opened_after_the_shutdown_ping_is_answered_is_dropped() {
        let mut late = LateStreams::default();
        let mut frames = Frames::default();
        let mut wire = frame(HEADERS, 0x5, 1, &[0x82]);
        wire.extend(frame(HEADERS, 0x5, 3, &[0x82]));
        assert!(client(&mut late, &mut frames, &wire).is_empty());
        shutdown_begun(&mut late);
        // The answer, then a stream opened before the final GOAWAY arrived,
        // and window updates for it, for an older stream and the connection.
        let mut wire = frame(PING, ACK, 0, &SHUTDOWN);
        wire.extend(frame(HEADERS, 0x5, 5, &[0x82]));
        wire.extend(frame(WINDOW_UPDATE, 0, 5, &[0, 0, 1, 0]));
        wire.extend(frame(WINDOW_UPDATE, 0, 3, &[0, 0, 1, 0]));
        wire.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
        let dropped = client(&mut late, &mut frames, &wire);
        assert!(late.is_final());
        assert_eq!(
            dropped,
            [Head {
                len: 4,
                kind: WINDOW_UPDATE,
                flags: 0,
                stream: 5
            }]
        );
    }

    #[test]
    fn nothing_is_dropped_before_the_shutdown_ping_is_answered() {
        let mut late = LateStreams::default();
        let mut frames = Frames::default();
        // A user PING's answer, and a GOAWAY that is not a graceful one's
        // first, change nothing.
        Frames::default().feed(&frame(GOAWAY, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0]), |f| {
            late.sent(f)
        });
        let mut wire = frame(PING, ACK, 0, &SHUTDOWN);
        wire.extend(frame(HEADERS, 0x5, 1, &[0x82]));
        wire.extend(frame(WINDOW_UPDATE, 0, 7, &[0, 0, 1, 0]));
        assert!(client(&mut late, &mut frames, &wire).is_empty());
        shutdown_begun(&mut late);
        let wire = frame(PING, ACK, 0, &[1; 8]);
        assert!(client(&mut late, &mut frames, &wire).is_empty());
        assert!(!late.is_final(), "an answer to another PING");
    }
}
