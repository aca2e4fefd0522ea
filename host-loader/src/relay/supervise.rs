//! The supervisor: keeps a guest running and healthy behind the relay.
//!
//! Every [`Supervision::poll`] it checks that the guest process is alive; with a
//! [`HealthConfig`] it also probes the guest ([`health::probe`], on a helper thread so that
//! neither a dead process nor a signal waits for a probe). When the process is gone, or after
//! [`HealthConfig::failures`] failed probes in a row, it cuts the relay's guest connections
//! (each client with a job in flight gets the "job lost" error), logs a warning that carries the
//! last console lines of the guest, restarts it with back-off, waits until it answers a probe
//! and points the relay at it again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use super::health::{self, Health, HealthConfig, ProbeError};
use super::proxy::Relay;
use crate::vm::VmError;

/// Why a guest did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The VM did not come up.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// Up, but it does not answer `Hello`.
    #[error("the guest printed ready but does not answer on its job port: {0}")]
    Unhealthy(#[from] ProbeError),
    /// Stopped by a signal while starting.
    #[error("stopped (signal) while the guest was starting")]
    Stopped,
    /// Anything else (test backends).
    #[error("{0}")]
    Other(String),
}

/// A guest the supervisor can start, watch and stop: a VM, or (in tests) a host process.
pub trait GuestBackend: Send {
    /// Starts the guest and waits until it says it serves (giving up when `stop` is set);
    /// returns where its job port is reached.
    fn start(&mut self, stop: &AtomicBool) -> Result<SocketAddr, StartError>;
    /// Whether the guest is still running.
    fn is_running(&mut self) -> bool;
    /// Stops it.
    fn stop(&mut self);
    /// The last lines the guest printed (for restart warnings).
    fn console_tail(&self) -> Vec<String> {
        Vec::new()
    }
}

/// How the supervisor watches the guest.
#[derive(Debug, Clone, Copy)]
pub struct Supervision {
    /// How often the process is checked (and the stop flag read).
    pub poll: Duration,
    /// Application-level health checks; `None`: process liveness only.
    pub health: Option<HealthConfig>,
    /// How long a (re)started guest may take to answer its first probe.
    pub ready_timeout: Duration,
}

impl Default for Supervision {
    fn default() -> Self {
        Supervision {
            poll: Duration::from_millis(100),
            health: Some(HealthConfig::default()),
            ready_timeout: Duration::from_secs(30),
        }
    }
}

/// Starts the guest and waits until it answers a probe (when health checks are on).
pub fn start_guest(
    backend: &mut dyn GuestBackend,
    sup: &Supervision,
    stop: &AtomicBool,
) -> Result<SocketAddr, StartError> {
    let addr = backend.start(stop)?;
    if let Some(h) = &sup.health {
        match health::wait_healthy(addr, sup.ready_timeout, h.deadline, stop) {
            Ok(Health::Serving | Health::Busy) => {}
            Err(_) if stop.load(Ordering::SeqCst) => return Err(StartError::Stopped),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(addr)
}

/// A probe running on its own thread.
struct Probe {
    result: Receiver<Result<Health, ProbeError>>,
}

impl Probe {
    fn spawn(addr: SocketAddr, deadline: Duration) -> Option<Probe> {
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("guest-probe".into())
            .spawn(move || {
                let _ = tx.send(health::probe(addr, deadline));
            })
            .ok()?;
        Some(Probe { result: rx })
    }
}

/// Health-check bookkeeping between polls.
struct Checker {
    cfg: HealthConfig,
    probe: Option<Probe>,
    next: Instant,
    failed: u32,
}

impl Checker {
    fn new(cfg: HealthConfig) -> Checker {
        Checker {
            cfg,
            probe: None,
            next: Instant::now() + cfg.period,
            failed: 0,
        }
    }

    /// Starts or collects a probe; returns why the guest must be restarted, if it must.
    fn step(&mut self, addr: Option<SocketAddr>) -> Option<String> {
        if let Some(p) = &self.probe {
            let r = match p.result.try_recv() {
                Err(TryRecvError::Empty) => return None,
                Ok(r) => r,
                Err(TryRecvError::Disconnected) => Err(ProbeError::Closed),
            };
            self.probe = None;
            self.next = Instant::now() + self.cfg.period;
            match r {
                Ok(h) => {
                    if self.failed > 0 {
                        tracing::info!(?h, "guest answers its health check again");
                    }
                    self.failed = 0;
                }
                Err(e) => {
                    self.failed += 1;
                    tracing::warn!(error = %e, failed = self.failed, of = self.cfg.failures, "guest health check failed");
                    if self.failed >= self.cfg.failures {
                        return Some(format!(
                            "guest failed {} health checks in a row (last: {e})",
                            self.failed
                        ));
                    }
                }
            }
        } else if Instant::now() >= self.next {
            if let Some(a) = addr {
                self.probe = Probe::spawn(a, self.cfg.deadline);
            }
        }
        None
    }

    /// Forgets the old guest's probes.
    fn reset(&mut self) {
        *self = Checker::new(self.cfg);
    }
}

/// Watches the guest until `stop` is set (see the module docs).
pub fn supervise(
    relay: &Relay,
    backend: &mut dyn GuestBackend,
    sup: &Supervision,
    stop: &AtomicBool,
) {
    let mut checker = sup.health.map(Checker::new);
    while !stop.load(Ordering::SeqCst) {
        thread::sleep(sup.poll);
        let why = if !backend.is_running() {
            Some("guest is not running".to_string())
        } else {
            checker.as_mut().and_then(|c| c.step(relay.guest()))
        };
        let Some(why) = why else { continue };
        relay.set_guest(None);
        let cut = relay.guest_lost();
        let console = backend.console_tail().join("\n");
        tracing::warn!(
            connections = cut,
            "{why}; restarting it; last console lines:\n{console}"
        );
        backend.stop();
        if !restart(relay, backend, sup, stop) {
            return;
        }
        if let Some(c) = checker.as_mut() {
            c.reset();
        }
    }
}

/// Starts the guest again, with back-off; false when stopped first.
fn restart(
    relay: &Relay,
    backend: &mut dyn GuestBackend,
    sup: &Supervision,
    stop: &AtomicBool,
) -> bool {
    let mut backoff = Duration::from_millis(200);
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let t = Instant::now();
        match start_guest(backend, sup, stop) {
            Ok(addr) => {
                tracing::info!(%addr, ms = t.elapsed().as_millis() as u64, "guest restarted");
                relay.set_guest(Some(addr));
                return true;
            }
            Err(e) => {
                backend.stop();
                tracing::error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "guest restart failed");
                let until = Instant::now() + backoff;
                while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(50).min(backoff));
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}
