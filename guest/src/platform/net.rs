//! The guest's network service: smoltcp TCP over virtio-net, one runtime [`Session`] per
//! connection, all polled from one loop (no interrupts, no threads).
//!
//! Address: 10.0.2.15/24, gateway 10.0.2.2 (QEMU user networking, whose `hostfwd` carries the
//! host's 127.0.0.1 port to the guest's [`PORT`]); with a TAP device the operator's network
//! must route that address. Up to [`MAX_CONNECTIONS`] clients are served at once; a stalled or
//! hostile one holds only its own socket and session (the session's timeouts close it).

use alloc::vec;
use alloc::vec::Vec;

use pupa_guest::runtime::{Clock, Entropy, Session, Tee, Worker};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};

use super::virtio_net::VirtioNet;

/// The service port.
pub const PORT: u16 = 7000;
/// Simultaneous connections.
pub const MAX_CONNECTIONS: usize = 8;
const GUEST_IP: [u8; 4] = [10, 0, 2, 15];
const PREFIX: u8 = 24;
const GATEWAY: [u8; 4] = [10, 0, 2, 2];
const SOCKET_BUFFER: usize = 256 * 1024;

struct Conn {
    handle: SocketHandle,
    session: Option<Session>,
    eof_seen: bool,
}

/// Serve forever. `now_us` is the monotonic clock in microseconds; `seed` seeds smoltcp's
/// initial sequence numbers and ports.
pub fn serve<T: Tee, E: Entropy, C: Clock>(
    mut nic: VirtioNet,
    worker: &mut Worker<T, E, C>,
    now_us: impl Fn() -> u64,
    seed: u64,
) -> ! {
    let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(nic.mac())));
    config.random_seed = seed;
    let now = || Instant::from_micros(now_us() as i64);
    let mut iface = Interface::new(config, &mut nic, now());
    iface.update_ip_addrs(|a| {
        let [x, y, z, w] = GUEST_IP;
        let _ = a.push(IpCidr::new(IpAddress::v4(x, y, z, w), PREFIX));
    });
    let [a, b, c, d] = GATEWAY;
    let _ = iface
        .routes_mut()
        .add_default_ipv4_route(Ipv4Address::new(a, b, c, d));

    let mut sockets = SocketSet::new(Vec::new());
    let mut conns: Vec<Conn> = (0..MAX_CONNECTIONS)
        .map(|_| {
            let rx = tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]);
            let tx = tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]);
            let mut s = tcp::Socket::new(rx, tx);
            s.set_nagle_enabled(false);
            let _ = s.listen(PORT);
            Conn {
                handle: sockets.add(s),
                session: None,
                eof_seen: false,
            }
        })
        .collect();
    let mut reported_fault = false;

    loop {
        iface.poll(now(), &mut nic, &mut sockets);
        for c in conns.iter_mut() {
            let s = sockets.get_mut::<tcp::Socket>(c.handle);
            if c.session.is_none() && s.is_active() && s.state() == tcp::State::Established {
                c.session = Some(Session::new(worker));
                c.eof_seen = false;
            }
            if let Some(sess) = c.session.as_mut() {
                while s.can_recv() && sess.wants_read() {
                    let took = s.recv(|buf| {
                        let n = sess.receive(worker, buf);
                        (n, n)
                    });
                    if !matches!(took, Ok(n) if n > 0) {
                        break;
                    }
                }
                if !s.may_recv() && !c.eof_seen && s.state() != tcp::State::Listen {
                    c.eof_seen = true;
                    sess.peer_closed(worker);
                }
                sess.poll(worker);
                while s.can_send() && !sess.pending().is_empty() {
                    match s.send_slice(sess.pending()) {
                        Ok(n) if n > 0 => sess.advance(n),
                        _ => break,
                    }
                }
                if sess.pending().is_empty() && sess.should_close() {
                    s.close();
                }
            }
            if !s.is_open() {
                // the connection is over (closed by either side, reset or timed out)
                c.session = None;
                let _ = s.listen(PORT);
            }
        }
        if let (Some(f), false) = (nic.fault, reported_fault) {
            crate::println!("pupa: network device fault: {f:?}; no further traffic");
            reported_fault = true;
        }
    }
}
