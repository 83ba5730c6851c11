//! Zero-downtime restarts: the running process starts the binary on disk
//! now (which may be a new version), hands it the listening sockets, waits
//! until it is ready, and only then drains and stops.
//!
//! # How an upgrade goes
//!
//! 1. A trigger: `SIGHUP`, [`AppHandle::upgrade`](crate::AppHandle::upgrade),
//!    or `upgrade` on the control socket ([`Upgrade::control_socket`]).
//!    Only a Running app upgrades; one upgrade at a time — a second request
//!    meanwhile is refused as [`UpgradeErrorKind::Busy`].
//! 2. The app starts its program again — the path it was started with
//!    (`argv[0]` made absolute at start, symlinks left alone, so a
//!    `current -> releases/v2` switch is followed), with the same arguments
//!    — and passes every listener obtained through
//!    [`Listeners`](crate::listen::Listeners) in the systemd convention
//!    (`LISTEN_FDS`, `LISTEN_FDNAMES`, `LISTEN_PID` set to the child's own
//!    pid), plus a private channel (a socket pair, `LAMEDUCK_UPGRADE_FD`).
//!    The kernel's accept queue belongs to the socket, which both processes
//!    now hold: no connection is refused or lost while they overlap.
//! 3. The child's app, once every component is ready, reports ready on the
//!    channel and waits, still Starting, for the parent's verdict. Nothing
//!    to call: it is automatic.
//! 4. The parent commits to it — the one point of no return — stops
//!    accepting on the shared sockets, and the child takes over: it writes
//!    the PID file, renames its control socket (bound under a temporary
//!    name before its report) into place, enters Running and says so.
//!    Until the commit, the child changes nothing the parent owns: it
//!    accepts on no shared socket and touches neither the PID file nor the
//!    control socket's path; a child whose report comes after the parent
//!    gave up on it is refused and stands down.
//! 5. The parent stays Running, accepting nothing, for the
//!    [settle time](Upgrade::settle), ready to take the service back. Then
//!    the handover is final: it tells systemd the new main pid, answers the
//!    requester, and shuts down with
//!    [`ShutdownReason::Upgraded`](crate::ShutdownReason::Upgraded): the
//!    normal sequence, drain included, so keep-alive clients are told to
//!    reconnect (to the new process) and in-flight work finishes. It exits 0.
//!
//! # Rollback
//!
//! If the child fails to start, exits or crashes before it is ready, or is
//! not ready within the [timeout](Upgrade::timeout), the parent refuses it,
//! stops it and everything it started (`SIGTERM`, then `SIGKILL`, by pid:
//! see [below](#what-the-new-process-started)), logs why, answers the
//! requester with the error, and goes on serving as if nothing happened.
//! The child's exit ends the wait at once, even if a process it started
//! still holds the channel.
//! If the child dies after the commit but before it settled, the parent
//! takes the service back: it accepts on its sockets again, and, as after
//! every rollback, checks that the PID file names it and that the control
//! socket is its own, making them so if not. A child that dies after it
//! settled finds the parent draining: too late; the parent says so as an
//! error and exits 1.
//!
//! # What the new process started
//!
//! The new process is started in the old one's process group, not in a
//! group of its own, on purpose: whatever signals that group — Ctrl+C on a
//! terminal while the old process is the foreground job, `lameduck run`,
//! the drill, `kill -- -PGID` — reaches the process that serves after an
//! upgrade too. (Under systemd the unit's cgroup holds every process
//! anyway, and `systemctl stop` reaches them all.) So when the old process
//! stops a new process it started — refused, not ready in time, failed,
//! abandoned by a shutdown, taken back — it cannot signal a group: it
//! stops the processes below it, found in `/proc` (Linux): its
//! descendants, and every process that carries its mark in the
//! environment it inherited (`LAMEDUCK_UPGRADE_PARENT=<old pid>` and
//! `LAMEDUCK_UPGRADE_PID=<new pid>`), which finds the orphans of a wrapper
//! script that exited. Each gets `SIGTERM` with the new process, and
//! `SIGKILL` if it is still there 3 s later; a new process taken back had
//! its whole shutdown to stop its own, and what is left after its exit is
//! stopped the same way. A process that scrubbed its environment and left
//! the tree (a daemon started with `env -i`) is not found; nor, elsewhere
//! than Linux, is anything but the new process itself.
//!
//! # Signals during an upgrade
//!
//! "Settled" means the child still serves — running, not shutting down —
//! at the end of the [settle time](Upgrade::settle). A `SIGTERM` (or
//! `SIGINT`, or any shutdown) at each step:
//!
//! | step | to the parent (old) | to the child (new) |
//! |---|---|---|
//! | the child starts, before its ready report | the parent refuses the child and stops it (`SIGTERM`, `SIGKILL` after 3 s), logs `upgrade abandoned: this process is shutting down`, drains and exits | the child shuts down while starting and says so: `failed`; the parent rolls back and serves on |
//! | committed, settling | the parent takes the sockets back and tells the child `abort`: the child shuts down gracefully (its drain, shutdown and hard timeouts); the parent drains, and before its report waits for the child's exit, at most a whole shutdown of its own budget ([`Timeline::worst_case`](crate::Timeline::worst_case)), then kills it: the log and the flight record say how the child ended; a kill is an error, and the parent exits 1 | the child says `draining` to the parent, which takes the service back at once as from a child that died (`began shutting down before it settled`), serves on, and lets the child finish its shutdown within the same bound |
//! | the handover is final | the parent was already draining | the child is the main process: it shuts down as asked; nothing serves the sockets after it |
//!
//! A second signal to either process forces its exit, as always; the
//! parent never sends one to a child that is shutting down.
//!
//! # Handover
//!
//! A small, optional, typed state transfer: [`Upgrade::handover`] produces
//! bytes in the old process at the moment of the upgrade, and
//! [`take_handover`] reads them in the new one, checked against a kind
//! string (`"sessions/v1"`) so that a new version never misreads an old
//! format.
//!
//! # Within Kubernetes, and containers
//!
//! In a pod, the orchestrator replaces pods instead; upgrades are for
//! services on a host (systemd units, VMs, bare metal). A new process must
//! outlive the old one: where it cannot — the old process is PID 1 of its
//! PID namespace, whose exit makes the kernel kill every process in it, or
//! the child of an init that exits with it (tini, dumb-init, Docker's
//! `--init`) — an upgrade is refused with [`UpgradeErrorKind::Unsupported`]
//! and the service keeps serving. See the repository's `docs/restarts.md`.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;

pub(crate) mod child;
pub(crate) mod control;
mod error;
pub(crate) mod exe;
mod family;
mod hook;
pub(crate) mod init;
pub(crate) mod leftovers;
pub(crate) mod owned;
mod paths;
pub(crate) mod pidfile;
mod protocol;
pub(crate) mod spawn;
pub(crate) mod successor;
mod temp;

pub use child::{parent_pid, take_handover};
pub use error::{UpgradeError, UpgradeErrorKind};
pub(crate) use hook::fault_point;

/// A fresh, empty scratch directory for a unit test.
#[cfg(test)]
pub(crate) fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lameduck-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
#[doc(hidden)]
pub use hook::set_fault_hook;

/// The default time a new process has to become ready.
pub const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) type HandoverFn = Arc<dyn Fn() -> Vec<u8> + Send + Sync>;
pub(crate) type InPlaceFn =
    Arc<dyn Fn() -> crate::component::BoxFuture<Result<u32, String>> + Send + Sync>;

/// How an app upgrades: given to
/// [`AppBuilder::upgrade`](crate::AppBuilder::upgrade). Upgrades are on by
/// default with the `upgrade` feature ([`Upgrade::new`]); turn them off
/// with [`Upgrade::disabled`].
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use lameduck::{App, upgrade::Upgrade};
///
/// let app = App::builder("orders").upgrade(
///     Upgrade::new()
///         .timeout(Duration::from_secs(20))
///         .control_socket("/run/orders/control.sock")
///         .pid_file("/run/orders/orders.pid"),
/// );
/// ```
#[derive(Clone)]
pub struct Upgrade {
    pub(crate) enabled: bool,
    pub(crate) timeout: Duration,
    pub(crate) control_socket: Option<PathBuf>,
    pub(crate) pid_file: Option<PathBuf>,
    pub(crate) program: Option<PathBuf>,
    pub(crate) handover: Option<(Arc<str>, HandoverFn)>,
    pub(crate) settle: Option<Duration>,
    pub(crate) in_place: Option<InPlaceFn>,
    pub(crate) on_sighup: bool,
}

impl Default for Upgrade {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgrade")
            .field("enabled", &self.enabled)
            .field("timeout", &self.timeout)
            .field("control_socket", &self.control_socket)
            .field("pid_file", &self.pid_file)
            .field("program", &self.program)
            .field("handover", &self.handover.as_ref().map(|(k, _)| k))
            .field("settle", &self.settle)
            .field("in_place", &self.in_place.is_some())
            .field("on_sighup", &self.on_sighup)
            .finish()
    }
}

impl Upgrade {
    /// Upgrades on `SIGHUP` and [`AppHandle::upgrade`](crate::AppHandle::upgrade),
    /// with the [default timeout](DEFAULT_UPGRADE_TIMEOUT), no control
    /// socket and no PID file.
    pub fn new() -> Self {
        Self {
            enabled: true,
            timeout: DEFAULT_UPGRADE_TIMEOUT,
            control_socket: None,
            pid_file: None,
            program: None,
            handover: None,
            settle: None,
            in_place: None,
            on_sighup: true,
        }
    }

    /// No upgrades: `SIGHUP` keeps its default action, requests are refused
    /// with [`UpgradeErrorKind::Disabled`]. A process started by an upgrade
    /// still reports ready to its parent.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::new()
        }
    }

    /// Whether `SIGHUP` asks for an upgrade (default `true`, when the app
    /// [handles signals](crate::AppBuilder::handle_signals)). With `false`
    /// the app does not listen for `SIGHUP`: a program that wants to tell
    /// hangups apart (a closed terminal from an operator's request) listens
    /// itself and calls [`AppHandle::upgrade`](crate::AppHandle::upgrade)
    /// for the ones that ask for an upgrade; the other ways to ask (the
    /// handle, the control socket) are unchanged.
    pub fn on_sighup(mut self, yes: bool) -> Self {
        self.on_sighup = yes;
        self
    }

    /// How long the new process has to become ready before it is stopped,
    /// with everything it started (see
    /// [what the new process started](self#what-the-new-process-started)),
    /// and the upgrade fails; once committed to, it has as long again to
    /// take over (write the PID file, take the control socket, enter
    /// Running).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long the old process stays ready to take the service back once
    /// the new one runs (default: the budget's drain delay). Meanwhile the
    /// old process accepts nothing on the shared sockets but keeps them,
    /// finishes what it has, and keeps its keep-alive connections; if the
    /// new process dies, or begins shutting down (a `SIGTERM` to it, say),
    /// it serves again. Only then does the handover become final (systemd
    /// hears `MAINPID=`, the requester hears `ok`) and the old process
    /// drain. See [signals during an upgrade](self#signals-during-an-upgrade).
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle = Some(settle);
        self
    }

    /// Serves a control socket at `path` (a Unix socket, mode 0600, owner
    /// only): from the app's start (a process not started by an upgrade)
    /// or from its parent's commit (a new process of an upgrade) until it
    /// exits. One command per connection, one line each way:
    ///
    /// | request | answer |
    /// |---|---|
    /// | `upgrade` | `ok <new pid>` once the new process is ready, `busy`, or `error <why>` (while the app is starting: `error the app is still starting …`, [`UpgradeErrorKind::NotRunning`]) |
    /// | `status` | `ok <phase> pid <pid>`: `ok starting pid <pid>` until every component is ready, so that a monitor tells a service that starts from one that does not run |
    /// | `reload` | [`AppHandle::reload`](crate::AppHandle::reload): `ok reloaded <component> …` (or `ok nothing to reload`), or `error reload failed: <component>: <why>`, the old configuration kept |
    /// | anything else | `error …` |
    ///
    /// A connection has 10 s to send its command; at most 16 are served at
    /// once, and a new one always is: the oldest that has sent nothing is
    /// closed to make room (with an `error` line it can read).
    ///
    /// The socket is replaced atomically (bound under a temporary name,
    /// restricted, then renamed), so it is never reachable with looser
    /// permissions, and a new process takes over the path after its parent
    /// committed to it. Peers of another user (root aside) are refused even
    /// if the mode were changed.
    ///
    /// The path is checked when the app is built: a missing directory, a
    /// path too long for a Unix socket, a directory where no file can be
    /// created or no socket bound (a probe of each is made there under a
    /// fresh name, and removed: a filesystem such as `/proc` passes a
    /// permission check and takes neither), a file that is not a socket,
    /// or a socket a live process listens on (another instance) is a
    /// [`BuildError`](crate::BuildError); a socket nobody listens on any
    /// more is replaced.
    pub fn control_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.control_socket = Some(path.into());
        self
    }

    /// Writes the serving process's pid to `path` — atomically (a temporary
    /// file with an unpredictable name, created exclusively, renamed over
    /// it) — at Running; in an upgrade the new process writes its own pid
    /// once its parent committed to it. Removed at exit if it still names
    /// this process — on every way out the process can take: a forced exit,
    /// the exit watchdog, a fatal signal such as `SIGQUIT` (not `SIGKILL`).
    ///
    /// The path is checked when the app is built: a missing directory, one
    /// that takes no new file (a probe file is created there under a fresh
    /// name, and removed: a filesystem such as `/proc` passes a permission
    /// check and takes none), a directory at the path, or a file there that
    /// names a running process (another instance; not an upgrade's old
    /// process) is a [`BuildError`](crate::BuildError). A file that names a
    /// process that is gone is replaced.
    pub fn pid_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.pid_file = Some(path.into());
        self
    }

    /// Checks what can be checked before the app starts. `Err` with the
    /// message of a [`BuildError`](crate::BuildError).
    pub(crate) fn check(&self) -> Result<(), String> {
        child::init();
        if let Some(why) = child::init_error() {
            return Err(format!(
                "this process was started by an upgrade, but cannot take part in it: {why}; \
                 take the inherited descriptors (Listeners::from_env, App::builder) before opening sockets or files"
            ));
        }
        if self.timeout.is_zero() && self.in_place.is_none() {
            return Err(
                "the upgrade timeout is 0s: no new process can become ready in no time; \
                 give it a duration (the default is 30s)"
                    .to_string(),
            );
        }
        paths::check(self.pid_file.as_deref(), self.control_socket.as_deref())
    }

    /// Upgrades in place: instead of starting a new process of this program,
    /// an upgrade runs `replace`, which replaces what this process
    /// supervises (a child program, say) and gives the pid that serves now,
    /// or why it could not. This app goes on running either way.
    ///
    /// Everything else is as for any upgrade: one at a time, only while
    /// Running, triggered by [`AppHandle::upgrade`](crate::AppHandle::upgrade),
    /// the control socket (`ok <pid>` or `error <why>`) or, when the app
    /// handles signals, `SIGHUP`; systemd hears `RELOADING=1` at the start
    /// and `READY=1` at the end. `replace` bounds its own time (the
    /// [timeout](Self::timeout) is not applied to it) and should give up
    /// when the app begins shutting down. `lameduck run` restarts its
    /// program this way.
    ///
    /// An error from `replace` is a failed upgrade
    /// ([`UpgradeErrorKind::Exited`] for whoever asked, `error <why>` on
    /// the control socket, an `UpgradeFailed` event for the observers, the
    /// metrics and the flight record), unless the app began shutting down
    /// meanwhile: then it is an abandonment ([`UpgradeErrorKind::Abandoned`]),
    /// not a failure. Either way the app logs it at debug level only:
    /// `replace` knows what failed or what it gave up (which instance, how
    /// it ended), and logs it once, at the level it deserves — a failure
    /// as an error.
    pub fn in_place<F, Fut>(mut self, replace: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<u32, String>> + Send + 'static,
    {
        self.in_place = Some(Arc::new(move || Box::pin(replace())));
        self
    }

    /// Starts `program` instead of the path this process was started with.
    ///
    /// A wrapper script must `exec` the service: the upgrade's variables
    /// (`LISTEN_PID` among them) name the process the old one started. If
    /// the upgrade fails, the script is stopped with every process it
    /// started (see
    /// [what the new process started](self#what-the-new-process-started)).
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = Some(program.into());
        self
    }

    /// Hands state to the new process: `produce` runs in the old process at
    /// each upgrade (in the app's driver, so keep it quick), and the new one
    /// reads the bytes with [`take_handover`]`(kind)`. `kind` names the
    /// format; a new version that expects another kind gets an error
    /// instead of misreading the bytes.
    pub fn handover(
        mut self,
        kind: impl Into<Arc<str>>,
        produce: impl Fn() -> Vec<u8> + Send + Sync + 'static,
    ) -> Self {
        self.handover = Some((kind.into(), Arc::new(produce)));
        self
    }
}

/// A completed upgrade: the new process serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Upgraded {
    /// The new process's pid.
    pub new_pid: u32,
    /// From the request to the new process's ready report.
    pub took: Duration,
}

/// Who asked for an upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    Signal,
    Handle,
    Control,
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Via::Signal => "SIGHUP",
            Via::Handle => "the app handle",
            Via::Control => "the control socket",
        })
    }
}

pub(crate) type Reply = oneshot::Sender<Result<Upgraded, UpgradeError>>;

/// What the upgrade machinery tells the driver, as an event.
#[derive(Debug)]
pub(crate) enum Step {
    /// (Old process.) The new process reported ready and waits for the
    /// verdict.
    Ready(Box<spawn::Candidate>),
    /// (Old process.) The attempt failed; the new process was stopped.
    Failed(UpgradeError),
    /// (Old process.) The new process it committed to took over and runs.
    Running(u32),
    /// (Old process.) The new process has run for the settle time.
    Settled(u32),
    /// (Old process.) Its last probe connection is closed (or the wait for
    /// it is over): the handover is final.
    Left(u32),
    /// (Old process.) The new process it committed to is gone (and
    /// reaped), or was stopped for not taking over: how.
    Died(u32, String),
    /// (Old process.) The new process it committed to began shutting down
    /// before the handover was final.
    Draining(u32),
    /// (Old process.) The new process this one told to stop has exited, or
    /// was killed at the bound (`killed`): how.
    Stopped { pid: u32, how: String, killed: bool },
    /// (New process.) The parent's verdict on this process's ready report.
    Verdict(child::Verdict),
}

/// A request, as the driver gets it.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) via: Via,
    pub(crate) reply: Option<Reply>,
}

/// The future of [`AppHandle::upgrade`](crate::AppHandle::upgrade): the
/// outcome, once the new process is ready (or the upgrade failed).
///
/// # Cancel safety
///
/// Dropping it does not cancel the upgrade; only the answer is lost.
#[must_use = "futures do nothing unless polled; the upgrade itself runs anyway"]
#[derive(Debug)]
pub struct UpgradeFuture {
    rx: oneshot::Receiver<Result<Upgraded, UpgradeError>>,
}

impl UpgradeFuture {
    pub(crate) fn new(rx: oneshot::Receiver<Result<Upgraded, UpgradeError>>) -> Self {
        Self { rx }
    }
}

impl Future for UpgradeFuture {
    type Output = Result<Upgraded, UpgradeError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| {
            r.unwrap_or_else(|_| {
                Err(UpgradeError::new(
                    UpgradeErrorKind::Abandoned,
                    "the app stopped before the upgrade finished",
                ))
            })
        })
    }
}
