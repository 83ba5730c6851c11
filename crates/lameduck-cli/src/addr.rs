//! Socket addresses on the command line: one parser for every address flag
//! of every subcommand, so that a bad value says what is wrong with it (a
//! port out of range is not "invalid socket address syntax").

use std::net::SocketAddr;

/// Parses `IP:PORT` (`127.0.0.1:8080`, `[::1]:8080`); port 0 picks a free
/// port.
///
/// # Errors
///
/// A message (clap prefixes the flag and the value): a port above 65535, a
/// port that is not a number, or a value that is not `IP:PORT` at all (a
/// host name, say), which then ends with `expected`, the forms the flag
/// takes.
pub fn parse_socket_addr(s: &str, expected: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    match s.rsplit_once(':') {
        Some((_, port)) if digits(port) && port.parse::<u16>().is_err() => {
            Err(format!("port {port} is out of range: a port is 0 to 65535"))
        }
        Some((_, port)) if !port.is_empty() && !digits(port) => {
            Err(format!("port {port:?} is not a number from 0 to 65535"))
        }
        _ => Err(format!("{s:?} is not an address; expected {expected}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_out_of_range_is_named_as_such() {
        let err =
            parse_socket_addr("127.0.0.1:99999", "IP:PORT (e.g. 127.0.0.1:8080)").unwrap_err();
        assert_eq!(err, "port 99999 is out of range: a port is 0 to 65535");
        let err = parse_socket_addr("[::1]:65536", "IP:PORT").unwrap_err();
        assert!(err.contains("port 65536 is out of range"), "{err}");
    }

    #[test]
    fn a_port_that_is_not_a_number_and_a_value_with_no_port_are_told_apart() {
        let err = parse_socket_addr("127.0.0.1:http", "IP:PORT (e.g. 127.0.0.1:8080)").unwrap_err();
        assert!(err.contains("port \"http\" is not a number"), "{err}");
        let err = parse_socket_addr("localhost", "IP:PORT (e.g. 127.0.0.1:8080)").unwrap_err();
        assert!(
            err.contains("expected IP:PORT (e.g. 127.0.0.1:8080)"),
            "{err}"
        );
        let err = parse_socket_addr("localhost:8080", "IP:PORT (e.g. 127.0.0.1:8080)").unwrap_err();
        assert!(err.contains("is not an address"), "{err}");
    }

    #[test]
    fn addresses_in_range_parse() {
        assert_eq!(
            parse_socket_addr("127.0.0.1:65535", "x").unwrap(),
            "127.0.0.1:65535".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(parse_socket_addr("[::]:0", "x").unwrap().port(), 0);
    }
}
