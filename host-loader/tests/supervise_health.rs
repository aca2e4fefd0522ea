//! The supervisor keeps the guest healthy: a wedged guest (alive, answering nothing) is
//! restarted by the Hello → Evidence health check, a guest that answers `Busy` is left alone,
//! and the restart warning carries the guest's last console lines, which are read all the time.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::guest_process::GuestProcess;
use common::*;
use pupa_host::client::fetch_and_verify;
use pupa_host::relay::health::{probe, Health, HealthConfig};
use pupa_host::relay::{supervise, GuestBackend, RelayConfig, StartError, Supervision};
use pupa_host::vm::Guest;
use pupa_protocol::msg::{ErrorCode, ErrorReply, Message};

fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

fn fast_health() -> Supervision {
    Supervision {
        poll: Duration::from_millis(10),
        health: Some(HealthConfig {
            period: Duration::from_millis(30),
            deadline: Duration::from_millis(300),
            failures: 2,
        }),
        ready_timeout: Duration::from_secs(5),
    }
}

#[test]
fn a_wedged_guest_is_restarted_by_the_health_check() {
    let first = GuestProcess::start();
    let (old_addr, old_keys) = (first.addr(), first.keys());
    let (relay, addr) = relay_to(first.addr(), RelayConfig::default(), None);
    normal_job(addr);
    first.wedge();
    let stop = Arc::new(AtomicBool::new(false));
    let sup = {
        let (relay, stop) = (relay.clone(), stop.clone());
        thread::spawn(move || {
            let mut backend = FixtureBackend {
                guest: Some(first),
                starts: 0,
            };
            supervise(&relay, &mut backend, &fast_health(), &stop);
            backend.starts
        })
    };
    // The wedged guest still "runs": only the health check can notice it.
    wait_until("a restarted guest", Duration::from_secs(20), || {
        relay.guest().is_some_and(|a| a != old_addr)
    });
    let mut c = connect(addr);
    let w = fetch_and_verify(&mut c, &DEV).unwrap();
    assert_ne!(w.hpke_pk, old_keys.hpke_pk);
    normal_job(addr);
    stop.store(true, Ordering::SeqCst);
    assert_eq!(sup.join().unwrap(), 1, "restarted exactly once");
}

/// A guest that answers every connection with `Error{Busy}` and closes it.
fn busy_guest() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let s = served.clone();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let f = Message::Error(ErrorReply::new(
                ErrorCode::Busy,
                None,
                "no free worker slot; retry",
            ))
            .to_frame()
            .unwrap();
            let _ = c.write_all(&f);
            s.fetch_add(1, Ordering::SeqCst);
        }
    });
    (addr, served)
}

struct FixedBackend {
    addr: SocketAddr,
    starts: Arc<AtomicUsize>,
}

impl GuestBackend for FixedBackend {
    fn start(&mut self, _stop: &AtomicBool) -> Result<SocketAddr, StartError> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        Ok(self.addr)
    }
    fn is_running(&mut self) -> bool {
        true
    }
    fn stop(&mut self) {}
}

#[test]
fn a_busy_guest_is_alive_and_not_restarted() {
    let (gaddr, served) = busy_guest();
    assert_eq!(probe(gaddr, Duration::from_secs(5)).unwrap(), Health::Busy);
    let (relay, _addr) = relay_to(gaddr, RelayConfig::default(), None);
    let stop = Arc::new(AtomicBool::new(false));
    let starts = Arc::new(AtomicUsize::new(0));
    let sup = {
        let (relay, stop, starts) = (relay.clone(), stop.clone(), starts.clone());
        thread::spawn(move || {
            let mut b = FixedBackend {
                addr: gaddr,
                starts,
            };
            supervise(&relay, &mut b, &fast_health(), &stop);
        })
    };
    // Ten probes answered Busy: more than enough failures for a restart, were Busy a failure.
    wait_until("ten probes", Duration::from_secs(20), || {
        served.load(Ordering::SeqCst) >= 11
    });
    stop.store(true, Ordering::SeqCst);
    sup.join().unwrap();
    assert_eq!(
        starts.load(Ordering::SeqCst),
        0,
        "a Busy guest was restarted"
    );
}

#[test]
fn a_probe_of_a_silent_guest_fails_within_its_deadline() {
    // Accepts (the kernel completes the handshake) but never answers.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let t = Instant::now();
    let e = probe(l.local_addr().unwrap(), Duration::from_millis(300)).unwrap_err();
    assert!(e.to_string().contains("no reply"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(3));
}

/// A buffer the log goes to.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);
impl Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> LogBuf {
        self.clone()
    }
}

/// A "VM" that is a shell script: prints ready, then a panic line, then exits.
struct ScriptBackend {
    guest: Option<Guest>,
    starts: usize,
    stop_on_restart: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl GuestBackend for ScriptBackend {
    fn start(&mut self, stop: &AtomicBool) -> Result<SocketAddr, StartError> {
        self.starts += 1;
        if self.starts > 1 {
            // Seen the restart: end the test's supervisor.
            self.stop_on_restart.store(true, Ordering::SeqCst);
        }
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo 'pupa: ready'; read _; echo 'PANIC: memory allocation of 4096 bytes failed'; exit 3",
        ]);
        let mut g =
            Guest::spawn_command(cmd, true).map_err(|e| StartError::Other(e.to_string()))?;
        g.wait_for_or_stop(
            "pupa: ready",
            Duration::from_secs(10),
            Some(stop),
            |l| l == "pupa: ready",
            |_| {},
        )?;
        self.guest = Some(g);
        Ok(self.addr)
    }
    fn is_running(&mut self) -> bool {
        self.guest.as_mut().is_some_and(|g| g.is_running())
    }
    fn stop(&mut self) {
        if let Some(mut g) = self.guest.take() {
            g.stop();
        }
    }
    fn console_tail(&self) -> Vec<String> {
        self.guest
            .as_ref()
            .map(|g| g.console_tail())
            .unwrap_or_default()
    }
}

#[test]
fn console_lines_after_ready_are_kept_and_reach_the_restart_warning() {
    // stdin is /dev/null: `read` returns at once, so the panic line comes right after ready.
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "echo 'pupa: ready'; read _; echo 'PANIC: after ready'; exit 3",
    ]);
    let mut g = Guest::spawn_command(cmd, false).unwrap();
    g.wait_for(
        "pupa: ready",
        Duration::from_secs(10),
        |l| l == "pupa: ready",
        |_| {},
    )
    .unwrap();
    wait_until("the line after ready", Duration::from_secs(10), || {
        g.console_tail().iter().any(|l| l == "PANIC: after ready")
    });
    drop(g);

    // Global: the console is logged from the VM's reader thread. (The only subscriber in this
    // test binary.)
    let log = LogBuf::default();
    tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .init();
    let stop = Arc::new(AtomicBool::new(false));
    let (relay, _) = relay_to("127.0.0.1:9".parse().unwrap(), RelayConfig::default(), None);
    let mut b = ScriptBackend {
        guest: None,
        starts: 0,
        stop_on_restart: stop.clone(),
        addr: "127.0.0.1:9".parse().unwrap(),
    };
    let never = AtomicBool::new(false);
    b.start(&never).unwrap();
    let sup = Supervision {
        poll: Duration::from_millis(10),
        health: None,
        ready_timeout: Duration::from_secs(5),
    };
    supervise(&relay, &mut b, &sup, &stop);
    b.stop();
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let warning = text
        .lines()
        .position(|l| l.contains("guest is not running; restarting it"))
        .unwrap_or_else(|| panic!("no restart warning in:\n{text}"));
    let after: Vec<&str> = text.lines().skip(warning).take(4).collect();
    assert!(
        after
            .iter()
            .any(|l| l.contains("PANIC: memory allocation of 4096 bytes failed")),
        "the warning lacks the guest's last console lines:\n{text}"
    );
    // Every console line was logged as it came (target "guest"), the panic included.
    assert!(
        text.lines()
            .any(|l| l.contains("guest:") && l.contains("PANIC: memory allocation")),
        "console lines not logged:\n{text}"
    );
}
