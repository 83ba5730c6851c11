//! The socket-activation variables, parsed and checked without touching a
//! file descriptor: `LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`.

use std::ffi::OsString;
use std::os::fd::RawFd;

use super::error::ListenError;

/// The first inherited descriptor, as systemd's `SD_LISTEN_FDS_START`.
pub(crate) const FIRST_FD: RawFd = 3;

/// More descriptors than any real service listens on. A larger count is a
/// corrupt variable; trusting it would claim thousands of unrelated fds.
const MAX_FDS: usize = 1024;

/// The variables as read from the environment.
#[derive(Clone, Debug, Default)]
pub(crate) struct Vars {
    pub(crate) pid: Option<OsString>,
    pub(crate) fds: Option<OsString>,
    pub(crate) names: Option<OsString>,
}

impl Vars {
    pub(crate) fn from_env() -> Self {
        Self {
            pid: std::env::var_os("LISTEN_PID"),
            fds: std::env::var_os("LISTEN_FDS"),
            names: std::env::var_os("LISTEN_FDNAMES"),
        }
    }
}

/// One inherited descriptor: its number and its name (`unknown` when
/// `LISTEN_FDNAMES` is unset, as systemd names it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) fd: RawFd,
    pub(crate) name: String,
}

/// Checks the variables for the process `me`; `Ok(empty)` when none is set.
///
/// Strict on purpose: a malformed or foreign environment is an error that
/// names the variable, never a silent fall-back to binding fresh sockets
/// (which would fail later with "address in use", far from the cause).
pub(crate) fn parse(vars: &Vars, me: u32) -> Result<Vec<Slot>, ListenError> {
    let Some(fds) = &vars.fds else {
        if vars.names.is_some() {
            return Err(ListenError::env(
                "LISTEN_FDNAMES",
                "is set but LISTEN_FDS is not".into(),
            ));
        }
        return Ok(Vec::new());
    };
    let fds = text("LISTEN_FDS", fds)?;
    let count: usize = fds.parse().map_err(|_| {
        ListenError::env(
            "LISTEN_FDS",
            format!("{fds:?} is not a number of file descriptors"),
        )
    })?;
    if count > MAX_FDS {
        return Err(ListenError::env(
            "LISTEN_FDS",
            format!("{count} descriptors is more than the limit of {MAX_FDS}"),
        ));
    }
    let Some(pid) = &vars.pid else {
        return Err(ListenError::env(
            "LISTEN_PID",
            "is not set, but LISTEN_FDS is".into(),
        ));
    };
    let pid = text("LISTEN_PID", pid)?;
    let pid: u32 = pid
        .parse()
        .map_err(|_| ListenError::env("LISTEN_PID", format!("{pid:?} is not a process id")))?;
    if pid != me {
        return Err(ListenError::env(
            "LISTEN_PID",
            format!(
                "the sockets were passed to process {pid}, not to this one ({me}); \
                 a process that inherited the environment of a socket-activated one must unset LISTEN_FDS"
            ),
        ));
    }
    let names: Vec<String> = match &vars.names {
        None => vec!["unknown".to_string(); count],
        Some(names) => {
            let names = text("LISTEN_FDNAMES", names)?;
            // systemd joins names with ':'; an empty variable is one empty
            // name only when one descriptor is passed.
            let names: Vec<String> = if names.is_empty() && count == 0 {
                Vec::new()
            } else {
                names.split(':').map(str::to_string).collect()
            };
            if names.len() != count {
                return Err(ListenError::env(
                    "LISTEN_FDNAMES",
                    format!(
                        "has {} for {} (LISTEN_FDS={count})",
                        crate::fmt::Count(names.len(), "name"),
                        crate::fmt::Count(count, "descriptor")
                    ),
                ));
            }
            names
        }
    };
    Ok(names
        .into_iter()
        .enumerate()
        .map(|(i, name)| Slot {
            // `count` is at most MAX_FDS, so this cannot overflow.
            fd: FIRST_FD + i as RawFd,
            name,
        })
        .collect())
}

fn text<'a>(var: &'static str, value: &'a OsString) -> Result<&'a str, ListenError> {
    value
        .to_str()
        .ok_or_else(|| ListenError::env(var, format!("{value:?} is not valid UTF-8")))
}

/// Checks a name for `LISTEN_FDNAMES`: what systemd accepts for
/// `FileDescriptorName=`.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!(
            "listener name {name:?} must be 1 to 255 characters"
        ));
    }
    if let Some(c) = name.chars().find(|c| *c == ':' || !c.is_ascii_graphic()) {
        return Err(format!(
            "listener name {name:?} contains {c:?}; use printable ASCII without ':'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listen::ListenErrorKind;

    fn vars(pid: Option<&str>, fds: Option<&str>, names: Option<&str>) -> Vars {
        Vars {
            pid: pid.map(Into::into),
            fds: fds.map(Into::into),
            names: names.map(Into::into),
        }
    }

    fn err(v: Vars) -> ListenError {
        parse(&v, 42).expect_err("must be rejected")
    }

    #[test]
    fn nothing_set_means_no_inherited_sockets() {
        assert_eq!(parse(&Vars::default(), 42).unwrap(), Vec::new());
    }

    #[test]
    fn named_sockets_start_at_fd_3() {
        let got = parse(&vars(Some("42"), Some("2"), Some("http:admin")), 42).unwrap();
        assert_eq!(
            got,
            vec![
                Slot {
                    fd: 3,
                    name: "http".into()
                },
                Slot {
                    fd: 4,
                    name: "admin".into()
                }
            ]
        );
    }

    #[test]
    fn unnamed_sockets_are_called_unknown_as_systemd_does() {
        let got = parse(&vars(Some("42"), Some("1"), None), 42).unwrap();
        assert_eq!(got[0].name, "unknown");
    }

    #[test]
    fn a_foreign_listen_pid_is_an_error_naming_it() {
        let e = err(vars(Some("7"), Some("1"), None));
        assert_eq!(e.variable(), Some("LISTEN_PID"));
        assert_eq!(e.kind(), ListenErrorKind::Environment);
        assert!(
            e.to_string().contains("process 7, not to this one (42)"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_listen_pid_is_an_error() {
        assert_eq!(
            err(vars(None, Some("1"), None)).variable(),
            Some("LISTEN_PID")
        );
    }

    #[test]
    fn non_numeric_values_name_their_variable() {
        assert_eq!(
            err(vars(Some("42"), Some("two"), None)).variable(),
            Some("LISTEN_FDS")
        );
        assert_eq!(
            err(vars(Some("me"), Some("1"), None)).variable(),
            Some("LISTEN_PID")
        );
        assert_eq!(
            err(vars(Some("42"), Some("-1"), None)).variable(),
            Some("LISTEN_FDS")
        );
    }

    #[test]
    fn a_name_count_that_does_not_match_is_an_error() {
        let e = err(vars(Some("42"), Some("2"), Some("http")));
        assert_eq!(e.variable(), Some("LISTEN_FDNAMES"));
        assert!(e.to_string().contains("1 name for 2 descriptors"), "{e}");
    }

    #[test]
    fn names_without_fds_are_an_error() {
        assert_eq!(
            err(vars(None, None, Some("http"))).variable(),
            Some("LISTEN_FDNAMES")
        );
    }

    #[test]
    fn an_absurd_count_is_an_error() {
        assert_eq!(
            err(vars(Some("42"), Some("100000"), None)).variable(),
            Some("LISTEN_FDS")
        );
    }

    #[test]
    fn zero_fds_is_fine() {
        assert!(
            parse(&vars(Some("42"), Some("0"), Some("")), 42)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn names_are_checked_as_systemd_would() {
        assert!(check_name("http").is_ok());
        assert!(check_name("a:b").is_err());
        assert!(check_name("").is_err());
        assert!(check_name("sp ace").is_err());
    }
}
