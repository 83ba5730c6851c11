//! The connections of a listening TCP socket, as the kernel lists them:
//! one `NETLINK_SOCK_DIAG` dump (`man 7 sock_diag`) of the TCP sockets
//! whose local port is the listener's, filtered in the kernel, with each
//! one's cookie and, for those not in `TIME_WAIT`, the bytes it received
//! (`tcpi_bytes_received` of `INET_DIAG_INFO`, Linux ≥ 4.1).
//!
//! The messages are the rust-netlink crates' (`netlink-packet-sock-diag`);
//! only the port filter (`INET_DIAG_REQ_BYTECODE`, which that crate does
//! not model) and `tcpi_bytes_received` (read at its fixed offset: the
//! crate's typed `tcp_info` needs the newest kernel's full struct) are
//! written here.
//!
//! The same dump of the `LISTEN` sockets gives a listener's accept queue:
//! the connections the kernel completed that nobody accepted yet (`ss
//! -ltn`'s `Recv-Q`).

use std::io;
use std::net::{IpAddr, SocketAddr};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::inet::nlas::Nla;
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags,
};
use netlink_packet_sock_diag::{AF_INET, AF_INET6, IPPROTO_TCP, SockDiagMessage};
use netlink_sys::{Socket, SocketAddr as NetlinkAddr, protocols::NETLINK_SOCK_DIAG};

/// One connection of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conn {
    /// The kernel's cookie for the socket: unique while the system runs,
    /// kept into `TIME_WAIT`.
    pub cookie: u64,
    /// Bytes received so far; `None` in `TIME_WAIT` (no `tcp_info`).
    pub bytes_received: Option<u64>,
}

/// `INET_DIAG_REQ_BYTECODE` (`linux/inet_diag.h`).
const INET_DIAG_REQ_BYTECODE: u16 = 1;
/// `INET_DIAG_BC_S_GE` and `INET_DIAG_BC_S_LE`: local port ≥, ≤.
const BC_S_GE: u8 = 2;
const BC_S_LE: u8 = 3;
/// Where `tcpi_bytes_received` sits in `struct tcp_info` (`linux/tcp.h`):
/// after 8 one-byte fields, 24 `u32`s and 3 `u64`s.
const BYTES_RECEIVED_AT: usize = 8 + 24 * 4 + 3 * 8;

/// The states of a connection a listener accepted: every one but
/// `SYN_SENT` (outgoing), `LISTEN` and `CLOSE`. `TIME_WAIT` keeps a
/// connection the server closed visible for a minute after, so one opened
/// and closed between two dumps is still seen.
fn accepted_states() -> StateFlags {
    StateFlags::ESTABLISHED
        | StateFlags::SYN_RECV
        | StateFlags::FIN_WAIT1
        | StateFlags::FIN_WAIT2
        | StateFlags::TIME_WAIT
        | StateFlags::CLOSE_WAIT
        | StateFlags::LAST_ACK
        | StateFlags::CLOSING
}

/// A netlink socket for sock_diag dumps.
#[derive(Debug)]
pub struct Dumper {
    socket: Socket,
    buf: Vec<u8>,
}

impl Dumper {
    /// Opens the socket.
    ///
    /// # Errors
    ///
    /// When the kernel has no sock_diag (not Linux, or built without it) or
    /// refuses the socket.
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
        socket.bind_auto()?;
        socket.connect(&NetlinkAddr::new(0, 0))?;
        // Each part of a dump is made as the last one is read: a read never
        // waits, and a kernel that stalls fails the dump instead of the
        // runtime.
        socket.set_non_blocking(true)?;
        Ok(Self {
            socket,
            buf: vec![0; 64 * 1024],
        })
    }

    /// The connections whose local address is `listener`'s (any local
    /// address if it is bound to the unspecified one).
    ///
    /// # Errors
    ///
    /// When the dump cannot be sent or read, or the kernel answers with an
    /// error.
    pub fn connections(&mut self, listener: SocketAddr) -> io::Result<Vec<Conn>> {
        let mut out = Vec::new();
        let states = accepted_states();
        self.dump(listener, states, ExtensionFlags::INFO, |r| {
            let id = &r.header.socket_id;
            if id.source_port == listener.port() && is_local(id.source_address, listener.ip()) {
                out.push(Conn {
                    cookie: u64::from_ne_bytes(id.cookie),
                    bytes_received: r.nlas.iter().find_map(|nla| match nla {
                        Nla::TcpInfo(info) => bytes_received(info),
                        _ => None,
                    }),
                });
            }
        })?;
        Ok(out)
    }

    /// The accept queue of the listening socket on `listener` whose inode
    /// is `inode`: the connections completed and not accepted yet; `None`
    /// when no such socket listens (any more).
    ///
    /// # Errors
    ///
    /// As [`connections`](Self::connections).
    pub fn accept_queue(&mut self, listener: SocketAddr, inode: u64) -> io::Result<Option<u32>> {
        let mut queue = None;
        self.dump(listener, StateFlags::LISTEN, ExtensionFlags::empty(), |r| {
            if u64::from(r.header.inode) == inode {
                queue = Some(r.header.recv_queue);
            }
        })?;
        Ok(queue)
    }

    /// One dump of the TCP sockets in `states` on `listener`'s port, each
    /// answer handed to `each`.
    fn dump(
        &mut self,
        listener: SocketAddr,
        states: StateFlags,
        extensions: ExtensionFlags,
        mut each: impl FnMut(&InetResponse),
    ) -> io::Result<()> {
        self.socket
            .send(&request(listener, states, extensions), 0)?;
        loop {
            let n = self.socket.recv(&mut &mut self.buf[..], 0)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "sock_diag: the dump ended without NLMSG_DONE",
                ));
            }
            if parse(&self.buf[..n], &mut each)? {
                return Ok(());
            }
        }
    }
}

/// The dump request for `listener`'s port, with the port filter appended.
fn request(listener: SocketAddr, states: StateFlags, extensions: ExtensionFlags) -> Vec<u8> {
    let (family, socket_id) = match listener {
        SocketAddr::V4(_) => (AF_INET, SocketId::new_v4()),
        SocketAddr::V6(_) => (AF_INET6, SocketId::new_v6()),
    };
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut msg = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions,
            states,
            socket_id,
        })
        .into(),
    );
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    let filter = port_filter(listener.port());
    // struct nlattr: length (header included), type; then the bytecode,
    // already a multiple of 4 bytes long.
    let attr_len = 4 + filter.len();
    buf.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    buf.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
    buf.extend_from_slice(&filter);
    let total = buf.len() as u32;
    buf[..4].copy_from_slice(&total.to_ne_bytes());
    buf
}

/// Bytecode that keeps the sockets whose local port is `port`: `S_GE port`
/// then `S_LE port`. Each op is `struct inet_diag_bc_op { u8 code; u8
/// yes; u16 no; }` followed by one carrying the port in `no`; `yes` goes
/// to the next op, `no` jumps 4 bytes past the end, which rejects.
fn port_filter(port: u16) -> Vec<u8> {
    let mut bc = Vec::with_capacity(16);
    let total: u16 = 16;
    for (i, code) in [BC_S_GE, BC_S_LE].into_iter().enumerate() {
        let left = total - 8 * i as u16;
        bc.push(code);
        bc.push(8);
        bc.extend_from_slice(&(left + 4).to_ne_bytes());
        bc.extend_from_slice(&[0, 0]);
        bc.extend_from_slice(&port.to_ne_bytes());
    }
    bc
}

/// Hands each socket of one read of the dump to `each`; `true` once the
/// dump is done.
fn parse(mut bytes: &[u8], each: &mut impl FnMut(&InetResponse)) -> io::Result<bool> {
    let bad = |e: netlink_packet_core::DecodeError| {
        io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag: {e}"))
    };
    while !bytes.is_empty() {
        let msg = NetlinkMessage::<SockDiagMessage>::deserialize(bytes).map_err(bad)?;
        let len = msg.header.length as usize;
        match msg.payload {
            NetlinkPayload::Done(_) => return Ok(true),
            NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
            NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => each(&r),
            _ => {}
        }
        if len == 0 || len > bytes.len() {
            break;
        }
        // Messages are 4-byte aligned.
        bytes = &bytes[len.next_multiple_of(4).min(bytes.len())..];
    }
    Ok(false)
}

/// Whether a connection's local address belongs to a listener bound to
/// `bound`: any, for the unspecified address (an IPv6 one takes IPv4
/// connections too, as `::ffff:a.b.c.d`).
fn is_local(local: IpAddr, bound: IpAddr) -> bool {
    bound.is_unspecified() || local.to_canonical() == bound.to_canonical()
}

/// `tcpi_bytes_received`, if the kernel's `tcp_info` has it (≥ 4.1).
fn bytes_received(info: &[u8]) -> Option<u64> {
    let field = info.get(BYTES_RECEIVED_AT..BYTES_RECEIVED_AT + 8)?;
    Some(u64::from_ne_bytes(field.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_filter_jumps_past_the_end_to_reject() {
        let bc = port_filter(8080);
        assert_eq!(bc.len(), 16);
        // S_GE: yes to the next op, no 4 past the end (16 + 4).
        assert_eq!((bc[0], bc[1]), (BC_S_GE, 8));
        assert_eq!(u16::from_ne_bytes([bc[2], bc[3]]), 20);
        assert_eq!(u16::from_ne_bytes([bc[6], bc[7]]), 8080);
        // S_LE: 8 bytes left, no = 12.
        assert_eq!(bc[8], BC_S_LE);
        assert_eq!(u16::from_ne_bytes([bc[10], bc[11]]), 12);
        assert_eq!(u16::from_ne_bytes([bc[14], bc[15]]), 8080);
    }

    #[test]
    fn the_request_carries_the_filter_and_its_length() {
        let req = request(
            "127.0.0.1:8080".parse().unwrap(),
            accepted_states(),
            ExtensionFlags::INFO,
        );
        // nlmsghdr (16) + inet_diag_req_v2 (56) + nlattr (4) + bytecode (16)
        assert_eq!(req.len(), 16 + 56 + 4 + 16);
        assert_eq!(u32::from_ne_bytes(req[..4].try_into().unwrap()), 92);
        assert_eq!(u16::from_ne_bytes([req[72], req[73]]), 20);
        assert_eq!(
            u16::from_ne_bytes([req[74], req[75]]),
            INET_DIAG_REQ_BYTECODE
        );
    }

    #[test]
    fn bytes_received_is_read_at_its_offset_and_absent_from_an_old_tcp_info() {
        let mut info = vec![0u8; 232];
        info[BYTES_RECEIVED_AT..BYTES_RECEIVED_AT + 8].copy_from_slice(&4242u64.to_ne_bytes());
        assert_eq!(bytes_received(&info), Some(4242));
        // A kernel before 4.1 stops at tcpi_total_retrans (104 bytes).
        assert_eq!(bytes_received(&info[..104]), None);
    }

    #[test]
    fn a_wildcard_listener_owns_every_local_address() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert!(is_local(v4, "0.0.0.0".parse().unwrap()));
        assert!(is_local(mapped, "::".parse().unwrap()));
        assert!(is_local(mapped, v4));
        assert!(!is_local(v4, "10.0.0.2".parse().unwrap()));
    }

    #[test]
    fn a_dump_of_this_process_sees_its_own_connection() {
        sees_its_own_connection("127.0.0.1:0");
    }

    #[test]
    fn a_dump_sees_ipv6_connections_and_ipv4_ones_on_a_dual_stack_socket() {
        if std::net::TcpListener::bind("[::1]:0").is_err() {
            // No IPv6 here.
            return;
        }
        sees_its_own_connection("[::1]:0");
        // [::] takes IPv4 clients too, as ::ffff:127.0.0.1.
        let listener = std::net::TcpListener::bind("[::]:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let Ok(mut dumper) = Dumper::open() else {
            return;
        };
        let conns = dumper.connections(listener.local_addr().unwrap()).unwrap();
        assert_eq!(conns.len(), 1, "{conns:?}");
    }

    #[test]
    fn the_accept_queue_counts_connections_not_accepted_and_ends_with_the_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let inode = nix::sys::stat::fstat(&listener).unwrap().st_ino;
        let Ok(mut dumper) = Dumper::open() else {
            return;
        };
        assert_eq!(dumper.accept_queue(addr, inode).unwrap(), Some(0));
        let _clients: Vec<_> = (0..2)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        // The server's side of a handshake completes as the kernel takes
        // the client's last ACK: bounded retries.
        let mut queue = None;
        for _ in 0..1000 {
            queue = dumper.accept_queue(addr, inode).unwrap();
            if queue == Some(2) {
                break;
            }
            std::thread::yield_now();
        }
        assert_eq!(queue, Some(2));
        drop(listener);
        assert_eq!(dumper.accept_queue(addr, inode).unwrap(), None);
    }

    fn sees_its_own_connection(bind: &str) {
        let listener = std::net::TcpListener::bind(bind).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let mut dumper = match Dumper::open() {
            Ok(d) => d,
            // No sock_diag here (a sandbox): nothing to test.
            Err(_) => return,
        };
        let before = dumper.connections(addr).unwrap();
        assert_eq!(before.len(), 1, "{before:?}");
        std::io::Write::write_all(&mut client, b"hello").unwrap();
        // The bytes are counted when they are received: bounded retries.
        let mut after = before.clone();
        for _ in 0..1000 {
            after = dumper.connections(addr).unwrap();
            if after[0].bytes_received != before[0].bytes_received {
                break;
            }
            std::thread::yield_now();
        }
        assert_eq!(after[0].cookie, before[0].cookie);
        assert_eq!(
            after[0]
                .bytes_received
                .map(|b| b - before[0].bytes_received.unwrap()),
            Some(5)
        );
    }
}
