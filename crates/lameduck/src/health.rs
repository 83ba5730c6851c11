//! The health registry: liveness, readiness and startup, kept apart.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::Phase;

/// Liveness, readiness and startup of a service, as Kubernetes probes them.
///
/// The three answer different questions, and mixing them up is a classic
/// outage: a liveness probe that fails while the service drains gets the pod
/// killed mid-shutdown.
///
/// | probe | true when | false makes the orchestrator |
/// |---|---|---|
/// | startup | every component reported ready once | wait (and eventually restart) |
/// | readiness | running (not starting, not draining) and no component reports itself unready | stop sending traffic |
/// | liveness | no component reports itself broken beyond repair | restart the container |
///
/// Readiness turns false at the very first instant of Draining, before any
/// component hears of the shutdown, and never turns true again. Liveness
/// stays true during the shutdown.
///
/// `Health` is a cheap handle; the HTTP probes (feature `http`) serve it as
/// `/livez`, `/readyz` and `/startupz`.
#[derive(Clone, Debug, Default)]
pub struct Health {
    inner: Arc<Mutex<State>>,
    /// Bumped after every change, for those who follow the probes (the
    /// gRPC health service's `Watch`).
    changed: Arc<tokio::sync::watch::Sender<u64>>,
}

#[derive(Debug, Default)]
struct State {
    phase: Option<Phase>,
    components: BTreeMap<Arc<str>, ComponentHealth>,
}

#[derive(Debug, Default)]
struct ComponentHealth {
    started: bool,
    unready: Option<String>,
    unlive: Option<String>,
}

/// One probe's answer: overall verdict and each check behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Whether the probe passes.
    pub ok: bool,
    /// The checks, in a stable order.
    pub checks: Vec<Check>,
}

/// One named check of a probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// `phase` or a component's name.
    pub name: String,
    /// Whether it passes.
    pub ok: bool,
    /// Why it fails (or a short note when it passes).
    pub reason: Option<String>,
}

impl Health {
    /// A registry with no components, in no phase (not started, not ready).
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state torn (every
        // update is a single assignment), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the liveness probe passes.
    pub fn is_live(&self) -> bool {
        self.liveness().ok
    }

    /// Whether the readiness probe passes.
    pub fn is_ready(&self) -> bool {
        self.readiness().ok
    }

    /// Whether the startup probe passes.
    pub fn is_started(&self) -> bool {
        self.startup().ok
    }

    /// The liveness probe with its checks.
    pub fn liveness(&self) -> Status {
        let state = self.lock();
        let checks = state
            .components
            .iter()
            .map(|(name, c)| Check {
                name: name.to_string(),
                ok: c.unlive.is_none(),
                reason: c.unlive.clone(),
            })
            .collect::<Vec<_>>();
        Status {
            ok: checks.iter().all(|c| c.ok),
            checks,
        }
    }

    /// The readiness probe with its checks.
    pub fn readiness(&self) -> Status {
        let state = self.lock();
        let phase_ok = state.phase == Some(Phase::Running);
        let mut checks = vec![Check {
            name: "phase".into(),
            ok: phase_ok,
            reason: Some(state.phase.map_or("not started", Phase::as_str).to_string()),
        }];
        for (name, c) in &state.components {
            let (ok, reason) = match (&c.unready, c.started) {
                (Some(why), _) => (false, Some(why.clone())),
                (None, false) => (false, Some("starting".to_string())),
                (None, true) => (true, None),
            };
            checks.push(Check {
                name: name.to_string(),
                ok,
                reason,
            });
        }
        Status {
            ok: checks.iter().all(|c| c.ok),
            checks,
        }
    }

    /// The startup probe with its checks.
    pub fn startup(&self) -> Status {
        let state = self.lock();
        let checks = state
            .components
            .iter()
            .map(|(name, c)| Check {
                name: name.to_string(),
                ok: c.started,
                reason: (!c.started).then(|| "starting".to_string()),
            })
            .collect::<Vec<_>>();
        let started = state.phase.is_some_and(|p| p >= Phase::Running);
        Status {
            ok: started && checks.iter().all(|c| c.ok),
            checks,
        }
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        {
            let mut state = self.lock();
            // Once started, startup stays passed even after the phase moves on.
            state.phase = Some(phase);
        }
        self.bump();
    }

    /// A receiver told of every change, after it is made.
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn register(&self, name: &Arc<str>) {
        self.lock().components.entry(name.clone()).or_default();
    }

    /// Updates the entry of component `name` (registered at build; an
    /// unknown name is ignored).
    fn update(&self, name: &str, f: impl FnOnce(&mut ComponentHealth)) {
        if let Some(c) = self.lock().components.get_mut(name) {
            f(c);
        }
        self.bump();
    }

    /// A component reported ready once: start-up passes for it for good.
    pub(crate) fn set_started(&self, name: &str) {
        self.update(name, |c| c.started = true);
    }

    /// A component that ended for good: it no longer counts for readiness
    /// or start-up.
    pub(crate) fn set_done(&self, name: &str) {
        self.update(name, |c| {
            c.started = true;
            c.unready = None;
        });
    }

    pub(crate) fn set_unready(&self, name: &str, reason: Option<String>) {
        self.update(name, |c| c.unready = reason);
    }

    pub(crate) fn set_unlive(&self, name: &str, reason: Option<String>) {
        self.update(name, |c| c.unlive = reason);
    }
}

impl fmt::Display for Status {
    /// The Kubernetes `?verbose` format: one `[+]name ok` or
    /// `[-]name failed: reason` line per check, then the verdict.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            match (c.ok, &c.reason) {
                (true, Some(r)) => writeln!(f, "[+]{} ok ({r})", c.name)?,
                (true, None) => writeln!(f, "[+]{} ok", c.name)?,
                (false, Some(r)) => writeln!(f, "[-]{} failed: {r}", c.name)?,
                (false, None) => writeln!(f, "[-]{} failed", c.name)?,
            }
        }
        if self.ok {
            write!(f, "ok")
        } else {
            write!(f, "failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> (Health, Arc<str>) {
        let h = Health::new();
        let db: Arc<str> = "db".into();
        h.register(&db);
        (h, db)
    }

    #[test]
    fn not_ready_while_starting() {
        let (h, _) = registry();
        h.set_phase(Phase::Starting);
        assert!(!h.is_ready());
        assert!(!h.is_started());
        assert!(h.is_live());
    }

    #[test]
    fn ready_when_running_and_every_component_started() {
        let (h, db) = registry();
        h.set_phase(Phase::Running);
        assert!(!h.is_ready(), "db has not started");
        h.set_started(&db);
        assert!(h.is_ready());
        assert!(h.is_started());
    }

    #[test]
    fn a_component_reporting_unready_fails_readiness_with_its_reason() {
        let (h, db) = registry();
        h.set_started(&db);
        h.set_phase(Phase::Running);
        h.set_unready(&db, Some("reconnecting".into()));
        let status = h.readiness();
        assert!(!status.ok);
        assert!(
            status.to_string().contains("[-]db failed: reconnecting"),
            "{status}"
        );
        h.set_unready(&db, None);
        assert!(h.is_ready());
    }

    #[test]
    fn draining_is_unready_but_live_and_started() {
        let (h, db) = registry();
        h.set_started(&db);
        h.set_phase(Phase::Running);
        h.set_phase(Phase::Draining);
        assert!(!h.is_ready());
        assert!(h.is_live());
        assert!(h.is_started());
        assert!(
            h.readiness()
                .to_string()
                .contains("[-]phase failed: draining")
        );
    }

    #[test]
    fn a_component_reporting_broken_fails_liveness() {
        let (h, db) = registry();
        h.set_unlive(&db, Some("deadlocked".into()));
        assert!(!h.is_live());
    }
}
