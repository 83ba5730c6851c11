//! The Kubernetes side of a plan: the pod settings a budget implies, and the
//! pod spec fragment that carries them, written by hand as YAML.

use std::fmt;
use std::time::Duration;

use lameduck::Timeline;

use super::{DrainIn, secs};

/// A program built on the library that takes its admin address on the
/// command line: the demo, whose flag is kept here so that it is checked in
/// one place (the CLI's tests run it).
const ADMIN_BIND_EXAMPLE: &str = "lameduck demo --admin 0.0.0.0:{port}";

/// The same for any other program, under `lameduck run` (whose flag is
/// likewise checked in the tests).
const RUN_EXAMPLE: &str = "lameduck run --admin 0.0.0.0:{port} -- CMD ARGS";

/// The startup probe: liveness and readiness wait for it, so it may take its
/// time. 2 s × 30 = one minute to start.
const STARTUP: ProbeTiming = ProbeTiming {
    period_seconds: 2,
    failure_threshold: 30,
};

/// The liveness probe: Kubernetes' defaults. Restarting a container is
/// drastic, so it only happens after 30 s of failures.
const LIVENESS: ProbeTiming = ProbeTiming {
    period_seconds: 10,
    failure_threshold: 3,
};

/// The longest readiness period, however long the drain delay: a probe every
/// 5 s costs next to nothing, and noticing sooner is always better. (The
/// shortest is Kubernetes' minimum, 1 s.)
const READINESS_PERIOD_MAX: u64 = 5;

/// How often a probe runs and how many failures in a row count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub(super) struct ProbeTiming {
    pub(super) period_seconds: u64,
    pub(super) failure_threshold: u64,
}

impl ProbeTiming {
    /// The longest the kubelet takes to act after the endpoint starts
    /// failing: up to one period until the next probe, then the threshold.
    pub(super) fn notices_within(self) -> Duration {
        Duration::from_secs(self.period_seconds * self.failure_threshold)
    }

    /// Readiness timing that notices an unready pod within the drain delay
    /// (when the drain delay is at least Kubernetes' 1 s minimum), while still
    /// forgiving a single failed probe when there is time for two.
    fn readiness(drain_delay: Duration) -> Self {
        let whole = drain_delay.as_secs();
        let failure_threshold = if whole >= 2 { 2 } else { 1 };
        let period_seconds = (whole / failure_threshold).clamp(1, READINESS_PERIOD_MAX);
        Self {
            period_seconds,
            failure_threshold,
        }
    }
}

/// The pod settings a checked budget implies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PodSettings {
    pub(super) drain_in: DrainIn,
    /// The grace period rounded up: Kubernetes only takes whole seconds, and
    /// rounding down would cut into the safety margin.
    pub(super) termination_grace_period_seconds: u64,
    /// The `preStop` sleep, when the hook holds the drain delay.
    pub(super) prestop_sleep: Option<Duration>,
    pub(super) admin_port: u16,
    pub(super) startup: ProbeTiming,
    pub(super) readiness: ProbeTiming,
    pub(super) liveness: ProbeTiming,
}

impl PodSettings {
    pub(super) fn new(timeline: &Timeline, drain_in: DrainIn, admin_port: u16) -> Self {
        let grace = timeline.grace_period;
        let prestop_sleep = match drain_in {
            DrainIn::Prestop if !timeline.drain_delay.is_zero() => Some(timeline.drain_delay),
            _ => None,
        };
        Self {
            drain_in,
            termination_grace_period_seconds: grace.as_secs() + u64::from(grace.subsec_nanos() > 0),
            prestop_sleep,
            admin_port,
            startup: STARTUP,
            readiness: ProbeTiming::readiness(timeline.drain_delay),
            liveness: LIVENESS,
        }
    }
}

/// The pod spec fragment (YAML), with comments that say where each number
/// comes from.
pub(super) struct PodSpec<'a> {
    pub(super) timeline: &'a Timeline,
    pub(super) pod: &'a PodSettings,
}

impl fmt::Display for PodSpec<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.header(f)?;
        self.grace_period(f)?;
        writeln!(f, "containers:")?;
        writeln!(f, "  - name: app # your container")?;
        self.admin_port(f)?;
        self.probes(f)?;
        self.prestop(f)
    }
}

impl PodSpec<'_> {
    fn drain(&self) -> String {
        secs(self.timeline.drain_delay)
    }

    fn header(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        comment(
            f,
            "",
            "Pod spec fragment from `lameduck plan`: merge it into your pod template \
             (spec.template.spec of a Deployment) and rename the container.",
        )?;
        writeln!(f, "#")?;
        writeln!(f, "# The shutdown budget it is built for:")?;
        for line in self.timeline.to_string().lines() {
            writeln!(f, "#   {line}")?;
        }
        if let Some(sleep) = self.pod.prestop_sleep {
            writeln!(f, "#")?;
            comment(
                f,
                "",
                &format!(
                    "Draining is the preStop sleep: fixed at {}, as a sleep cannot end early.",
                    secs(sleep)
                ),
            )?;
        }
        writeln!(f)
    }

    fn grace_period(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let grace = self.timeline.grace_period;
        let rounded = match grace.subsec_nanos() {
            0 => String::new(),
            _ => format!(" ({} rounded up)", secs(grace)),
        };
        let sigterm = match self.pod.drain_in {
            DrainIn::App => "There is no preStop hook, so the kubelet sends SIGTERM at once.",
            DrainIn::Prestop => "It counts the preStop hook: SIGTERM only comes after the hook.",
        };
        comment(
            f,
            "",
            &format!(
                "The grace period{rounded}: from the start of termination to SIGKILL. {sigterm}"
            ),
        )?;
        writeln!(
            f,
            "terminationGracePeriodSeconds: {}",
            self.pod.termination_grace_period_seconds
        )
    }

    fn admin_port(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = self.pod.admin_port;
        writeln!(f, "    ports:")?;
        writeln!(f, "      - name: admin")?;
        writeln!(f, "        containerPort: {port}")?;
        match self.pod.drain_in {
            DrainIn::App => {
                comment(
                    f,
                    "    ",
                    &format!(
                        "The probes call the program's admin listener on port {port} (the \
                         library's `http::Server::admin`). Bind it to the pod's addresses, \
                         0.0.0.0:{port} or the pod IP from the downward API (status.podIP): the \
                         kubelet cannot reach 127.0.0.1. The demo, for one:"
                    ),
                )?;
                writeln!(
                    f,
                    "    #   {}",
                    ADMIN_BIND_EXAMPLE.replace("{port}", &port.to_string())
                )?;
                comment(
                    f,
                    "    ",
                    "A program not built on lameduck gets the same probes and drain from \
                     lameduck run (docs/run.md), as the container's command:",
                )?;
                writeln!(
                    f,
                    "    #   {}",
                    RUN_EXAMPLE.replace("{port}", &port.to_string())
                )?;
                comment(
                    f,
                    "    ",
                    "Other pods can then reach it too: restrict it with a NetworkPolicy if that \
                     matters.",
                )
            }
            DrainIn::Prestop => comment(
                f,
                "    ",
                &format!(
                    "The probes call the program's health endpoints on port {port}: adjust the \
                     paths to the ones it serves, on an address the kubelet can reach (0.0.0.0 \
                     or the pod IP, not 127.0.0.1)."
                ),
            ),
        }
    }

    fn probes(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pod = self.pod;
        let drain = self.drain();

        writeln!(f, "    startupProbe:")?;
        comment(
            f,
            "      ",
            &format!(
                "Liveness and readiness wait until this succeeds: it allows {} to start \
                 (periodSeconds x failureThreshold).",
                secs(pod.startup.notices_within())
            ),
        )?;
        probe(f, "/startupz", pod.admin_port, pod.startup)?;

        let r = pod.readiness;
        let who = match pod.drain_in {
            DrainIn::App => "lameduck",
            DrainIn::Prestop => "the program",
        };
        let failed = match r.failure_threshold {
            1 => "1 failed probe".to_string(),
            n => format!("{n} failed probes {}s apart", r.period_seconds),
        };
        let within = secs(r.notices_within());
        let verdict = if r.notices_within() <= self.timeline.drain_delay {
            "inside the drain delay.".to_string()
        } else {
            format!(
                "later than the drain delay ({drain}) ends: requests may still arrive after the \
                 listeners close. Raise --drain-delay to 1s or more."
            )
        };
        writeln!(f, "    readinessProbe:")?;
        comment(
            f,
            "      ",
            &format!(
                "Endpoints drop a pod as soon as it starts terminating, whatever this probe \
                 says; the drain delay ({drain}) covers the lag until kube-proxy and ingress \
                 controllers have caught up. This probe matters when {who} turns unready on its \
                 own (a failed component, a shutdown the kubelet did not start): after \
                 {failed}, the kubelet notices within {within}, {verdict}"
            ),
        )?;
        probe(f, "/readyz", pod.admin_port, r)?;

        writeln!(f, "    livenessProbe:")?;
        comment(
            f,
            "      ",
            match pod.drain_in {
                DrainIn::App => {
                    "/livez stays healthy while lameduck drains and stops, so the kubelet does \
                     not restart a pod for shutting down; it fails only when a component \
                     reports itself broken beyond repair."
                }
                DrainIn::Prestop => {
                    "It must stay healthy while the program drains and stops, or the kubelet \
                     restarts it half-way."
                }
            },
        )?;
        probe(f, "/livez", pod.admin_port, pod.liveness)
    }

    fn prestop(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let drain = self.drain();
        let Some(sleep) = self.pod.prestop_sleep else {
            let why = match self.pod.drain_in {
                DrainIn::App => format!(
                    "No preStop hook: lameduck drains by itself after SIGTERM (unready but still \
                     serving for {}). A preStop sleep would spend the drain delay twice, and \
                     since the grace period counts the hook, SIGKILL would cut the last phases \
                     short.",
                    if self.timeline.is_adaptive() {
                        format!(
                            "up to {drain}, less once no request has arrived for the quiet it needs"
                        )
                    } else {
                        drain.clone()
                    }
                ),
                DrainIn::Prestop => "No preStop hook: the drain delay is 0s, so the program gets \
                                     SIGTERM as soon as the pod starts terminating."
                    .to_string(),
            };
            return comment(f, "    ", &why);
        };
        let after = secs(self.timeline.grace_period.saturating_sub(sleep));
        let sleep_binary = match sleep.subsec_nanos() {
            0 => format!(
                "The image needs a `sleep` binary; on Kubernetes 1.30 and later, \
                 `sleep: {{seconds: {}}}` does the same without one.",
                sleep.as_secs()
            ),
            _ => "The image needs a `sleep` binary that takes fractions of a second (GNU \
                  coreutils, busybox)."
                .to_string(),
        };
        writeln!(f, "    lifecycle:")?;
        comment(
            f,
            "      ",
            &format!(
                "The program exits at once on SIGTERM, so the drain happens before SIGTERM: the pod \
                 leaves the endpoints as it starts terminating, and this hook keeps the program \
                 serving for the drain delay ({drain}) while kube-proxy and ingress controllers \
                 catch up. The grace period counts the hook: SIGTERM comes {drain} in, leaving \
                 {after} until SIGKILL, so the program must not wait the drain delay again. \
                 {sleep_binary}"
            ),
        )?;
        writeln!(f, "      preStop:")?;
        writeln!(f, "        exec:")?;
        writeln!(
            f,
            "          command: [\"sleep\", \"{}\"]",
            sleep.as_secs_f64()
        )
    }
}

/// Writes `text` as YAML comment lines at `indent`, wrapped before column 80.
fn comment(f: &mut fmt::Formatter<'_>, indent: &str, text: &str) -> fmt::Result {
    let width = 78 - indent.len();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            writeln!(f, "{indent}# {line}")?;
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    writeln!(f, "{indent}# {line}")
}

fn probe(f: &mut fmt::Formatter<'_>, path: &str, port: u16, timing: ProbeTiming) -> fmt::Result {
    writeln!(f, "      httpGet:")?;
    writeln!(f, "        path: {path}")?;
    writeln!(f, "        port: {port}")?;
    writeln!(f, "      periodSeconds: {}", timing.period_seconds)?;
    writeln!(f, "      failureThreshold: {}", timing.failure_threshold)?;
    writeln!(f, "      timeoutSeconds: 1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_notices_within_the_drain_delay() {
        for ms in [1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000, 60_000] {
            let drain = Duration::from_millis(ms);
            let r = ProbeTiming::readiness(drain);
            assert!(r.notices_within() <= drain, "{drain:?}: {r:?}");
            assert!(r.period_seconds >= 1, "{drain:?}: {r:?}");
        }
    }

    #[test]
    fn readiness_forgives_one_failure_when_there_is_time() {
        assert_eq!(
            ProbeTiming::readiness(Duration::from_secs(5)).failure_threshold,
            2
        );
        assert_eq!(
            ProbeTiming::readiness(Duration::from_secs(1)).failure_threshold,
            1
        );
    }
}
