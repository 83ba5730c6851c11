//! What Linux's `/proc` tells about processes and sockets: which process
//! holds a listening socket (to find the server serving *now*, after a
//! restart replaced the one the drill started), and whether a process is
//! still running.
//!
//! Every read tolerates races: processes come and go while the drill looks,
//! and a file that vanished or cannot be read is skipped, never an error.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Bounds on one scan, so that a huge process table cannot stall the drill.
const MAX_PROCESSES: usize = 100_000;
const MAX_FDS_PER_PROCESS: usize = 100_000;

/// A process's state letter and parent, start time (clock ticks since boot)
/// and process group, from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub(crate) state: char,
    pub(crate) ppid: u32,
    pub(crate) pgrp: i32,
    pub(crate) start_time: u64,
}

pub(crate) fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// The inodes of TCP sockets listening on `addr`'s port, on its address or on
/// the unspecified address.
fn listening_inodes(addr: SocketAddr) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        inodes.extend(parse_listeners(&listening_section(table), addr));
    }
    if inodes.is_empty() {
        // In case a kernel does not list listeners first: the whole tables.
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let Ok(text) = fs::read_to_string(table) {
                inodes.extend(parse_listeners(&text, addr));
            }
        }
    }
    inodes
}

/// The head of a `/proc/net/tcp` table, up to its first socket that is not
/// listening. The kernel lists listeners first, and the rest (tens of
/// thousands of TIME_WAIT sockets under a drill's load) takes it long to
/// print, so reading stops there.
fn listening_section(table: &str) -> String {
    use std::io::BufRead as _;
    let Ok(file) = fs::File::open(table) else {
        return String::new();
    };
    let mut section = String::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let Ok(line) = line else { break };
        if n > 0 && line.split_whitespace().nth(3) != Some("0A") {
            break;
        }
        section.push_str(&line);
        section.push('\n');
    }
    section
}

fn parse_listeners(table: &str, addr: SocketAddr) -> Vec<u64> {
    const LISTEN: &str = "0A";
    let mut found = Vec::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9))
        else {
            continue;
        };
        if *state != LISTEN {
            continue;
        }
        let Some((ip, port)) = parse_address(local) else {
            continue;
        };
        let same_ip = ip == addr.ip()
            || ip.is_unspecified()
            || matches!((ip, addr.ip()), (IpAddr::V6(v6), IpAddr::V4(v4)) if v6.to_ipv4_mapped() == Some(v4));
        if port == addr.port()
            && same_ip
            && let Ok(inode) = inode.parse()
        {
            found.push(inode);
        }
    }
    found
}

/// Parses `0100007F:1F90` (the kernel prints each 32-bit word of the address
/// in host byte order).
fn parse_address(text: &str) -> Option<(IpAddr, u16)> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| {
        u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16)
            .ok()
            .map(u32::to_ne_bytes)
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some((ip, port))
}

/// The processes holding a socket listening on `addr`, among the members of
/// process group `group` (the spawned server's: never a stranger) and their
/// descendants, or, with no group, among all processes.
pub(crate) fn listening_socket_holders(addr: SocketAddr, group: Option<i32>) -> Vec<u32> {
    let inodes = listening_inodes(addr);
    if inodes.is_empty() {
        return Vec::new();
    }
    let wanted: HashSet<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let candidates = match group {
        Some(group) => group_and_descendants(group),
        None => all_pids(),
    };
    candidates
        .into_iter()
        .filter(|pid| {
            fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.flatten().take(MAX_FDS_PER_PROCESS).any(|fd| {
                    fs::read_link(fd.path())
                        .is_ok_and(|target| target.to_str().is_some_and(|t| wanted.contains(t)))
                })
            })
        })
        .collect()
}

fn all_pids() -> Vec<u32> {
    let Ok(proc_dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc_dir
        .flatten()
        .take(MAX_PROCESSES)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// The running (not zombie) processes in process group `group`, and their
/// descendants in groups of their own: a supervisor such as `lameduck run`
/// starts each instance of its program in a new group, and a restart drill
/// of it must still see the new instance.
fn group_and_descendants(group: i32) -> Vec<u32> {
    let stats: HashMap<u32, Stat> = all_pids()
        .into_iter()
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .filter(|(_, s)| s.state != 'Z')
        .collect();
    let members: HashSet<u32> = stats
        .iter()
        .filter(|(_, s)| s.pgrp == group)
        .map(|(&pid, _)| pid)
        .collect();
    stats
        .iter()
        .filter(|&(pid, s)| {
            members.contains(pid)
                || has_ancestor_via(s.ppid, &members, |p| stats.get(&p).map(|s| s.ppid))
        })
        .map(|(&pid, _)| pid)
        .collect()
}

/// The running (not zombie) processes in process group `group`.
pub(crate) fn group_members(group: i32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&pid| stat(pid).is_some_and(|s| s.pgrp == group && s.state != 'Z'))
        .collect()
}

/// Which of the processes holding the listening socket is "the server": the
/// ones whose ancestors do not hold it too (a supervisor rather than its
/// workers), and of those the newest (the replacement rather than the
/// process it replaces).
pub(crate) fn pick_server(holders: &[u32]) -> Option<u32> {
    let set: HashSet<u32> = holders.iter().copied().collect();
    let stats: Vec<(u32, Stat)> = holders
        .iter()
        .filter_map(|&p| Some((p, stat(p)?)))
        .collect();
    stats
        .iter()
        .filter(|(_, s)| s.state != 'Z' && !has_ancestor_in(s.ppid, &set))
        .max_by_key(|(pid, s)| (s.start_time, *pid))
        .map(|(pid, _)| *pid)
}

/// Whether `pid` is a descendant of `ancestor` (its child, grandchild, …).
pub(crate) fn descends_from(pid: u32, ancestor: u32) -> bool {
    stat(pid).is_some_and(|s| has_ancestor_in(s.ppid, &HashSet::from([ancestor])))
}

fn has_ancestor_in(pid: u32, set: &HashSet<u32>) -> bool {
    has_ancestor_via(pid, set, |p| stat(p).map(|s| s.ppid))
}

/// Whether `pid` or one of its ancestors is in `set`, each parent found by
/// `parent` (from `/proc` afresh, or from stats read once).
fn has_ancestor_via(mut pid: u32, set: &HashSet<u32>, parent: impl Fn(u32) -> Option<u32>) -> bool {
    for _ in 0..64 {
        if pid <= 1 {
            return false;
        }
        if set.contains(&pid) {
            return true;
        }
        match parent(pid) {
            Some(ppid) => pid = ppid,
            None => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_survives_odd_command_names() {
        let line = "4242 (my (odd) server) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.ppid, 1);
        assert_eq!(stat.pgrp, 4242);
        assert_eq!(stat.start_time, 987654);
    }

    #[test]
    fn addresses_parse_in_host_order() {
        let (ip, port) =
            parse_address(&format!("{:08X}:1F90", u32::from_ne_bytes([127, 0, 0, 1]))).unwrap();
        assert_eq!(ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(port, 8080);
        let (ip, _) = parse_address("00000000000000000000000000000000:0050").unwrap();
        assert!(ip.is_unspecified());
    }

    #[test]
    fn only_listeners_on_the_port_match() {
        let local = format!("{:08X}", u32::from_ne_bytes([127, 0, 0, 1]));
        let table = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             0: {local}:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1\n\
             1: {local}:1F90 {local}:C000 01 00000000:00000000 00:00000000 00000000     0        0 222 1\n\
             2: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1\n\
             3: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 444 1\n"
        );
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(parse_listeners(&table, addr), vec![111, 444]);
    }

    #[test]
    fn finds_the_holder_of_a_real_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let holders = listening_socket_holders(addr, None);
        assert_eq!(holders, vec![std::process::id()]);
        assert_eq!(pick_server(&holders), Some(std::process::id()));
        assert!(!descends_from(std::process::id(), std::process::id()));
        let parent = stat(std::process::id()).unwrap().ppid;
        assert!(descends_from(std::process::id(), parent));
        let own_group = stat(std::process::id()).unwrap().pgrp;
        assert_eq!(listening_socket_holders(addr, Some(own_group)), holders);
        assert!(listening_socket_holders(addr, Some(own_group + 1)).is_empty());
        drop(listener);
        assert!(listening_socket_holders(addr, None).is_empty());
    }
}
