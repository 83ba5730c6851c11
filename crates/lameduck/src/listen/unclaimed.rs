//! Inherited sockets nobody took: a socket systemd passed under a name the
//! service does not ask for (`systemd-socket-activate -l 8080` without
//! `--fdname=http` names it `unknown`) would otherwise sit unserved, and
//! the connection that activated the service hang, with nothing but an
//! info line at start to say why.
//!
//! Process-wide, as the inherited descriptors are: recorded by
//! [`Listeners`](super::Listeners), checked by the app just before it
//! enters Running.

use std::os::fd::RawFd;
use std::sync::Mutex;

/// What to do about inherited sockets still unclaimed once the app is
/// about to run: see [`Listeners::unclaimed`](super::Listeners::unclaimed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unclaimed {
    /// Log a warning that names them and the names asked for (default).
    #[default]
    Warn,
    /// Refuse to run: the app shuts down before Running, with the
    /// configuration exit code (78) and the same words.
    Fail,
}

#[derive(Default)]
struct Record {
    /// Every inherited socket: its name and descriptor number.
    inherited: Vec<(String, RawFd)>,
    /// The names the service asked for, in order, once each.
    asked: Vec<String>,
    /// Indices into `inherited` of those taken.
    taken: Vec<usize>,
    policy: Unclaimed,
    /// The warning was logged (a new process of an upgrade checks twice:
    /// at its ready report, and at the commit).
    warned: bool,
}

impl Record {
    /// The inherited sockets nobody took, as `"name" (fd N)`.
    fn left(&self) -> Vec<String> {
        self.inherited
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.taken.contains(i))
            .map(|(_, (n, fd))| format!("{n:?} (fd {fd})"))
            .collect()
    }
}

static RECORD: Mutex<Option<Record>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut Record) -> R) -> R {
    // Every update is a push or an assignment: a panic cannot tear it.
    let mut guard = RECORD.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(Record::default))
}

pub(super) fn inherited(sockets: &[(String, RawFd)]) {
    with(|r| r.inherited.extend_from_slice(sockets));
}

pub(super) fn asked(name: &str) {
    with(|r| {
        if !r.asked.iter().any(|a| a == name) {
            r.asked.push(name.to_string());
        }
    });
}

pub(super) fn taken(fd: RawFd) {
    with(|r| {
        if let Some(i) = r.inherited.iter().position(|(_, f)| *f == fd) {
            r.taken.push(i);
        }
    });
}

/// For an error binding `name`: the inherited sockets nobody took yet,
/// which may be the very socket that is in use (`systemd-socket-activate -l
/// ADDR` without `--fdname`), and how to hand it over under `name`.
pub(super) fn hint_for(name: &str) -> Option<String> {
    let left = with(|r| r.left());
    (!left.is_empty()).then(|| {
        format!(
            "an inherited socket nobody took may be the one in use: {}; name it {name:?} \
             (LISTEN_FDNAMES; systemd: FileDescriptorName={name}; systemd-socket-activate: \
             --fdname={name})",
            left.join(", ")
        )
    })
}

pub(super) fn set_policy(policy: Unclaimed) {
    with(|r| r.policy = policy);
}

/// Checks, just before the app runs, that every inherited socket was
/// taken. Logs a warning naming those that were not; `Err` with the same
/// words when the policy is [`Unclaimed::Fail`].
pub(crate) fn check() -> Result<(), String> {
    let (left, asked, policy, warned) = with(|r| {
        let warned = std::mem::replace(&mut r.warned, true);
        (r.left(), r.asked.clone(), r.policy, warned)
    });
    if left.is_empty() || (warned && policy == Unclaimed::Warn) {
        return Ok(());
    }
    let why = format!(
        "inherited socket{} nobody took: {}; the service asked for {}. Name the sockets as \
         the service asks for them (LISTEN_FDNAMES; systemd: FileDescriptorName=; \
         systemd-socket-activate: --fdname=NAME): until then their connections wait unserved",
        if left.len() == 1 { "" } else { "s" },
        left.join(", "),
        if asked.is_empty() {
            "none".to_string()
        } else {
            asked
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    match policy {
        Unclaimed::Warn => {
            tracing::warn!(target: "lameduck::listen", unclaimed = %left.join(","), asked = %asked.join(","), "{why}");
            Ok(())
        }
        Unclaimed::Fail => Err(why),
    }
}
