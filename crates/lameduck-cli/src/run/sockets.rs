//! The sockets lameduck holds for the program: those systemd passed it,
//! those `--listen` binds, the `{fd:NAME}` placeholders that name them,
//! and the private notify socket.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

use anyhow::Context as _;
use lameduck::listen::Listeners;
use lameduck::systemd::NotifySocket;

use super::flags::{ListenAddr, ListenSpec};

/// Sockets by name, in `LISTEN_FDS` order.
pub type Named = Vec<(String, OwnedFd)>;

/// The first descriptor a program finds its sockets at.
const FIRST_FD: usize = 3;

/// The sockets for the program, in `LISTEN_FDS` order: first those
/// lameduck was given (socket activation), each under its name, then the
/// `--listen` ones (a name given both ways takes the one given); and the
/// names of those lameduck was given (whose giver, systemd, keeps a copy).
///
/// # Errors
///
/// A malformed `LISTEN_*` environment, an address that cannot be bound, a
/// name used twice.
pub fn open(specs: &[ListenSpec]) -> anyhow::Result<(Named, Vec<String>)> {
    // Before anything is bound: a socket bound and logged, then dropped by
    // a later error, would read as in use.
    for (i, spec) in specs.iter().enumerate() {
        if specs[..i].iter().any(|s| s.name == spec.name) {
            anyhow::bail!("--listen {}: the name is used twice", spec.name);
        }
    }
    let mut inherited =
        Listeners::from_env().context("taking the sockets passed to lameduck (LISTEN_FDS)")?;
    let mut out: Vec<(String, OwnedFd)> = Vec::new();
    let mut given = Vec::new();
    for spec in specs {
        let fd: OwnedFd = match &spec.addr {
            ListenAddr::Tcp(addr) => {
                let l = inherited
                    .tcp(&spec.name, addr)
                    .with_context(|| format!("--listen {}={addr}", spec.name))?;
                let bound = l
                    .local_addr()
                    .map_or_else(|_| addr.to_string(), |a| a.to_string());
                tracing::info!(target: "lameduck::run", name = %spec.name, addr = %bound, inherited = l.is_inherited(), "socket {} on {bound}", spec.name);
                if l.is_inherited() {
                    given.push(spec.name.clone());
                }
                l.into_std().into()
            }
            ListenAddr::Unix(path) => {
                let l = inherited
                    .unix(&spec.name, path)
                    .with_context(|| format!("--listen {}=unix:{}", spec.name, path.display()))?;
                tracing::info!(target: "lameduck::run", name = %spec.name, path = %path.display(), inherited = l.is_inherited(), "socket {} on unix:{}", spec.name, path.display());
                if l.is_inherited() {
                    given.push(spec.name.clone());
                }
                l.into_std().into()
            }
        };
        out.push((spec.name.clone(), fd));
    }
    // What systemd passed and no --listen named: passed on as it came.
    let rest: Vec<String> = inherited.names().map(str::to_string).collect();
    let mut passed_on = Vec::new();
    for name in rest {
        let fd: OwnedFd = match inherited.take_tcp(&name) {
            Ok(Some(l)) => l.into_std().into(),
            _ => match inherited.take_unix(&name)? {
                Some(l) => l.into_std().into(),
                None => continue,
            },
        };
        given.push(name.clone());
        passed_on.push((name, fd));
    }
    passed_on.extend(out);
    Ok((passed_on, given))
}

/// Expands `{fd:NAME}` (and `{fd}`, when there is one socket) in the
/// command's arguments to the socket's descriptor number.
///
/// # Errors
///
/// A placeholder that names no socket.
pub fn expand(
    command: &[OsString],
    sockets: &[(String, OwnedFd)],
) -> anyhow::Result<Vec<OsString>> {
    let names: Vec<&str> = sockets.iter().map(|(n, _)| n.as_str()).collect();
    command
        .iter()
        .enumerate()
        .map(|(i, arg)| {
            // The program itself is never a placeholder.
            if i == 0 {
                return Ok(arg.clone());
            }
            expand_one(arg.as_bytes(), &names).map(OsString::from_vec)
        })
        .collect()
}

fn expand_one(arg: &[u8], names: &[&str]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(start) = find(rest, b"{fd") {
        let tail = &rest[start + 3..];
        let (name, used) = match tail.first() {
            Some(b'}') => (None, 1),
            Some(b':') => match find(tail, b"}") {
                Some(end) => (Some(&tail[1..end]), end + 1),
                None => anyhow::bail!(
                    "{}: a {{fd:NAME}} placeholder is not closed",
                    String::from_utf8_lossy(arg)
                ),
            },
            // Not a placeholder: `{fdx`.
            _ => {
                out.extend_from_slice(&rest[..start + 3]);
                rest = tail;
                continue;
            }
        };
        let index = match name {
            None if names.len() == 1 => 0,
            None => anyhow::bail!(
                "{{fd}} needs exactly one socket, but there are {}: name it, {{fd:NAME}}",
                names.len()
            ),
            Some(n) => names
                .iter()
                .position(|s| s.as_bytes() == n)
                .with_context(|| {
                    format!(
                        "{{fd:{}}} names no socket (sockets: {})",
                        String::from_utf8_lossy(n),
                        if names.is_empty() {
                            "none; add --listen NAME=ADDR".to_string()
                        } else {
                            names.join(", ")
                        }
                    )
                })?,
        };
        out.extend_from_slice(&rest[..start]);
        out.extend_from_slice((FIRST_FD + index).to_string().as_bytes());
        rest = &tail[used..];
    }
    out.extend_from_slice(rest);
    Ok(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The notify socket in a directory of its own (mode 0700), both removed
/// when dropped.
#[derive(Debug)]
pub struct NotifyDir {
    dir: PathBuf,
    /// The socket.
    pub socket: NotifySocket,
}

impl NotifyDir {
    /// Creates it under `$XDG_RUNTIME_DIR`, or the temporary directory.
    ///
    /// # Errors
    ///
    /// When the directory or the socket cannot be made.
    pub fn create() -> anyhow::Result<Self> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!(
            "lameduck-run-{}-{:x}",
            std::process::id(),
            fastrand_u32()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        match NotifySocket::bind(dir.join("notify.sock")) {
            Ok(socket) => Ok(Self { dir, socket }),
            Err(err) => {
                let _ = std::fs::remove_dir(&dir);
                Err(err).context("binding the notify socket")
            }
        }
    }
}

impl Drop for NotifyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.socket.path());
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn fastrand_u32() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(arg: &str, names: &[&str]) -> anyhow::Result<String> {
        expand_one(arg.as_bytes(), names).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn placeholders_become_descriptor_numbers() {
        assert_eq!(x("--fd={fd:api}", &["http", "api"]).unwrap(), "--fd=4");
        assert_eq!(x("fd://{fd}", &["http"]).unwrap(), "fd://3");
        assert_eq!(x("{fd:a},{fd:b}", &["a", "b"]).unwrap(), "3,4");
        assert_eq!(x("{fdx} {f}", &["a"]).unwrap(), "{fdx} {f}");
    }

    #[test]
    fn a_placeholder_that_names_no_socket_is_an_error() {
        let err = x("{fd:nope}", &["http"]).unwrap_err().to_string();
        assert!(err.contains("names no socket (sockets: http)"), "{err}");
        assert!(x("{fd}", &["a", "b"]).is_err());
        assert!(x("{fd:open", &["a"]).is_err());
    }
}
