//! Loopback plumbing: free ports and a bare readiness check.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest one readiness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// `count` distinct ports on 127.0.0.1 that were free a moment ago.
///
/// The servers are told their ports on the command line (a restarted
/// instance must come back on the same one), so the harness picks them by
/// binding port 0; all the listeners are held until every port is known, so
/// the ports differ.
///
/// # Errors
///
/// When no ephemeral port can be bound.
pub fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<Vec<_>, _>>()
        .context("binding an ephemeral port on 127.0.0.1")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// `count` distinct port numbers that were free a moment ago on every one of
/// `hosts` (loopback addresses), so that instances on different addresses
/// can share them.
///
/// # Errors
///
/// When no such ports are found in 100 tries.
pub fn free_ports_on(hosts: &[Ipv4Addr], count: usize) -> anyhow::Result<Vec<u16>> {
    let (first, others) = hosts.split_first().context("no host")?;
    for _ in 0..100 {
        let held = (0..count)
            .map(|_| TcpListener::bind((*first, 0)))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("binding an ephemeral port on {first}"))?;
        let ports = held
            .iter()
            .map(|l| Ok(l.local_addr()?.port()))
            .collect::<anyhow::Result<Vec<u16>>>()?;
        let elsewhere: Result<Vec<_>, _> = others
            .iter()
            .flat_map(|host| {
                ports
                    .iter()
                    .map(move |port| TcpListener::bind((*host, *port)))
            })
            .collect();
        if elsewhere.is_ok() {
            return Ok(ports);
        }
    }
    anyhow::bail!("found no {count} ports free on all of {hosts:?} in 100 tries")
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// The status code of `GET path` on a fresh connection, as a load balancer's
/// health check sends it; `None` when there was no HTTP answer in time.
pub async fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    tokio::time::timeout(CHECK_TIMEOUT, async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        // The status line fits in the first read on loopback; reading to the
        // end would only wait for the close.
        let mut buf = [0u8; 64];
        let mut len = 0;
        while len < 12 {
            let n = stream.read(&mut buf[len..]).await.ok()?;
            if n == 0 {
                return None;
            }
            len += n;
        }
        parse_status(&buf[..len])
    })
    .await
    .ok()
    .flatten()
}

fn parse_status(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head.get(..12)?).ok()?;
    let rest = text.strip_prefix("HTTP/1.")?;
    rest.get(2..5)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_parses() {
        assert_eq!(
            parse_status(b"HTTP/1.1 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status(b"HTTP/1.0 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status(b"HTTP/1.1"), None);
    }

    #[test]
    fn ports_free_on_several_hosts_bind_on_each() {
        let hosts = [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)];
        let ports = free_ports_on(&hosts, 2).unwrap();
        assert_ne!(ports[0], ports[1]);
        for host in hosts {
            for port in &ports {
                TcpListener::bind((host, *port)).unwrap();
            }
        }
    }

    #[test]
    fn free_ports_are_distinct() {
        let mut ports = free_ports(5).unwrap();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 5);
    }
}
