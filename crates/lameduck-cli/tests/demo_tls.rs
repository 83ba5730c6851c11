//! The demo over HTTPS, seen by curl and `openssl s_client` (Debian's; the
//! test command installs them): HTTP/1.1 and HTTP/2 by ALPN, and a
//! certificate reload through the control socket that new connections
//! see, and the bad files of a failed reload that change nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(30);

struct Demo {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A certificate for localhost: (PEM certificate, PEM key).
fn certificate() -> (String, String) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    (made.cert.pem(), made.key_pair.serialize_pem())
}

fn start(cert: &(String, String)) -> Demo {
    let dir = std::env::temp_dir().join(format!("lameduck-demo-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    write_pem(&dir, cert);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lameduck"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.join("tls.key"))
        .arg("--control-socket")
        .arg(dir.join("control.sock"))
        .args(["--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the demo");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let port = first
        .trim()
        .strip_prefix("listening on https://127.0.0.1:")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .parse()
        .unwrap();
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    Demo { child, port, dir }
}

fn write_pem(dir: &Path, (cert, key): &(String, String)) {
    std::fs::write(dir.join("tls.crt.new"), cert).unwrap();
    std::fs::write(dir.join("tls.key.new"), key).unwrap();
    std::fs::rename(dir.join("tls.crt.new"), dir.join("tls.crt")).unwrap();
    std::fs::rename(dir.join("tls.key.new"), dir.join("tls.key")).unwrap();
}

/// `curl` for `https://localhost:PORT/`, trusting `ca`: the HTTP version
/// and the body.
fn curl(demo: &Demo, ca: &Path, version: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", version, "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("localhost:{}:127.0.0.1", demo.port)])
        .args(["-w", "\n%{http_version}"])
        .arg(format!("https://localhost:{}/work?ms=1", demo.port))
        .output()
        .expect("curl (the test command installs it)");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The certificate `openssl s_client` is shown, as PEM.
fn presented(demo: &Demo) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{}", demo.port)])
        .args(["-servername", "localhost"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl (the test command installs it)");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = child.wait();
    let begin = out
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate");
    let end = out.find("-----END CERTIFICATE-----").expect("its end") + 25;
    out[begin..end].to_string()
}

fn control(demo: &Demo, command: &str) -> String {
    let mut socket = UnixStream::connect(demo.dir.join("control.sock")).unwrap();
    socket.set_read_timeout(Some(BOUND)).unwrap();
    socket.write_all(format!("{command}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    BufReader::new(socket).read_line(&mut answer).unwrap();
    answer.trim().to_string()
}

fn same_pem(a: &str, b: &str) -> bool {
    let squash = |s: &str| s.split_whitespace().collect::<String>();
    squash(a) == squash(b)
}

#[test]
fn curl_and_openssl_see_the_reloaded_certificate_on_new_connections_and_a_bad_reload_changes_nothing()
 {
    let (old, new) = (certificate(), certificate());
    let demo = start(&old);
    let old_ca = demo.dir.join("old-ca.pem");
    std::fs::write(&old_ca, &old.0).unwrap();
    let new_ca = demo.dir.join("new-ca.pem");
    std::fs::write(&new_ca, &new.0).unwrap();

    assert!(curl(&demo, &old_ca, "--http1.1").ends_with("\n1.1"));
    assert!(curl(&demo, &old_ca, "--http2").ends_with("\n2"));
    assert!(same_pem(&presented(&demo), &old.0));

    // A key that is not the certificate's: refused, the old one stays.
    write_pem(&demo.dir, &(new.0.clone(), old.1.clone()));
    let answer = control(&demo, "reload");
    assert!(answer.starts_with("error reload failed: http"), "{answer}");
    assert!(same_pem(&presented(&demo), &old.0));

    write_pem(&demo.dir, &new);
    assert_eq!(control(&demo, "reload"), "ok reloaded http");
    assert!(
        same_pem(&presented(&demo), &new.0),
        "new connections see the new certificate"
    );
    assert!(curl(&demo, &new_ca, "--http2").ends_with("\n2"));
}
