//! One HTTP/2 frame as bytes, for the tests that speak HTTP/2 frame by
//! frame: the unit tests of the frame reader, of the IO wrapper and of the
//! late streams, and `tests/http_late_streams.rs`, which includes this file
//! by its path.

/// A frame: its 9-byte header (payload length, type, flags, stream id),
/// then `payload`.
pub(crate) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("a test frame's payload fits 24 bits");
    let mut v = len.to_be_bytes()[1..].to_vec();
    v.push(kind);
    v.push(flags);
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}
