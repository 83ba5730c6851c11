//! The private channel between an upgrading parent and its child: a
//! stream socket pair. The parent writes one handover frame at once; the
//! child answers one line when it is ready, or failed; the parent then
//! commits to it, or not.
//!
//! ```text
//! parent → child:  "LDH1" | kind length: u32 BE | kind | data length: u64 BE | data
//! child → parent:  "ready <pid>\n"  or  "failed <why>\n"
//! parent → child:  "commit\n"  or  "abort\n"
//! child → parent:  "running\n" once it has taken over (after "commit")
//! child → parent:  "draining\n" if it begins shutting down before "main"
//! parent → child:  "main\n" once the handover is final (systemd was told MAINPID=<child>),
//!                   or "abort\n" if the parent takes the service back first
//! ```
//!
//! The commit is the one point of no return. Until the child has read
//! `commit`, it changes nothing that the parent owns: it does not accept on
//! the shared sockets, does not write the PID file, does not take the
//! control socket's path. A child that reads `abort`, or finds the channel
//! closed while its parent lives, stands down. The child stays silent
//! towards systemd until the `main` line, or until the channel closes (the
//! parent is gone).
//!
//! Every length is bounded, so a confused peer cannot make either side
//! allocate without limit.

use std::io::{self, Read};

const MAGIC: &[u8; 4] = b"LDH1";
/// The longest handover kind.
const MAX_KIND: u32 = 256;
/// The largest handover: it passes through a socket buffer while both
/// processes run, and is meant for small state.
pub(crate) const MAX_HANDOVER: u64 = 64 << 20;
/// The longest line the child may send.
pub(crate) const MAX_LINE: usize = 1024;

/// Encodes a handover (an empty kind and no data when there is none).
pub(crate) fn encode(kind: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 4 + kind.len() + 8 + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(kind.len() as u32).to_be_bytes());
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(&(data.len() as u64).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// Reads one handover frame: `(kind, data)`.
pub(crate) fn decode(r: &mut impl Read) -> io::Result<(String, Vec<u8>)> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(bad("the handover does not start with LDH1"));
    }
    let mut len4 = [0u8; 4];
    r.read_exact(&mut len4)?;
    let kind_len = u32::from_be_bytes(len4);
    if kind_len > MAX_KIND {
        return Err(bad("the handover kind is too long"));
    }
    let mut kind = vec![0u8; kind_len as usize];
    r.read_exact(&mut kind)?;
    let kind = String::from_utf8(kind).map_err(|_| bad("the handover kind is not UTF-8"))?;
    let mut len8 = [0u8; 8];
    r.read_exact(&mut len8)?;
    let len = u64::from_be_bytes(len8);
    if len > MAX_HANDOVER {
        return Err(bad("the handover is larger than 64 MiB"));
    }
    let mut data = vec![0u8; len as usize];
    r.read_exact(&mut data)?;
    Ok((kind, data))
}

/// What the child said.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Report {
    Ready(u32),
    Failed(String),
}

/// The parent's verdict on a child that reported ready.
pub(crate) const COMMIT: &[u8] = b"commit\n";
/// The parent's refusal of a child that reported ready (too late, or the
/// parent began shutting down meanwhile); after the commit, the parent
/// taking the service back before the handover was final.
pub(crate) const ABORT: &[u8] = b"abort\n";
/// The child's word that it has taken over, after `commit`.
pub(crate) const RUNNING: &[u8] = b"running\n";
/// The child's word that it began shutting down (it entered Draining)
/// after `running`, before `main`: it will not serve on, so the parent
/// takes the service back rather than hand it over.
pub(crate) const DRAINING: &[u8] = b"draining\n";
/// The parent's word that the handover is final: the child is systemd's
/// main process now, and the parent no longer takes the service back.
pub(crate) const MAIN: &[u8] = b"main\n";

/// Parses the child's line (without its newline).
pub(crate) fn parse_report(line: &[u8]) -> Option<Report> {
    let line = std::str::from_utf8(line).ok()?;
    if let Some(pid) = line.strip_prefix("ready ") {
        return pid.trim().parse().ok().map(Report::Ready);
    }
    line.strip_prefix("failed ")
        .map(|why| Report::Failed(why.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handover_round_trips() {
        let frame = encode("sessions/v1", b"abc");
        assert_eq!(
            decode(&mut &frame[..]).unwrap(),
            ("sessions/v1".to_string(), b"abc".to_vec())
        );
        let none = encode("", b"");
        assert_eq!(decode(&mut &none[..]).unwrap(), (String::new(), Vec::new()));
    }

    #[test]
    fn garbage_is_refused_without_allocating_its_claimed_size() {
        assert!(decode(&mut &b"HTTP/1.1 200"[..]).is_err());
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&0u32.to_be_bytes());
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(decode(&mut &huge[..]).is_err());
        assert!(decode(&mut &b"LDH1"[..]).is_err(), "truncated");
    }

    #[test]
    fn reports_parse() {
        assert_eq!(parse_report(b"ready 42"), Some(Report::Ready(42)));
        assert_eq!(
            parse_report(b"failed no db"),
            Some(Report::Failed("no db".into()))
        );
        assert_eq!(parse_report(b"ready soon"), None);
        assert_eq!(parse_report(b"\xff"), None);
    }
}
