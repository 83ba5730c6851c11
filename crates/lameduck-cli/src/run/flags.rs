//! Parsing the values of `run`'s flags: checks, signals, sockets, restart
//! policies. Each parser returns a message clap prints as a usage error
//! (exit code 2), naming what it expected.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use nix::sys::signal::Signal;

use crate::addr::parse_socket_addr;

/// What a readiness or liveness check asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// `GET` on a plain-HTTP URL: a status 200–399 passes, as Kubernetes
    /// counts it.
    Http {
        /// `host:port` to connect to.
        authority: String,
        /// The path and query to ask for.
        path: String,
    },
    /// A TCP connect.
    Tcp(String),
    /// `sh -c CMD`: exit code 0 passes.
    Exec(String),
    /// The program's own `READY=1` on the notify socket.
    Notify,
}

impl FromStr for Probe {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        const FORMS: &str = "http://HOST:PORT/PATH, tcp:HOST:PORT, notify or exec:COMMAND";
        if s == "notify" {
            return Ok(Probe::Notify);
        }
        if let Some(cmd) = s.strip_prefix("exec:") {
            if cmd.trim().is_empty() {
                return Err("exec: needs a command, e.g. exec:test -f /tmp/ready".into());
            }
            return Ok(Probe::Exec(cmd.to_string()));
        }
        if let Some(addr) = s.strip_prefix("tcp:") {
            check_authority(addr)?;
            return Ok(Probe::Tcp(addr.to_string()));
        }
        if let Some(rest) = s.strip_prefix("http://") {
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            check_authority(authority)?;
            if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "{s:?}: the path has a space or a control character"
                ));
            }
            return Ok(Probe::Http {
                authority: authority.to_string(),
                path: path.to_string(),
            });
        }
        if s.starts_with("https://") {
            return Err(format!(
                "{s:?}: https is not supported; check the plain-HTTP port on loopback, or use exec:"
            ));
        }
        Err(format!("{s:?} is not a check; expected {FORMS}"))
    }
}

fn check_authority(a: &str) -> Result<(), String> {
    let Some((host, port)) = a.rsplit_once(':') else {
        return Err(format!("{a:?} has no port; expected HOST:PORT"));
    };
    if host.is_empty() {
        return Err(format!("{a:?} has no host; expected HOST:PORT"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{a:?}: {port:?} is not a port (1-65535)")),
    }
}

/// The signals `--forward` suggests: its default.
const FORWARDED: &[&str] = &["QUIT", "USR1", "USR2", "WINCH", "CONT"];

/// A signal given by name (`TERM`, `SIGTERM`, any case) or number, with
/// the same parser as every other signal flag; `examples` are what the
/// error suggests, values the flag accepts.
fn parse_signal(s: &str, examples: &[&str], takes_none: bool) -> Result<Signal, String> {
    crate::signal::parse(s, examples, takes_none).map(crate::signal::to_nix)
}

/// The signal to stop the program with: anything but the ones that cannot
/// stop a program or that lameduck keeps for itself.
pub fn parse_stop_signal(s: &str) -> Result<Signal, String> {
    let sig = parse_signal(s, &["TERM", "INT", "QUIT"], false)?;
    match sig {
        Signal::SIGSTOP
        | Signal::SIGTSTP
        | Signal::SIGTTIN
        | Signal::SIGTTOU
        | Signal::SIGCHLD
        | Signal::SIGCONT
        | Signal::SIGWINCH
        | Signal::SIGURG => Err(format!(
            "{} does not stop a program; use TERM, INT, QUIT or the one it stops on",
            sig.as_str()
        )),
        _ => Ok(sig),
    }
}

/// `--forward`: the signals to forward as they arrive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forwarded(pub Vec<Signal>);

/// Signals to forward as they arrive. The ones lameduck acts on itself, and
/// the ones that cannot be caught, are refused; `none` (any case, as the
/// signal names) forwards none.
pub fn parse_forwarded(s: &str) -> Result<Forwarded, String> {
    if s.trim().is_empty() {
        return Err(
            "the value is empty: give signals (e.g. QUIT,USR1), or `none` to forward none".into(),
        );
    }
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(Forwarded(Vec::new()));
    }
    let several = s.contains(',');
    s.split(',')
        .map(|part| {
            let sig = parse_signal(part, FORWARDED, !several).map_err(|err| {
                if several {
                    // `none` stands alone: it is not suggested in a list.
                    format!("{part:?} in {s:?}: {err}")
                } else {
                    err
                }
            })?;
            match sig {
                Signal::SIGTERM | Signal::SIGINT => Err(format!(
                    "{} starts lameduck's shutdown sequence; it cannot also be forwarded",
                    sig.as_str()
                )),
                Signal::SIGHUP => Err(
                    "SIGHUP restarts the program with zero downtime; it cannot also be forwarded"
                        .into(),
                ),
                Signal::SIGKILL | Signal::SIGSTOP => Err(format!(
                    "{} cannot be caught, so not forwarded",
                    sig.as_str()
                )),
                Signal::SIGCHLD => Err("SIGCHLD is how lameduck reaps; it is not forwarded".into()),
                _ => Ok(sig),
            }
        })
        .collect::<Result<_, _>>()
        .map(Forwarded)
}

/// `--listen NAME=ADDR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenSpec {
    /// The name the program finds in `LISTEN_FDNAMES`.
    pub name: String,
    /// Where to bind.
    pub addr: ListenAddr,
}

/// A TCP address or a Unix socket path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// `HOST:PORT`.
    Tcp(SocketAddr),
    /// `unix:PATH`.
    Unix(PathBuf),
}

impl FromStr for ListenSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let Some((name, addr)) = s.split_once('=') else {
            return Err(format!(
                "{s:?}: expected NAME=ADDR, e.g. http=0.0.0.0:8080 or api=unix:/run/api.sock"
            ));
        };
        if name.is_empty()
            || name.len() > 255
            || name.chars().any(|c| c == ':' || !c.is_ascii_graphic())
        {
            return Err(format!(
                "{name:?} is not a socket name: 1 to 255 printable ASCII characters, no ':' (LISTEN_FDNAMES)"
            ));
        }
        let addr = match addr.strip_prefix("unix:") {
            Some(path) if !path.is_empty() => ListenAddr::Unix(PathBuf::from(path)),
            Some(_) => return Err(format!("{s:?}: unix: needs a path")),
            None => ListenAddr::Tcp(parse_socket_addr(
                addr,
                "IP:PORT (e.g. 0.0.0.0:8080, [::]:8080) or unix:PATH",
            )?),
        };
        Ok(Self {
            name: name.to_string(),
            addr,
        })
    }
}

/// `--restart`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RestartWhen {
    /// Restart whenever the program ends, even with code 0.
    Always,
    /// Restart when it fails: a non-zero code, a signal, a failed liveness
    /// check.
    OnFailure,
    /// Never restart: lameduck exits when the program does.
    Never,
}

/// `--admin`: an address, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admin(pub Option<SocketAddr>);

/// `--admin`: an address, or `none`.
pub fn parse_admin(s: &str) -> Result<Admin, String> {
    if s == "none" {
        return Ok(Admin(None));
    }
    parse_socket_addr(s, "IP:PORT (e.g. 127.0.0.1:8081) or none").map(|a| Admin(Some(a)))
}

/// A threshold: a count of one or more.
pub fn parse_count(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?} is not a count of 1 or more")),
    }
}

/// A build error of the app, told as the flag that caused it:
/// `--flag PATH: why`.
pub fn flag_error(err: &lameduck::BuildError, paths: &PathFlags) -> String {
    use lameduck::BuildErrorKind as Kind;
    match (err.kind(), &paths.flight_record, &paths.control_socket) {
        (Kind::FlightRecord, Some(path), _) => {
            format!("--flight-record {}: {err}", path.display())
        }
        (Kind::Upgrade, _, Some(path)) => {
            // The library's message names its own setter next to the flag.
            let text = err.to_string();
            let named = format!(
                "{} (--control-socket / Upgrade::control_socket): ",
                path.display()
            );
            match text.strip_prefix(&named) {
                Some(why) => format!("--control-socket {}: {why}", path.display()),
                None => text,
            }
        }
        _ => err.to_string(),
    }
}

/// The flags of `run` that name a file, checked when the app is built.
pub struct PathFlags {
    pub flight_record: Option<std::path::PathBuf>,
    pub control_socket: Option<std::path::PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_check_form_is_understood() {
        assert_eq!(
            "http://127.0.0.1:3000/health?x=1".parse::<Probe>().unwrap(),
            Probe::Http {
                authority: "127.0.0.1:3000".into(),
                path: "/health?x=1".into()
            }
        );
        assert_eq!(
            "http://localhost:80".parse::<Probe>().unwrap(),
            Probe::Http {
                authority: "localhost:80".into(),
                path: "/".into()
            }
        );
        assert_eq!(
            "tcp:127.0.0.1:5432".parse::<Probe>().unwrap(),
            Probe::Tcp("127.0.0.1:5432".into())
        );
        assert_eq!("notify".parse::<Probe>().unwrap(), Probe::Notify);
        assert_eq!(
            "exec:test -f x".parse::<Probe>().unwrap(),
            Probe::Exec("test -f x".into())
        );
    }

    #[test]
    fn a_malformed_check_says_what_was_expected() {
        for bad in [
            "tcp:3000",
            "http://host:99999/",
            "https://x:1/",
            "exec:",
            "ready",
            "tcp::80",
        ] {
            assert!(bad.parse::<Probe>().is_err(), "{bad}");
        }
        assert!(
            "ready"
                .parse::<Probe>()
                .unwrap_err()
                .contains("expected http://")
        );
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_stop_signal("term").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_stop_signal("SIGQUIT").unwrap(), Signal::SIGQUIT);
        assert_eq!(parse_stop_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_stop_signal("SIGNOPE").is_err());
        assert!(parse_stop_signal("STOP").is_err());
        assert!(
            parse_forwarded("USR1,TERM")
                .unwrap_err()
                .contains("shutdown")
        );
        assert_eq!(
            parse_forwarded("usr1,usr2").unwrap().0,
            vec![Signal::SIGUSR1, Signal::SIGUSR2]
        );
        assert!(parse_forwarded("none").unwrap().0.is_empty());
    }

    #[test]
    fn forward_suggests_only_signals_it_forwards_and_takes_none_in_any_case() {
        for none in ["none", "NONE", " None "] {
            assert!(parse_forwarded(none).unwrap().0.is_empty(), "{none:?}");
        }
        for bad in [",", "USR1,", "NOPE", "0", "usr1,nope"] {
            let err = parse_forwarded(bad).unwrap_err();
            assert!(err.contains("e.g. QUIT, USR1"), "{bad:?}: {err}");
            // TERM, INT and HUP are refused here: never suggested.
            for refused in ["TERM", "INT", "HUP"] {
                assert!(!err.contains(refused), "{bad:?}: {err}");
            }
            assert!(!(bad == "0" && err.contains("or number")), "{bad:?}: {err}");
        }
    }

    #[test]
    fn listen_specs_take_tcp_and_unix() {
        assert_eq!(
            "http=0.0.0.0:8080".parse::<ListenSpec>().unwrap().addr,
            ListenAddr::Tcp("0.0.0.0:8080".parse().unwrap())
        );
        assert_eq!(
            "api=unix:/tmp/a.sock".parse::<ListenSpec>().unwrap().addr,
            ListenAddr::Unix("/tmp/a.sock".into())
        );
        assert!("http".parse::<ListenSpec>().is_err());
        assert!("a:b=127.0.0.1:1".parse::<ListenSpec>().is_err());
        assert!("http=localhost:80".parse::<ListenSpec>().is_err());
    }
}
