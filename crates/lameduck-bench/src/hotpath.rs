//! Scenario (c): what lameduck's HTTP server costs while nothing drains,
//! measured with load generators nobody here wrote — wrk (HTTP/1.1) and
//! h2load (HTTP/2) — against the same trivial handler served four ways
//! (`http-server --kind ...`).
//!
//! Each comparison is a pair: lameduck's server against a bare hyper-util
//! server, and an axum `Router` served by lameduck against the same router
//! under `axum::serve`. Both servers of a pair run at once, pinned to one
//! core (the load generator to the other, when there are two), and are
//! loaded in turn, A B A B, so that a slow moment of the machine falls on
//! both. From each run: requests per second, and the server's CPU time per
//! request (its `/proc/PID/stat` before and after). Then, noise-free, the
//! instructions per request under callgrind, and the memory each idle
//! keep-alive connection costs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

/// One server process of the benchmark.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `http-server --kind KIND` from `bin_dir`, pinned to `cpu`
    /// when given, under `wrapper` (valgrind, say) when given.
    ///
    /// # Errors
    ///
    /// When it cannot start or prints no address.
    pub fn start(
        bin_dir: &Path,
        kind: &str,
        cpu: Option<usize>,
        wrapper: &[String],
    ) -> anyhow::Result<Self> {
        Self::start_with(bin_dir, kind, cpu, wrapper, &[])
    }

    /// [`start`](Self::start), with more arguments for `http-server` (the
    /// certificate of the TLS kinds).
    ///
    /// # Errors
    ///
    /// When it cannot start or prints no address.
    pub fn start_with(
        bin_dir: &Path,
        kind: &str,
        cpu: Option<usize>,
        wrapper: &[String],
        args: &[String],
    ) -> anyhow::Result<Self> {
        let bin = bin_dir.join("http-server");
        let mut argv: Vec<String> = Vec::new();
        if let Some(cpu) = cpu {
            argv.extend(["taskset".into(), "-c".into(), cpu.to_string()]);
        }
        argv.extend(wrapper.iter().cloned());
        argv.push(bin.display().to_string());
        argv.extend(["--kind".into(), kind.into()]);
        argv.extend(args.iter().cloned());
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", argv.join(" ")))?;
        let addr = read_listening(&mut child)
            .with_context(|| format!("the {kind} server did not say where it listens"));
        match addr {
            Ok(addr) => Ok(Self { child, addr }),
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(err)
            }
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its CPU time so far (user and system).
    ///
    /// # Errors
    ///
    /// When `/proc/PID/stat` cannot be read.
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // The fields after the command (which may hold spaces) start at ')'.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields.get(11).context("utime")?.parse::<u64>()?
            + fields.get(12).context("stime")?.parse::<u64>()?;
        Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
    }

    /// Its resident memory, in bytes.
    ///
    /// # Errors
    ///
    /// When `/proc/PID/status` cannot be read.
    pub fn rss(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .context("VmRSS")?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()?;
        Ok(kb * 1024)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Started by us, stopped by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the `listening on http://ADDR` line a server prints first.
fn read_listening(child: &mut Child) -> anyhow::Result<SocketAddr> {
    use std::io::BufRead;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .with_context(|| format!("unexpected first line {line:?}"))?;
    Ok(addr.parse()?)
}

/// `getconf CLK_TCK`: the unit of `/proc/PID/stat`'s times (100 almost
/// everywhere).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// The protocols, and the load generator of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1, by wrk.
    H1,
    /// HTTP/2 (prior knowledge), by h2load.
    H2,
    /// HTTP/1.1 over TLS, by wrk.
    H1Tls,
    /// HTTP/2 over TLS (ALPN), by h2load.
    H2Tls,
    /// Unary gRPC calls of `bench.Echo/Say` (h2c), by h2load: a `POST` of
    /// an empty message with the gRPC headers.
    GrpcUnary,
}

/// The path of the gRPC pair's method.
const GRPC_PATH: &str = "/bench.Echo/Say";

impl Proto {
    /// The protocol alone.
    pub fn version(self) -> &'static str {
        match self {
            Proto::H1 => "HTTP/1.1",
            Proto::H2 => "HTTP/2",
            Proto::H1Tls => "HTTPS/1.1",
            Proto::H2Tls => "HTTPS/2",
            Proto::GrpcUnary => "gRPC unary",
        }
    }

    /// As the tables say it, with its load generator.
    pub fn name(self) -> &'static str {
        match self {
            Proto::H1 => "HTTP/1.1 (wrk)",
            Proto::H2 => "HTTP/2 (h2load)",
            Proto::H1Tls => "HTTPS/1.1 (wrk)",
            Proto::H2Tls => "HTTPS/2 (h2load)",
            Proto::GrpcUnary => "gRPC unary (h2load)",
        }
    }

    /// A short name for file names.
    fn file_tag(self) -> &'static str {
        match self {
            Proto::H1 => "h1",
            Proto::H2 => "h2",
            Proto::H1Tls => "h1tls",
            Proto::H2Tls => "h2tls",
            Proto::GrpcUnary => "grpc",
        }
    }

    fn url(self, addr: SocketAddr) -> String {
        match self {
            Proto::H1 | Proto::H2 => format!("http://{addr}/"),
            Proto::H1Tls | Proto::H2Tls => format!("https://{addr}/"),
            Proto::GrpcUnary => format!("http://{addr}{GRPC_PATH}"),
        }
    }
}

/// A file holding one gRPC frame of an empty message (five zero bytes),
/// h2load's request body for [`Proto::GrpcUnary`].
fn grpc_body() -> anyhow::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("lameduck-bench-grpc-{}.bin", std::process::id()));
    if !path.exists() {
        std::fs::write(&path, [0u8; 5]).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(path)
}

/// h2load's arguments for `proto`'s request, before the URL: `--h1` for
/// the HTTP/1.1 protocols, the body and headers of a gRPC call.
fn h2load_request(proto: Proto) -> anyhow::Result<Vec<String>> {
    Ok(match proto {
        Proto::H1 | Proto::H1Tls => vec!["--h1".into()],
        Proto::H2 | Proto::H2Tls => Vec::new(),
        Proto::GrpcUnary => vec![
            "-d".into(),
            grpc_body()?.display().to_string(),
            "-H".into(),
            "content-type: application/grpc".into(),
            "-H".into(),
            "te: trailers".into(),
        ],
    })
}

/// What one load run measured.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    /// Requests answered per second.
    pub rps: f64,
    /// The server's CPU time per request.
    pub cpu_per_request: Duration,
}

/// Loads `server` for `duration` with `connections` keep-alive
/// connections, the load generator pinned to `cpu` when given.
///
/// # Errors
///
/// When the load generator fails or prints no figures.
pub fn load(
    server: &Server,
    proto: Proto,
    duration: Duration,
    connections: usize,
    cpu: Option<usize>,
) -> anyhow::Result<Run> {
    let url = proto.url(server.addr);
    let secs = duration.as_secs_f64().max(1.0).round() as u64;
    let mut argv: Vec<String> = Vec::new();
    if let Some(cpu) = cpu {
        argv.extend(["taskset".into(), "-c".into(), cpu.to_string()]);
    }
    match proto {
        Proto::H1 | Proto::H1Tls => argv.extend([
            "wrk".into(),
            "-t1".into(),
            format!("-c{connections}"),
            format!("-d{secs}s"),
            url,
        ]),
        Proto::H2 | Proto::H2Tls | Proto::GrpcUnary => {
            argv.extend([
                "h2load".into(),
                "-t1".into(),
                format!("-c{connections}"),
                "-m1".into(),
                format!("-D{secs}"),
            ]);
            argv.extend(h2load_request(proto)?);
            argv.push(url);
        }
    }
    let before = server.cpu()?;
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .with_context(|| format!("running {}", argv[0]))?;
    let cpu = server.cpu()? - before;
    let text = String::from_utf8_lossy(&out.stdout);
    let (requests, seconds) = match proto {
        Proto::H1 | Proto::H1Tls => parse_wrk(&text),
        Proto::H2 | Proto::H2Tls | Proto::GrpcUnary => parse_h2load(&text),
    }
    .with_context(|| format!("no figures in the output of {}:\n{text}", argv.join(" ")))?;
    if requests == 0 {
        bail!("{} got no response: {text}", argv[0]);
    }
    Ok(Run {
        rps: requests as f64 / seconds,
        cpu_per_request: cpu / u32::try_from(requests).unwrap_or(u32::MAX),
    })
}

/// `N requests in 5.00s, ...` from wrk.
fn parse_wrk(text: &str) -> Option<(u64, f64)> {
    let line = text.lines().find(|l| l.contains(" requests in "))?;
    let mut words = line.split_whitespace();
    let requests = words.next()?.parse().ok()?;
    let seconds = words.nth(2)?.trim_end_matches(',');
    Some((
        requests,
        humantime::parse_duration(seconds).ok()?.as_secs_f64(),
    ))
}

/// `finished in 5.00s, ...` and `requests: N total, N started, N done, N
/// succeeded` from h2load.
fn parse_h2load(text: &str) -> Option<(u64, f64)> {
    let finished = text.lines().find_map(|l| l.strip_prefix("finished in "))?;
    let seconds = finished.split(',').next()?.trim();
    let requests = text.lines().find_map(|l| l.strip_prefix("requests: "))?;
    let succeeded = requests
        .split(',')
        .find(|p| p.trim().ends_with("succeeded"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((
        succeeded,
        humantime::parse_duration(seconds).ok()?.as_secs_f64(),
    ))
}

/// Instructions the server runs per request, under callgrind: it starts
/// uninstrumented, takes a warm-up load, then counts over `requests`
/// requests from h2load (`--h1` for HTTP/1.1; over TLS, the 64
/// connections' handshakes are among what is counted). `args` go to
/// `http-server` (the certificate of the TLS kinds).
///
/// # Errors
///
/// When valgrind or h2load fail, or the dump has no total.
pub fn instructions_per_request(
    bin_dir: &Path,
    kind: &str,
    proto: Proto,
    requests: u64,
    scratch: &Path,
    args: &[String],
) -> anyhow::Result<f64> {
    let out_file: PathBuf = scratch.join(format!("callgrind.{kind}.{}", proto.file_tag()));
    let wrapper = vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        "--instr-atstart=no".into(),
        format!("--callgrind-out-file={}", out_file.display()),
    ];
    let server = Server::start_with(bin_dir, kind, None, &wrapper, args)?;
    let request = h2load_request(proto)?;
    let h2load = |n: u64| -> anyhow::Result<()> {
        let out = Command::new("h2load")
            .args(&request)
            .args(["-c64", "-m1", &format!("-n{n}"), &proto.url(server.addr)])
            .output()
            .context("running h2load")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let done = parse_h2load(&text).map(|(n, _)| n).unwrap_or(0);
        anyhow::ensure!(done == n, "h2load answered {done} of {n}:\n{text}");
        Ok(())
    };
    h2load((requests / 10).max(640))?;
    let control = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new("callgrind_control")
            .args(args)
            .arg(server.pid().to_string())
            .output()
            .context("running callgrind_control")?;
        anyhow::ensure!(out.status.success(), "callgrind_control {args:?} failed");
        Ok(())
    };
    // `-i on` starts counting; the dump writes `<file>.1`.
    control(&["-i", "on"])?;
    h2load(requests)?;
    control(&["-d"])?;
    drop(server);
    let dump = out_file.with_extension(format!(
        "{}.1",
        out_file.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let text =
        std::fs::read_to_string(&dump).with_context(|| format!("reading {}", dump.display()))?;
    let total: u64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .context("no totals in the callgrind dump")?
        .trim()
        .parse()?;
    Ok(total as f64 / requests as f64)
}

/// Bytes of resident memory per idle keep-alive connection: `n`
/// connections, each used for one request, then held open.
///
/// # Errors
///
/// When the connections cannot be opened.
pub fn memory_per_connection(server: &Server, n: usize) -> anyhow::Result<f64> {
    use std::io::{Read, Write};
    let before = server.rss()?;
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = std::net::TcpStream::connect(server.addr)?;
        s.write_all(b"GET / HTTP/1.1\r\nhost: bench\r\n\r\n")?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        while !buf.ends_with(b"hello\n") {
            let got = s.read(&mut chunk)?;
            anyhow::ensure!(got > 0, "closed before the response");
            buf.extend_from_slice(&chunk[..got]);
        }
        conns.push(s);
    }
    // Let the server settle what the last requests allocated.
    std::thread::sleep(Duration::from_millis(200));
    let after = server.rss()?;
    drop(conns);
    Ok(after.saturating_sub(before) as f64 / n as f64)
}

/// Minimum, median and maximum.
pub fn spread(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => (f64::NAN, f64::NAN, f64::NAN),
        n => (xs[0], xs[n / 2], xs[n - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_generator_output_is_read() {
        let wrk = "Running 2s test @ http://127.0.0.1:1/\n  1 threads and 64 connections\n  123456 requests in 2.00s, 10.00MB read\nRequests/sec:  61728.00\n";
        assert_eq!(parse_wrk(wrk), Some((123_456, 2.0)));
        let h2 = "finished in 3.00s, 4000.00 req/s, 100KB/s\nrequests: 12000 total, 12000 started, 12000 done, 11990 succeeded, 10 failed, 0 errored, 0 timeout\n";
        assert_eq!(parse_h2load(h2), Some((11_990, 3.0)));
        assert_eq!(parse_wrk("nothing"), None);
    }

    #[test]
    fn spread_is_min_median_max() {
        assert_eq!(spread(vec![3.0, 1.0, 2.0]), (1.0, 2.0, 3.0));
    }
}
