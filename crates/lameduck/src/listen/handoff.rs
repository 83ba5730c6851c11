//! The fd handoff: taking inherited descriptors, and passing listening
//! sockets to a child process in the systemd convention.
//!
//! This is the one module of the crate with `unsafe` code: owning a raw
//! descriptor number that the environment names, and the code that runs in
//! a forked child before `exec`. Every block says why it is sound.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::libc;

use super::env::{FIRST_FD, check_name};

/// Variables that belong to the handoff: stripped from the environment a
/// child would otherwise inherit, so it never sees a stale set.
const HANDOFF_VARS: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// Runs `f` on the descriptor `fd` without taking ownership of it: to
/// check an inherited descriptor before claiming it. Claiming one that
/// turns out not to be ours — `LISTEN_FDS` counting more descriptors than
/// were passed, where the runtime has since opened its own — and then
/// closing it would break whatever owns it.
pub(crate) fn inspect<R>(fd: RawFd, f: impl FnOnce(BorrowedFd<'_>) -> R) -> io::Result<R> {
    // SAFETY: F_GETFD only reads the descriptor's flags; it fails with
    // EBADF for a number that is not open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above) and the borrow ends
    // with this call; `f` only reads socket options. Nothing in this
    // crate closes it meanwhile.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    Ok(f(borrowed))
}

/// Takes ownership of the inherited descriptor `fd` and marks it
/// close-on-exec, so that programs this process starts do not inherit it by
/// accident.
///
/// The caller (the `listen` module) makes sure each number is claimed once,
/// only when `LISTEN_PID` names this process, and only after every
/// inherited descriptor passed [`inspect`].
pub(crate) fn claim(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only reads the descriptor's flags; it fails with
    // EBADF for a number that is not open, which is what we check first.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above), and the protocol
    // behind LISTEN_FDS gives it to this process: the parent passed it for
    // us to own, nothing else in this process opened it. The `listen`
    // module claims each inherited number at most once per process, so no
    // second `OwnedFd` can be made for it here.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    Ok(owned)
}

/// Passes listening sockets to a child process the way systemd socket
/// activation does, so that any program can take them: `lameduck` itself,
/// or anything built with `sd_listen_fds` (C), `listenfd` (Rust),
/// `coreos/go-systemd` `activation.Listeners` (Go) and the like.
///
/// The child gets the sockets as descriptors 3, 4, … in the order they
/// were added, and the variables `LISTEN_FDS` (their count),
/// `LISTEN_FDNAMES` (their names, `:`-separated) and `LISTEN_PID` (its own
/// process id). `LISTEN_PID` is the hard part: it must hold the child's pid,
/// which nobody knows before the fork, and setting a variable between fork
/// and exec is not safe in a multi-threaded process (it allocates). So
/// [`apply`](Self::apply) prepares the child's whole environment before the
/// fork, with room for the digits, and the child only writes its pid into
/// that room and calls `execve` itself — no allocation, no lock, only
/// async-signal-safe calls after the fork.
///
/// # Examples
///
/// ```no_run
/// use std::process::Command;
/// use lameduck::listen::Handoff;
///
/// # fn main() -> std::io::Result<()> {
/// let http = std::net::TcpListener::bind("127.0.0.1:8080")?;
/// let mut cmd = Command::new("./my-server");
/// cmd.arg("--verbose");
/// Handoff::new().listener("http", &http)?.apply(&mut cmd)?;
/// let child = cmd.spawn()?; // or tokio::process::Command::from(cmd).spawn()
/// drop(cmd); // closes this process's extra copies of the sockets
/// # Ok(()) }
/// ```
///
/// # What `apply` fixes in place
///
/// The program, its arguments and its environment are read when `apply`
/// runs: call it last, after every `arg`, `env` and `env_remove`. The
/// child's environment is this process's environment with the command's
/// `env`/`env_remove` changes applied; `env_clear` and `arg0` are not seen
/// (the standard library does not expose them) and have no effect. Standard
/// I/O, the working directory, `uid`/`gid` and process groups work as
/// usual. A program name without a `/` is looked up in `PATH` now.
#[derive(Debug, Default)]
pub struct Handoff {
    listeners: Vec<(String, OwnedFd)>,
    fd_vars: Vec<(String, OwnedFd)>,
    pid_vars: Vec<String>,
}

impl Handoff {
    /// A handoff of no sockets yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a listening socket under `name` (what the child finds in
    /// `LISTEN_FDNAMES`). The socket is duplicated: the caller keeps its own.
    ///
    /// # Errors
    ///
    /// A name that systemd would refuse (empty, over 255 characters, or with
    /// `:` or a non-printable character), or a failed `dup`.
    pub fn listener(mut self, name: &str, socket: impl AsFd) -> io::Result<Self> {
        check_name(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.listeners
            .push((name.to_string(), socket.as_fd().try_clone_to_owned()?));
        Ok(self)
    }

    /// How many sockets are passed.
    pub fn len(&self) -> usize {
        self.listeners.len()
    }

    /// Whether no socket is passed.
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }

    /// Passes `fd` after the listeners (not counted in `LISTEN_FDS`), with
    /// its number in the variable `var`.
    #[cfg_attr(not(feature = "upgrade"), allow(dead_code))]
    pub(crate) fn fd_var(mut self, var: &str, fd: impl AsFd) -> io::Result<Self> {
        self.fd_vars
            .push((var.to_string(), fd.as_fd().try_clone_to_owned()?));
        Ok(self)
    }

    /// Sets the variable `var` to the child's pid, as `LISTEN_PID`.
    #[cfg_attr(not(feature = "upgrade"), allow(dead_code))]
    pub(crate) fn pid_var(mut self, var: &str) -> Self {
        self.pid_vars.push(var.to_string());
        self
    }

    /// Prepares `cmd` to start its program with the sockets: see the type's
    /// docs for what is fixed now. Spawn it with `cmd.spawn()` or through
    /// `tokio::process::Command::from(cmd)`; drop it afterwards to close the
    /// copies it holds.
    ///
    /// # Errors
    ///
    /// A program not found in `PATH`, an argument or variable with a NUL
    /// byte, or a failed `dup`.
    pub fn apply(self, cmd: &mut Command) -> io::Result<()> {
        let exec = Exec::prepare(self, cmd)?;
        let mut exec = Some(exec);
        // SAFETY: the closure runs in the forked child, where only
        // async-signal-safe functions may be called. `Exec::run` calls only
        // getpid, dup2 and execve, writes into buffers allocated before the
        // fork, and allocates nothing; see its comments.
        unsafe {
            cmd.pre_exec(move || match exec.as_mut() {
                Some(e) => e.run(),
                None => Ok(()),
            });
        }
        Ok(())
    }
}

/// A pointer array for `execve`, pointing into buffers owned by the same
/// [`Exec`].
struct PtrArray(Vec<*const libc::c_char>);

// SAFETY: the pointers point into buffers owned by the `Exec` that owns the
// array, which moves with it; they are only dereferenced (by `execve`) in
// the forked child, which has a single thread. Sharing or sending the array
// between threads of the parent never reads through them.
unsafe impl Send for PtrArray {}
// SAFETY: as above; `&PtrArray` gives no access to the pointees.
unsafe impl Sync for PtrArray {}

/// Everything the child needs, built before the fork.
struct Exec {
    program: CString,
    _argv: Vec<CString>,
    argv_ptrs: PtrArray,
    env: Vec<Box<[u8]>>,
    env_ptrs: PtrArray,
    /// (index into `env`, length of `NAME=`) of each variable to get the
    /// child's pid.
    pid_slots: Vec<(usize, usize)>,
    /// (source, target) descriptor numbers.
    moves: Vec<(RawFd, RawFd)>,
    /// The sources, kept open until the command is dropped.
    _sources: Vec<OwnedFd>,
}

/// Room for the digits of any pid (`u32::MAX` has 10; be generous) and NUL.
const PID_ROOM: usize = 21;

impl Exec {
    fn prepare(h: Handoff, cmd: &Command) -> io::Result<Self> {
        let overrides: Vec<(OsString, Option<OsString>)> = cmd
            .get_envs()
            .map(|(k, v)| (k.to_os_string(), v.map(OsStr::to_os_string)))
            .collect();
        let mut env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
        for (k, v) in overrides {
            match v {
                Some(v) => env.insert(k, v),
                None => env.remove(&k),
            };
        }
        for var in HANDOFF_VARS
            .iter()
            .copied()
            .chain(h.pid_vars.iter().map(String::as_str))
        {
            env.remove(OsStr::new(var));
        }
        for (var, _) in &h.fd_vars {
            env.remove(OsStr::new(var));
        }

        // Each source is duplicated above every target number, so that
        // moving one into place (dup2) can never overwrite another that has
        // yet to move. The duplicates are close-on-exec; dup2 clears the
        // flag on the target only.
        let total = h.listeners.len() + h.fd_vars.len();
        let floor = FIRST_FD + total as RawFd;
        let mut sources = Vec::with_capacity(total);
        let mut moves = Vec::with_capacity(total);
        for (i, fd) in h
            .listeners
            .iter()
            .map(|(_, fd)| fd)
            .chain(h.fd_vars.iter().map(|(_, fd)| fd))
            .enumerate()
        {
            let raw = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(floor))?;
            // SAFETY: `raw` is a new descriptor that F_DUPFD_CLOEXEC just
            // made for us; nothing else owns it.
            let dup = unsafe { OwnedFd::from_raw_fd(raw) };
            moves.push((dup.as_raw_fd(), FIRST_FD + i as RawFd));
            sources.push(dup);
        }

        let mut vars: Vec<Vec<u8>> = env.into_iter().map(|(k, v)| join(&k, &v)).collect();
        if !h.listeners.is_empty() {
            vars.push(format!("LISTEN_FDS={}", h.listeners.len()).into_bytes());
            let names: Vec<&str> = h.listeners.iter().map(|(n, _)| n.as_str()).collect();
            vars.push(format!("LISTEN_FDNAMES={}", names.join(":")).into_bytes());
        }
        for (i, (var, _)) in h.fd_vars.iter().enumerate() {
            vars.push(format!("{var}={}", FIRST_FD as usize + h.listeners.len() + i).into_bytes());
        }
        let mut env: Vec<Box<[u8]>> = Vec::with_capacity(vars.len() + h.pid_vars.len() + 1);
        for v in vars {
            env.push(c_bytes(v)?);
        }
        let mut pid_slots = Vec::new();
        let listen_pid = (!h.listeners.is_empty()).then_some("LISTEN_PID");
        for var in listen_pid
            .into_iter()
            .chain(h.pid_vars.iter().map(String::as_str))
        {
            let mut buf = format!("{var}=").into_bytes();
            let prefix = buf.len();
            buf.resize(prefix + PID_ROOM, 0);
            pid_slots.push((env.len(), prefix));
            env.push(buf.into_boxed_slice());
        }
        let mut env_ptrs: Vec<*const libc::c_char> =
            env.iter().map(|b| b.as_ptr().cast()).collect();
        env_ptrs.push(std::ptr::null());

        let program = resolve(cmd)?;
        let program = CString::new(program.into_os_string().into_vec()).map_err(nul)?;
        let argv: Vec<CString> = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| CString::new(a.as_bytes()).map_err(nul))
            .collect::<io::Result<_>>()?;
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());

        Ok(Self {
            program,
            _argv: argv,
            argv_ptrs: PtrArray(argv_ptrs),
            env,
            env_ptrs: PtrArray(env_ptrs),
            pid_slots,
            moves,
            _sources: sources,
        })
    }

    /// Runs in the forked child: only async-signal-safe calls, no
    /// allocation. Returns only on failure.
    fn run(&mut self) -> io::Result<()> {
        // SAFETY: getpid is async-signal-safe and cannot fail.
        let pid = unsafe { libc::getpid() };
        for &(i, prefix) in &self.pid_slots {
            write_pid(&mut self.env[i][prefix..], pid);
        }
        // The buffers were written through `&mut` just now: take the
        // pointers afresh rather than rely on ones derived before. Writing
        // into the array allocates nothing.
        for (slot, buf) in self.env_ptrs.0.iter_mut().zip(&self.env) {
            *slot = buf.as_ptr().cast();
        }
        for &(from, to) in &self.moves {
            // SAFETY: dup2 is async-signal-safe. `from` is open (owned by
            // `_sources`); `to` may be open in the child, and dup2 closes it
            // first, which is the point: those numbers are the handoff's.
            if unsafe { libc::dup2(from, to) } == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: execve is async-signal-safe. The program and every
        // argument are NUL-terminated C strings, the environment entries are
        // NUL-terminated (each buffer ends in at least one NUL: `c_bytes`
        // and `write_pid` see to it), and both arrays end in a null pointer.
        unsafe {
            libc::execve(
                self.program.as_ptr(),
                self.argv_ptrs.0.as_ptr(),
                self.env_ptrs.0.as_ptr(),
            );
        }
        // `from_raw_os_error`, which this calls, does not allocate.
        Err(io::Error::last_os_error())
    }
}

/// Writes `pid` in decimal followed by a NUL into `room` (PID_ROOM bytes).
fn write_pid(room: &mut [u8], pid: libc::pid_t) {
    let mut digits = [0u8; 20];
    let mut n = pid.unsigned_abs();
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 || len == digits.len() {
            break;
        }
    }
    for (i, d) in digits[..len].iter().rev().enumerate() {
        room[i] = *d;
    }
    room[len] = 0;
}

fn join(k: &OsStr, v: &OsStr) -> Vec<u8> {
    let mut out = Vec::with_capacity(k.len() + v.len() + 1);
    out.extend_from_slice(k.as_bytes());
    out.push(b'=');
    out.extend_from_slice(v.as_bytes());
    out
}

fn c_bytes(v: Vec<u8>) -> io::Result<Box<[u8]>> {
    Ok(CString::new(v)
        .map_err(nul)?
        .into_bytes_with_nul()
        .into_boxed_slice())
}

fn nul(e: std::ffi::NulError) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("a NUL byte in an argument or variable: {e}"),
    )
}

/// The program `cmd` runs: as given when it has a `/`, else looked up in
/// the child's `PATH` (as `execvp` would do).
fn resolve(cmd: &Command) -> io::Result<PathBuf> {
    let program = Path::new(cmd.get_program());
    if program.as_os_str().as_bytes().contains(&b'/') {
        return Ok(program.to_path_buf());
    }
    let path = cmd
        .get_envs()
        .find(|(k, _)| *k == "PATH")
        .map(|(_, v)| v.map(OsStr::to_os_string))
        .unwrap_or_else(|| std::env::var_os("PATH"))
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("program {} not found in PATH", program.display()),
    ))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_are_written_in_decimal_and_terminated() {
        let mut room = [b'x'; PID_ROOM];
        write_pid(&mut room, 4_194_304);
        assert_eq!(&room[..8], b"4194304\0");
        write_pid(&mut room, 7);
        assert_eq!(&room[..2], b"7\0");
    }

    #[test]
    fn a_program_without_a_slash_is_found_in_path() {
        let cmd = Command::new("sh");
        assert!(resolve(&cmd).unwrap().is_absolute());
        let cmd = Command::new("no-such-program-anywhere");
        assert_eq!(resolve(&cmd).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn bad_names_are_refused() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(Handoff::new().listener("a:b", &l).is_err());
        assert_eq!(Handoff::new().listener("http", &l).unwrap().len(), 1);
    }
}
