//! Unary gRPC calls over the drill's HTTP/2 client: the request a call is
//! sent as, and the status it ended with.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_TYPE, TE};
use http::{HeaderMap, HeaderValue, Method, Uri};

use crate::config::GrpcCall;
use crate::outcome::{RawOutcome, grpc_code_name};

/// `POST` to the method's path on the URL's authority, with the gRPC
/// content type, `te: trailers`, and the message in one uncompressed frame.
pub(super) fn request(call: &GrpcCall, url: &Uri, headers: &mut HeaderMap) -> (Method, Uri, Bytes) {
    let uri = call.uri(url);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(TE, HeaderValue::from_static("trailers"));
    let mut body = BytesMut::with_capacity(5 + call.message.len());
    body.put_u8(0);
    body.put_u32(u32::try_from(call.message.len()).unwrap_or(u32::MAX));
    body.put_slice(&call.message);
    (Method::POST, uri, body.freeze())
}

/// How a call answered with HTTP `status` ended: its `grpc-status`, from the
/// trailers or (a trailers-only answer) the headers, and for any but `OK`
/// the detail (`gRPC UNAVAILABLE: draining`). An answer without one is
/// sorted by its HTTP status, as a proxy's would be.
pub(super) fn ending(
    status: u16,
    headers: &HeaderMap,
    trailers: Option<&HeaderMap>,
) -> (RawOutcome, Option<String>) {
    let found = trailers
        .and_then(|t| t.get("grpc-status").map(|v| (t, v)))
        .or_else(|| headers.get("grpc-status").map(|v| (headers, v)));
    let Some((map, value)) = found else {
        return (
            RawOutcome::Status(status),
            Some(format!("HTTP {status} without a grpc-status")),
        );
    };
    let Some(code) = value.to_str().ok().and_then(|v| v.parse::<u8>().ok()) else {
        return (
            RawOutcome::Failed(crate::Outcome::Error),
            Some(format!("grpc-status {value:?} is not a status code")),
        );
    };
    let detail = (code != 0).then(|| {
        let name = grpc_code_name(code);
        match map.get("grpc-message").and_then(|m| m.to_str().ok()) {
            Some(message) if !message.is_empty() => {
                format!("gRPC {name}: {}", percent_decoded(message))
            }
            _ => format!("gRPC {name}"),
        }
    });
    (RawOutcome::Grpc(code), detail)
}

/// A `grpc-message` as sent: percent-encoded UTF-8 (bytes that do not
/// decode are kept as they came).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn a_call_is_a_post_of_one_framed_message_to_the_method_path() {
        let call = GrpcCall::new("a.B/C", &b"\x0a\x01x"[..]).unwrap();
        let mut headers = HeaderMap::new();
        let url: Uri = "https://h:1/ignored?q".parse().unwrap();
        let (method, uri, body) = request(&call, &url, &mut headers);
        assert_eq!(
            (method, uri.to_string()),
            (Method::POST, "https://h:1/a.B/C".to_owned())
        );
        assert_eq!(&body[..], b"\x00\x00\x00\x00\x03\x0a\x01x");
        assert_eq!(headers[CONTENT_TYPE], "application/grpc");
        assert_eq!(headers[TE], "trailers");
    }

    #[test]
    fn the_status_comes_from_the_trailers_or_a_trailers_only_answer() {
        let none = HeaderMap::new();
        let ok = map(&[("grpc-status", "0")]);
        assert_eq!(ending(200, &none, Some(&ok)), (RawOutcome::Grpc(0), None));
        let unavailable = map(&[("grpc-status", "14"), ("grpc-message", "draining")]);
        assert_eq!(
            ending(200, &unavailable, None),
            (
                RawOutcome::Grpc(14),
                Some("gRPC UNAVAILABLE: draining".to_owned())
            )
        );
        let encoded = map(&[
            ("grpc-status", "12"),
            ("grpc-message", "no%20such%20method%"),
        ]);
        assert_eq!(
            ending(200, &encoded, None).1.as_deref(),
            Some("gRPC UNIMPLEMENTED: no such method%")
        );
        assert_eq!(ending(503, &none, None).0, RawOutcome::Status(503));
        let bad = map(&[("grpc-status", "x")]);
        assert_eq!(
            ending(200, &none, Some(&bad)).0,
            RawOutcome::Failed(crate::Outcome::Error)
        );
    }
}
