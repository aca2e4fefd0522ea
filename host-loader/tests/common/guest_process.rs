//! Test fixture: the guest runtime (`pupa_runtime`: `Worker` + one `Session` per
//! connection — the same code the firmware runs) behind a std `TcpListener` on 127.0.0.1, driven
//! by the loop the runtime's docs prescribe. It lets the relay and the client be tested end to
//! end without QEMU. It can be told to die when the next bytes arrive (a guest crash with a job
//! in flight) and be restarted with fresh keys.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use pupa_runtime::{Clock, Config, DevTee, Entropy, EntropyFailure, Session, Worker};
use rand::RngCore;

/// Image hash the fixture's development evidence names.
pub const FIXTURE_IMAGE_SHA384: [u8; 48] = [0x5a; 48];

/// OS randomness (the firmware uses RDSEED/RDRAND).
pub struct OsEntropy;
impl Entropy for OsEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyFailure> {
        rand::rng().fill_bytes(buf);
        Ok(())
    }
}

/// Monotonic clock from `Instant`.
pub struct HostClock(Instant);
impl Clock for HostClock {
    fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// Public facts of a running fixture guest.
#[derive(Debug, Clone, Copy)]
pub struct GuestKeys {
    /// HPKE key jobs are sealed to.
    pub hpke_pk: [u8; 32],
    /// Receipt key.
    pub receipt_pk: [u8; 32],
}

/// A running guest runtime in this process.
pub struct GuestProcess {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    die_on_input: Arc<AtomicBool>,
    dead: Arc<AtomicBool>,
    wedged: Arc<AtomicBool>,
    keys: GuestKeys,
    thread: Option<JoinHandle<()>>,
}

struct Conn {
    sock: TcpStream,
    session: Session,
    eof: bool,
    /// Received bytes the session did not take yet (it was backlogged).
    held: Vec<u8>,
}

impl GuestProcess {
    /// Starts a guest with fresh keys on 127.0.0.1 (any free port).
    pub fn start() -> GuestProcess {
        Self::start_with("127.0.0.1:0".parse().unwrap(), Config::default())
    }

    /// Starts a guest on `addr` with `config`.
    pub fn start_with(addr: SocketAddr, config: Config) -> GuestProcess {
        let listener = TcpListener::bind(addr).expect("bind the fixture guest");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let worker = Worker::new(
            DevTee {
                image_sha384: FIXTURE_IMAGE_SHA384,
            },
            OsEntropy,
            HostClock(Instant::now()),
            config,
        )
        .expect("fixture worker starts");
        let keys = GuestKeys {
            hpke_pk: worker.hpke_public_key(),
            receipt_pk: worker.receipt_public_key(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let die_on_input = Arc::new(AtomicBool::new(false));
        let dead = Arc::new(AtomicBool::new(false));
        let wedged = Arc::new(AtomicBool::new(false));
        let flags = Flags {
            stop: stop.clone(),
            die: die_on_input.clone(),
            dead: dead.clone(),
            wedged: wedged.clone(),
        };
        let thread = thread::Builder::new()
            .name(format!("guest-{}", addr.port()))
            .spawn(move || serve(listener, worker, &flags))
            .unwrap();
        GuestProcess {
            addr,
            stop,
            die_on_input,
            dead,
            wedged,
            keys,
            thread: Some(thread),
        }
    }

    /// Where the job port is.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The guest's public keys.
    pub fn keys(&self) -> GuestKeys {
        self.keys
    }

    /// The next bytes any connection receives make the guest die (all sockets dropped, no
    /// reply): a crash with a job in flight.
    pub fn die_on_next_input(&self) {
        self.die_on_input.store(true, Ordering::SeqCst);
    }

    /// The flag behind [`Self::die_on_next_input`], to set it after the fixture moved.
    pub fn die_handle(&self) -> Arc<AtomicBool> {
        self.die_on_input.clone()
    }

    /// The guest stops answering for good but keeps running (a wedged guest: its listener
    /// still completes TCP handshakes, nothing is read or answered).
    pub fn wedge(&self) {
        self.wedged.store(true, Ordering::SeqCst);
    }

    /// Whether the serving loop still runs.
    pub fn is_running(&self) -> bool {
        !self.dead.load(Ordering::SeqCst)
    }

    /// Stops the guest, dropping every connection.
    pub fn kill(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for GuestProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The fixture's controls, shared with its serving thread.
struct Flags {
    stop: Arc<AtomicBool>,
    die: Arc<AtomicBool>,
    dead: Arc<AtomicBool>,
    wedged: Arc<AtomicBool>,
}

fn serve<T, E, C>(listener: TcpListener, mut worker: Worker<T, E, C>, flags: &Flags)
where
    T: pupa_runtime::Tee,
    E: Entropy,
    C: Clock,
{
    let mut conns: Vec<Conn> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let (stop, die, dead) = (&flags.stop, &flags.die, &flags.dead);
    'outer: while !stop.load(Ordering::SeqCst) {
        if flags.wedged.load(Ordering::SeqCst) {
            // Stuck: alive, answering nothing (the stop flag still ends it).
            thread::sleep(Duration::from_millis(1));
            continue;
        }
        let mut progress = false;
        while let Ok((sock, _)) = listener.accept() {
            sock.set_nonblocking(true).unwrap();
            let _ = sock.set_nodelay(true);
            conns.push(Conn {
                sock,
                session: Session::new(&worker),
                eof: false,
                held: Vec::new(),
            });
            progress = true;
        }
        for c in conns.iter_mut() {
            if c.session.wants_read() && !c.held.is_empty() {
                let used = c.session.receive(&mut worker, &c.held);
                c.held.drain(..used);
                progress |= used > 0;
            } else if c.session.wants_read() && !c.eof {
                match c.sock.read(&mut buf) {
                    Ok(0) => {
                        c.eof = true;
                        c.session.peer_closed(&mut worker);
                        progress = true;
                    }
                    Ok(n) => {
                        if die.load(Ordering::SeqCst) {
                            break 'outer;
                        }
                        let used = c.session.receive(&mut worker, &buf[..n]);
                        c.held.extend_from_slice(&buf[used..n]);
                        progress = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => {
                        c.eof = true;
                        c.session.peer_closed(&mut worker);
                    }
                }
            }
            c.session.poll(&mut worker);
            while !c.session.pending().is_empty() {
                match c.sock.write(c.session.pending()) {
                    Ok(n) => {
                        c.session.advance(n);
                        progress = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        let n = c.session.pending().len();
                        c.session.advance(n);
                        c.eof = true;
                        c.session.peer_closed(&mut worker);
                    }
                }
            }
        }
        conns.retain_mut(|c| {
            if c.session.should_close() {
                let _ = c.sock.shutdown(std::net::Shutdown::Both);
                false
            } else {
                true
            }
        });
        if !progress {
            thread::sleep(Duration::from_micros(50));
        }
    }
    dead.store(true, Ordering::SeqCst);
    for c in conns {
        let _ = c.sock.shutdown(std::net::Shutdown::Both);
    }
}
