//! The guest's network service: smoltcp TCP over virtio-net, one runtime [`Session`] per
//! connection, all polled from one loop on the boot CPU. Long jobs go to the APs
//! (`platform::smp`) and come back to their sessions here; with nothing else to do the loop
//! helps their kernels in short slices instead of halting.
//!
//! Address: 10.0.2.15/24, gateway 10.0.2.2 (QEMU user networking, whose `hostfwd` carries the
//! host's 127.0.0.1 port to the guest's [`PORT`]); with a TAP device the operator's network
//! must route that address.
//!
//! Connection lifecycle (every step bounded, whatever the client does):
//! - a fixed pool of listening sockets, sized from the guest's RAM ([`Limits`]): `sessions`
//!   serving slots plus [`BUSY_SOCKETS`] more that only answer `Busy`;
//! - every connection gets a session in whatever state it is first seen (a client whose data
//!   and FIN arrive in one poll is seen in CloseWait and is still answered, then closed);
//! - when every serving slot is taken, the longest-idle connection (idle ≥ [`EVICT_IDLE_NS`])
//!   is closed to make room; if none is idle the new connection is answered `Busy`;
//! - the session's absolute deadlines close stalled clients; after the session ends, the
//!   socket gets [`LINGER_NS`] to finish its close handshake and is then aborted; smoltcp's
//!   own timeout resets a peer that stops acknowledging.

use alloc::vec;
use alloc::vec::Vec;

use pupa_runtime::{Clock, Compute, Entropy, Session, Tee, Worker};
use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};

use pupa_guest::clock::Tsc;

use super::smp;
use super::virtio_net::VirtioNet;
use crate::arch::cpu::rdtsc;

/// The service port.
pub const PORT: u16 = 7000;
/// Sockets beyond the serving slots, which accept a connection only to answer `Busy`.
pub const BUSY_SOCKETS: usize = 16;
/// An idle connection may be closed to free its slot once idle this long.
pub const EVICT_IDLE_NS: u64 = 1_000_000_000;
/// After its session ended, a socket has this long to finish closing before it is aborted.
pub const LINGER_NS: u64 = 5_000_000_000;
/// A session idle this long does not keep the boot CPU from helping the APs' jobs.
const QUIET_NS: u64 = 1_000_000_000;
/// The budget's high-water mark is reported on the console each time it grows this much.
const HIGH_WATER_STEP: usize = 16 << 20;
/// smoltcp resets a connection whose peer acknowledges nothing for this long.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
const GUEST_IP: [u8; 4] = [10, 0, 2, 15];
const PREFIX: u8 = 24;
const GATEWAY: [u8; 4] = [10, 0, 2, 2];
const RX_BUFFER: usize = 128 * 1024;
const TX_BUFFER: usize = 64 * 1024;
/// Heap kept out of the sessions' budget: code's own allocations (smoltcp, evidence frames,
/// client table) and the allocator's fragmentation.
const RESERVED_HEAP: u64 = 64 << 20;

/// How much the service takes on, from the heap it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub sessions: usize,
    /// Bytes of the runtime's memory budget (partial frames, replies, job memory).
    pub memory_budget: usize,
}

impl Limits {
    /// Limits for a heap of `heap_bytes`: the socket buffers come off the top, a fixed
    /// reserve stays out, and the sessions' budget is three quarters of the rest (the last
    /// quarter absorbs fragmentation and the transient copies of a buffer being grown).
    pub fn for_heap(heap_bytes: u64) -> Limits {
        let sessions = (heap_bytes / (8 << 20)).clamp(4, 128) as usize;
        let sockets = (sessions + BUSY_SOCKETS) as u64 * (RX_BUFFER + TX_BUFFER) as u64;
        let rest = heap_bytes.saturating_sub(sockets + RESERVED_HEAP);
        Limits {
            sessions,
            memory_budget: (rest / 4 * 3) as usize,
        }
    }
}

struct Conn {
    handle: SocketHandle,
    session: Option<Session>,
    /// Counts against the serving slots (false: a `Busy` answer).
    serving: bool,
    eof_seen: bool,
    /// When the session ended and the socket was asked to close.
    closed_at: Option<u64>,
}

/// Serve forever. `now_us` is the monotonic clock in microseconds; `seed` seeds smoltcp's
/// initial sequence numbers and ports.
pub fn serve<T: Tee, E: Entropy, C: Clock, K: Compute>(
    mut nic: VirtioNet,
    worker: &mut Worker<T, E, C, K>,
    limits: Limits,
    tsc: Tsc,
    seed: u64,
) -> ! {
    let now_us = || tsc.ticks_to_us(rdtsc());
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
    let mut conns: Vec<Conn> = (0..limits.sessions + BUSY_SOCKETS)
        .map(|_| {
            let rx = tcp::SocketBuffer::new(vec![0; RX_BUFFER]);
            let tx = tcp::SocketBuffer::new(vec![0; TX_BUFFER]);
            let mut s = tcp::Socket::new(rx, tx);
            s.set_nagle_enabled(false);
            s.set_timeout(Some(ACK_TIMEOUT));
            let _ = s.listen(PORT);
            Conn {
                handle: sockets.add(s),
                session: None,
                serving: false,
                eof_seen: false,
                closed_at: None,
            }
        })
        .collect();
    let mut reported_fault = false;
    let mut reported_high_water = 0;
    let mut most_serving = 0;

    loop {
        let changed = iface.poll(now(), &mut nic, &mut sockets) == PollResult::SocketStateChanged;
        let now_ns = worker.now_ns();
        let serving = admit(&mut conns, &mut sockets, worker, limits.sessions, now_ns);
        if serving > most_serving {
            most_serving = serving;
            if serving.is_multiple_of(8) || serving == limits.sessions {
                // For operators and the attack tests: how many connections were served at once.
                crate::println!(
                    "pupa: connections high-water {serving} of {} slots",
                    limits.sessions
                );
            }
        }
        let mut moved = false;
        for c in conns.iter_mut() {
            moved |= drive(c, sockets.get_mut::<tcp::Socket>(c.handle), worker, now_ns);
        }
        moved |= exchange_jobs(&mut conns, worker);
        let hw = worker.budget().high_water();
        if hw >= reported_high_water + HIGH_WATER_STEP {
            // For operators and the attack tests: how close the budget came to its limit.
            crate::println!(
                "pupa: memory budget high-water {} MiB of {} MiB",
                hw >> 20,
                worker.budget().limit() >> 20
            );
            reported_high_water = hw;
        }
        if let (Some(f), false) = (nic.fault, reported_fault) {
            crate::println!("pupa: network device fault: {f:?}; no further traffic");
            reported_fault = true;
        }
        // Idle means idle (platform/idle.rs): after a round that moved nothing, halt until the
        // NIC interrupts or the next deadline (smoltcp's timers, the sessions'), at most
        // IDLE_MAX_US from now.
        if !(changed || moved) && !(network_quiet(&conns, now_ns) && smp::help(tsc)) {
            /// The longest idle halt (a safety net: every deadline above is also exact).
            const IDLE_MAX_US: u64 = 100_000;
            let t = now();
            let t_us = t.total_micros() as u64;
            let wait_us = [
                iface.poll_delay(t, &sockets).map(|d| d.total_micros()),
                next_deadline_ns(&conns, worker).map(|ns| (ns / 1000).saturating_sub(t_us)),
            ]
            .into_iter()
            .flatten()
            .fold(IDLE_MAX_US, u64::min);
            super::idle::halt_until(Some(t_us + wait_us));
        }
    }
}

/// Whether the boot CPU may lend itself to the jobs' kernels: every session is waiting for
/// its job or has been idle for [`QUIET_NS`]. A helping slice ends only between two kernel
/// tasks (tens of ms for a large attention tile under emulation), which is too coarse for a
/// client in the middle of a conversation; so while one is active the boot CPU stays on the
/// network and leaves the jobs to the APs.
fn network_quiet(conns: &[Conn], now_ns: u64) -> bool {
    conns.iter().all(|c| match &c.session {
        None => true,
        Some(s) => {
            s.has_job()
                || s.idle_since_ns()
                    .is_some_and(|t| now_ns.saturating_sub(t) >= QUIET_NS)
        }
    })
}

/// Hands the sessions' admitted jobs to the APs (while they have room) and gives the
/// finished ones back to their sessions. Returns whether a job moved.
fn exchange_jobs<T: Tee, E: Entropy, C: Clock, K: Compute>(
    conns: &mut [Conn],
    worker: &mut Worker<T, E, C, K>,
) -> bool {
    let mut moved = false;
    for (i, c) in conns.iter_mut().enumerate() {
        if !smp::can_submit() {
            break;
        }
        let Some(sess) = c.session.as_mut() else {
            continue;
        };
        if let Some(job) = sess.take_job() {
            if let Some(job) = smp::submit(i, job) {
                // Not reached (room was checked); answered `Internal`, never lost silently.
                sess.complete_job(worker, job);
            }
            moved = true;
        }
    }
    while let Some((i, job)) = smp::take_done() {
        // A session with a job is never closed (Session::should_close), so it is still there.
        if let Some(sess) = conns.get_mut(i).and_then(|c| c.session.as_mut()) {
            sess.complete_job(worker, job);
        }
        moved = true;
    }
    moved
}

fn is_new_connection(s: &tcp::Socket) -> bool {
    !matches!(s.state(), State::Listen | State::Closed | State::TimeWait)
}

/// Gives every newly seen connection a session: a serving slot (closing the longest-idle
/// connection if that is what frees one), or a `Busy` answer. Returns the connections now
/// holding a serving slot.
fn admit<T: Tee, E: Entropy, C: Clock, K: Compute>(
    conns: &mut [Conn],
    sockets: &mut SocketSet,
    worker: &Worker<T, E, C, K>,
    slots: usize,
    now_ns: u64,
) -> usize {
    let mut serving = conns.iter().filter(|c| c.serving).count();
    for i in 0..conns.len() {
        let c = &conns[i];
        if c.session.is_some()
            || c.closed_at.is_some()
            || !is_new_connection(sockets.get::<tcp::Socket>(c.handle))
        {
            continue;
        }
        // An evicted connection hands its slot over: the count stays the same.
        let evicted = serving >= slots && evict_idle(conns, worker, now_ns);
        let free = serving < slots || evicted;
        let c = &mut conns[i];
        c.eof_seen = false;
        c.closed_at = None;
        if free {
            c.session = Some(Session::new(worker));
            c.serving = true;
            serving += usize::from(!evicted);
        } else {
            c.session = Some(Session::refuse(
                worker,
                "no free worker slot: every connection is in use; retry",
            ));
            c.serving = false;
        }
    }
    serving
}

/// Closes the serving connection that has been idle longest, if one has been idle for at
/// least [`EVICT_IDLE_NS`]. Its slot counts as free at once: it has nothing in flight.
fn evict_idle<T: Tee, E: Entropy, C: Clock, K: Compute>(
    conns: &mut [Conn],
    worker: &Worker<T, E, C, K>,
    now_ns: u64,
) -> bool {
    let victim = conns
        .iter_mut()
        .filter(|c| c.serving)
        .filter_map(|c| Some((c.session.as_ref()?.idle_since_ns()?, c)))
        .filter(|(t, _)| now_ns.saturating_sub(*t) >= EVICT_IDLE_NS)
        .min_by_key(|(t, _)| *t);
    match victim {
        Some((_, c)) => {
            if let Some(s) = c.session.as_mut() {
                s.close_idle(worker);
            }
            c.serving = false;
            true
        }
        None => false,
    }
}

/// One connection's step: input, EOF, deadlines, output, close. Returns whether any byte
/// or state moved.
fn drive<T: Tee, E: Entropy, C: Clock, K: Compute>(
    c: &mut Conn,
    s: &mut tcp::Socket,
    worker: &mut Worker<T, E, C, K>,
    now_ns: u64,
) -> bool {
    let mut moved = false;
    if let Some(sess) = c.session.as_mut() {
        while s.can_recv() && sess.wants_read() {
            let took = s.recv(|buf| {
                let n = sess.receive(worker, buf);
                (n, n)
            });
            if !matches!(took, Ok(n) if n > 0) {
                break;
            }
            moved = true;
        }
        let peer_done = matches!(
            s.state(),
            State::CloseWait | State::LastAck | State::Closing | State::TimeWait | State::Closed
        );
        if peer_done && !s.may_recv() && !c.eof_seen {
            c.eof_seen = true;
            sess.peer_closed(worker);
            moved = true;
        }
        sess.poll(worker);
        while s.can_send() && !sess.pending().is_empty() {
            match s.send_slice(sess.pending()) {
                Ok(n) if n > 0 => {
                    sess.advance(n);
                    moved = true;
                }
                _ => break,
            }
        }
        if sess.should_close() {
            // The session is over; the socket finishes its close handshake, within LINGER_NS.
            s.close();
            c.session = None;
            c.serving = false;
            c.closed_at = Some(now_ns);
            moved = true;
        }
    }
    if c.closed_at
        .is_some_and(|t| now_ns.saturating_sub(t) > LINGER_NS)
        && s.is_open()
    {
        s.abort();
    }
    if c.session.is_none() && !s.is_open() {
        // Over (closed by either side, reset, timed out, aborted): listen again.
        c.closed_at = None;
        c.serving = false;
        if s.listen(PORT).is_ok() {
            moved = true;
        }
    }
    moved
}

/// The earliest time (ns, worker clock) at which a session or a lingering socket needs
/// attention, if any.
fn next_deadline_ns<T: Tee, E: Entropy, C: Clock, K: Compute>(
    conns: &[Conn],
    worker: &Worker<T, E, C, K>,
) -> Option<u64> {
    conns
        .iter()
        .filter_map(|c| match (&c.session, c.closed_at) {
            (Some(s), _) => s.next_deadline_ns(worker),
            (None, Some(t)) => Some(t.saturating_add(LINGER_NS)),
            (None, None) => None,
        })
        .min()
}
