//! What `lameduck run` sees of its program's traffic: the connections on
//! the TCP sockets it holds for the program (`--listen`, or passed by
//! systemd). lameduck accepts none of them, but the kernel lists them all
//! (`run/sock_diag.rs`); each sample counts as an arrival every connection
//! not seen before and every one that received bytes since the last
//! sample. The library's adaptive drain and flight record take the counts
//! as a [traffic source](lameduck::AppHandle::traffic_source), one per
//! socket, named after it.
//!
//! Unseen: Unix sockets, sockets the program binds itself, and requests
//! as such (a keep-alive connection that sends is traffic, whatever it
//! sends). Without a TCP socket to watch, or where sock_diag is not
//! available, the drain is fixed at `drain_max`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lameduck::{AppHandle, Phase, TrafficCounts};
use tokio::sync::watch;

#[cfg(target_os = "linux")]
use super::sock_diag::{Conn, Dumper};

/// One connection as a sample lists it; see `run/sock_diag.rs`.
#[cfg(not(target_os = "linux"))]
#[derive(Clone, Copy, Debug)]
struct Conn {
    cookie: u64,
    bytes_received: Option<u64>,
}

/// The counts of one socket, from one sample to the next.
#[derive(Debug, Default)]
struct Seen {
    /// The connections of the last sample, by cookie, with the bytes each
    /// had received; `None` before the first.
    last: Option<HashMap<u64, Option<u64>>>,
    counts: TrafficCounts,
}

impl Seen {
    /// Takes a sample: a connection not in the last one is new, one whose
    /// bytes grew sent something. The first sample is the baseline.
    fn observe(&mut self, conns: &[Conn]) {
        let mut now = HashMap::with_capacity(conns.len());
        for c in conns {
            let before = self.last.as_ref().map(|last| last.get(&c.cookie));
            match before {
                None => {}
                Some(None) => {
                    self.counts.connections += 1;
                    self.counts.arrivals += 1;
                }
                Some(Some(bytes)) => {
                    if let (Some(was), Some(is)) = (bytes, c.bytes_received)
                        && is > *was
                    {
                        self.counts.arrivals += 1;
                    }
                }
            }
            // In TIME_WAIT the bytes are no longer listed: keep the last.
            let bytes = c
                .bytes_received
                .or_else(|| before.flatten().copied().flatten());
            now.insert(c.cookie, bytes);
        }
        self.last = Some(now);
    }
}

/// The TCP sockets to watch, checked at start.
#[derive(Debug)]
pub struct Watch {
    sockets: Vec<(String, SocketAddr)>,
}

/// Why there is nothing to watch: the drain is then fixed.
#[derive(Debug)]
pub enum Unwatched {
    /// No TCP socket is held for the program.
    NoSocket,
    /// The kernel's sock_diag cannot be used.
    Unavailable(String),
}

impl std::fmt::Display for Unwatched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unwatched::NoSocket => f.write_str("no socket to watch"),
            Unwatched::Unavailable(why) => {
                write!(f, "the sockets' connections cannot be seen ({why})")
            }
        }
    }
}

impl Watch {
    /// The TCP sockets among `sockets`, once one sample of each worked.
    ///
    /// # Errors
    ///
    /// Nothing to watch, and why.
    pub fn check(sockets: &[(String, OwnedFd)]) -> Result<Self, Unwatched> {
        let sockets: Vec<(String, SocketAddr)> = sockets
            .iter()
            .filter_map(|(name, fd)| tcp_addr(fd).map(|a| (name.clone(), a)))
            .collect();
        if sockets.is_empty() {
            return Err(Unwatched::NoSocket);
        }
        for (name, addr) in &sockets {
            sample_once(*addr)
                .map_err(|e| Unwatched::Unavailable(format!("sock_diag, socket {name}: {e}")))?;
        }
        Ok(Self { sockets })
    }

    /// The names of the sockets watched.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sockets.iter().map(|(n, _)| n.as_str())
    }

    /// Adds a traffic source per socket to `app`, listed at every tick from
    /// the drain on and, while the program runs, as `running` says.
    pub fn install(self, app: &AppHandle, running: WhileRunning) {
        for (name, addr) in self.sockets {
            let source = Source::new(addr, app.watch_phase(), running);
            let source = Arc::new(Mutex::new(source));
            app.traffic_source(name, move || {
                let mut s = source.lock().unwrap_or_else(|e| e.into_inner());
                Some(s.sample())
            });
        }
    }
}

/// How often the sockets are listed while the program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhileRunning {
    /// Never (a fixed drain: its flight record, or its count at its start
    /// and end, need only the drain's traffic).
    Never,
    /// At every `n`th tick (an adaptive drain: its rule reads the traffic
    /// of the seconds before the signal).
    Every(u32),
}

impl WhileRunning {
    /// For an adaptive drain that needs `quiet`: as seldom as leaves the
    /// quiet its rule needs unchanged. Arrivals listed every `n` ticks
    /// are `n` ticks apart at the least, and the rule needs four times the
    /// longest gap: `n` is at most a quarter of `quiet` in ticks. At most
    /// 5 (half a second), so that the look-back holds twenty listings. What
    /// does change: the rule's least evidence, arrivals in five ticks, takes
    /// `n` times as long a burst before the signal.
    pub fn for_quiet(quiet: Duration) -> Self {
        let ticks = quiet.as_millis() / (4 * lameduck::TRAFFIC_TICK.as_millis());
        WhileRunning::Every(ticks.clamp(1, 5) as u32)
    }
}

/// An observer that says, as the drain starts, what it watches: the
/// sockets, or why nothing (the drain is then fixed at `drain_max`).
pub fn drain_start(
    watch: &Result<Watch, Unwatched>,
    timeline: &lameduck::Timeline,
) -> impl lameduck::observe::Observer {
    let max = humantime::format_duration(timeline.drain_max());
    let said = match watch {
        Ok(w) if timeline.is_adaptive() => format!(
            "drain watching the connections on {}",
            w.names().collect::<Vec<_>>().join(", ")
        ),
        Ok(w) => format!(
            "drain fixed at {max} ({}); counting the connections on {}",
            if timeline.drain_min < timeline.drain_max() {
                // A drain of 100ms or less: no quiet can end it.
                "too short for any quiet to end it"
            } else {
                "--drain-delay"
            },
            w.names().collect::<Vec<_>>().join(", ")
        ),
        Err(why) => format!("drain fixed: {why}; it lasts {max}"),
    };
    // At the drain's start, not at Draining: a shutdown that skips the
    // drain (the program never started) has no drain to describe.
    move |event: &lameduck::observe::Event<'_>| {
        if let lameduck::observe::Event::DrainStarted { .. } = event {
            tracing::info!(target: "lameduck::run", "{said}");
        }
    }
}

/// One watched socket.
struct Source {
    addr: SocketAddr,
    #[cfg(target_os = "linux")]
    dumper: Option<Dumper>,
    seen: Seen,
    phase: watch::Receiver<Phase>,
    running: WhileRunning,
    /// Ticks while running, for [`WhileRunning::Every`].
    ticks: u32,
    /// A tick went unlisted while running with [`WhileRunning::Never`]:
    /// the next listing is a new baseline, not traffic.
    stale: bool,
    failed: bool,
}

impl Source {
    fn new(addr: SocketAddr, phase: watch::Receiver<Phase>, running: WhileRunning) -> Self {
        Self {
            addr,
            #[cfg(target_os = "linux")]
            dumper: None,
            seen: Seen::default(),
            phase,
            running,
            ticks: 0,
            stale: false,
            failed: false,
        }
    }

    fn sample(&mut self) -> TrafficCounts {
        if matches!(*self.phase.borrow(), Phase::Starting | Phase::Running) {
            match self.running {
                WhileRunning::Never => {
                    self.stale = true;
                    return self.seen.counts;
                }
                WhileRunning::Every(n) => {
                    self.ticks = self.ticks.wrapping_add(1);
                    // What arrived meanwhile counts at the next listing.
                    if !self.ticks.is_multiple_of(n) {
                        return self.seen.counts;
                    }
                }
            }
        } else if std::mem::take(&mut self.stale) {
            self.seen.last = None;
        }
        match self.connections() {
            Ok(conns) => self.seen.observe(&conns),
            Err(err) => {
                // What cannot be seen counts as traffic: the drain then
                // lasts drain_max rather than end on a silence that was
                // never observed.
                if !std::mem::replace(&mut self.failed, true) {
                    tracing::warn!(target: "lameduck::run", addr = %self.addr, error = %err, "cannot list the connections of {} any more: counted as traffic until they can", self.addr);
                }
                self.seen.counts.arrivals += 1;
            }
        }
        self.seen.counts
    }

    #[cfg(target_os = "linux")]
    fn connections(&mut self) -> std::io::Result<Vec<Conn>> {
        let dumper = match &mut self.dumper {
            Some(d) => d,
            None => self.dumper.insert(Dumper::open()?),
        };
        let conns = dumper.connections(self.addr);
        if conns.is_err() {
            // A dump left half read would confuse the next: start afresh.
            self.dumper = None;
        }
        conns
    }

    #[cfg(not(target_os = "linux"))]
    fn connections(&mut self) -> std::io::Result<Vec<Conn>> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

/// One sample, to check that sock_diag works here.
#[cfg(target_os = "linux")]
fn sample_once(addr: SocketAddr) -> std::io::Result<()> {
    Dumper::open()?.connections(addr).map(drop)
}

#[cfg(not(target_os = "linux"))]
fn sample_once(_: SocketAddr) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "Linux only",
    ))
}

/// The address of `fd` if it is a TCP listening socket.
pub(super) fn tcp_addr(fd: &OwnedFd) -> Option<SocketAddr> {
    use nix::sys::socket::{SockType, SockaddrLike as _, SockaddrStorage, getsockname, sockopt};
    if nix::sys::socket::getsockopt(fd, sockopt::SockType).ok()? != SockType::Stream {
        return None;
    }
    let addr: SockaddrStorage = getsockname(fd.as_raw_fd()).ok()?;
    match addr.family()? {
        nix::sys::socket::AddressFamily::Inet => {
            addr.as_sockaddr_in().map(|a| SocketAddr::V4((*a).into()))
        }
        nix::sys::socket::AddressFamily::Inet6 => {
            addr.as_sockaddr_in6().map(|a| SocketAddr::V6((*a).into()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(cookie: u64, bytes: Option<u64>) -> Conn {
        Conn {
            cookie,
            bytes_received: bytes,
        }
    }

    #[test]
    fn the_first_sample_is_a_baseline_then_new_connections_arrive() {
        let mut seen = Seen::default();
        seen.observe(&[conn(1, Some(10)), conn(2, Some(0))]);
        assert_eq!(seen.counts, TrafficCounts::default());
        seen.observe(&[conn(1, Some(10)), conn(2, Some(0)), conn(3, Some(0))]);
        assert_eq!((seen.counts.arrivals, seen.counts.connections), (1, 1));
    }

    #[test]
    fn a_keep_alive_connection_that_sends_is_traffic_and_an_idle_one_is_not() {
        let mut seen = Seen::default();
        seen.observe(&[conn(1, Some(10)), conn(2, Some(5))]);
        seen.observe(&[conn(1, Some(90)), conn(2, Some(5))]);
        assert_eq!((seen.counts.arrivals, seen.counts.connections), (1, 0));
        seen.observe(&[conn(1, Some(90)), conn(2, Some(5))]);
        assert_eq!(seen.counts.arrivals, 1);
    }

    #[test]
    fn a_connection_first_seen_in_time_wait_is_new_and_one_that_reaches_it_is_not() {
        let mut seen = Seen::default();
        seen.observe(&[conn(1, Some(10))]);
        // 1 closed (TIME_WAIT lists no bytes); 2 opened and closed between
        // the samples.
        seen.observe(&[conn(1, None), conn(2, None)]);
        assert_eq!((seen.counts.arrivals, seen.counts.connections), (1, 1));
        seen.observe(&[conn(1, None), conn(2, None)]);
        assert_eq!(seen.counts.arrivals, 1);
    }

    #[test]
    fn while_running_the_sockets_are_listed_as_seldom_as_the_quiet_allows() {
        let every = |ms| WhileRunning::for_quiet(Duration::from_millis(ms));
        assert_eq!(every(100), WhileRunning::Every(1));
        assert_eq!(every(300), WhileRunning::Every(1));
        assert_eq!(every(1000), WhileRunning::Every(2));
        assert_eq!(every(60_000), WhileRunning::Every(5));
    }

    #[test]
    fn only_tcp_listeners_are_watched() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let dir = std::env::temp_dir().join(format!("lameduck-traffic-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let unix = std::os::unix::net::UnixListener::bind(&dir).unwrap();
        assert_eq!(tcp_addr(&OwnedFd::from(tcp)), Some(addr));
        assert_eq!(tcp_addr(&OwnedFd::from(unix)), None);
        let _ = std::fs::remove_file(&dir);
        assert!(matches!(Watch::check(&[]), Err(Unwatched::NoSocket)));
    }
}
