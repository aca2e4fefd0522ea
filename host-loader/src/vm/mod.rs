//! Launching and watching a guest VM: spawn the profile's command line (tied to this process,
//! [`spawn`]), drain the serial console all the time, wait for markers, stop it.
//!
//! The console is read by a thread for the whole life of the VM, not only while someone waits
//! for a marker: every line is logged (tracing target `guest`) and the last
//! [`CONSOLE_TAIL`] lines are kept ([`Guest::console_tail`]) for the supervisor's restart
//! warnings. The VMM's own stderr is captured the same way (target `qemu`) and shown in the
//! error when the VM fails to start or exits early.

pub mod procfs;
pub mod spawn;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::profile::{self, LaunchConfig};

/// Console lines kept for restart warnings.
pub const CONSOLE_TAIL: usize = 50;
/// Lines queued for [`Guest::wait_for`] callers; beyond it lines are only logged and kept in
/// the tail (nobody is waiting for them).
const QUEUED_LINES: usize = 4096;

/// Where each line of a stream goes besides the tail.
type LogFn = fn(&str);

/// The last lines of a stream.
pub type Tail = Arc<Mutex<VecDeque<String>>>;

/// A running guest.
pub struct Guest {
    child: Child,
    lines: Receiver<String>,
    /// Every console line seen so far by [`Self::wait_for`] / [`Self::wait_exit`].
    pub console: Vec<String>,
    tail: Tail,
    stderr_tail: Tail,
    stdout_reader: Option<JoinHandle<()>>,
    stderr_reader: Option<JoinHandle<()>>,
}

/// Why a guest could not be started or did not come up.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot start {program}: {err} (is it installed? tests/bootstrap.sh installs QEMU)")]
    Spawn {
        program: String,
        err: std::io::Error,
    },
    #[error(
        "the guest exited ({status}) before {what}{}{}",
        section("VMM error", stderr),
        section("console", console)
    )]
    Exited {
        what: String,
        status: String,
        stderr: String,
        console: String,
    },
    #[error(
        "the guest did not print {what} within {secs} s{}",
        section("console", console)
    )]
    Timeout {
        what: String,
        secs: u64,
        console: String,
    },
    #[error("this launch is not offered: {0}")]
    Unsupported(&'static str),
    #[error("stopped (signal) while waiting for {what}")]
    Stopped { what: String },
    #[error("host port {port} is already in use{}; stop it or choose another --forward-port", holder.as_ref().map(|h| format!(" by {h}")).unwrap_or_default())]
    PortInUse {
        port: u16,
        holder: Option<spawn::PortHolder>,
    },
}

fn section(name: &str, text: &str) -> String {
    if text.trim().is_empty() {
        String::new()
    } else {
        format!("\n{name}:\n{}", text.trim_end())
    }
}

fn push_tail(tail: &Tail, line: &str) {
    let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
    if t.len() == CONSOLE_TAIL {
        t.pop_front();
    }
    t.push_back(line.to_string());
}

fn joined(tail: &Tail) -> String {
    let t = tail.lock().unwrap_or_else(|p| p.into_inner());
    t.iter().cloned().collect::<Vec<_>>().join("\n")
}

/// Reads `src` line by line until EOF: each line is logged, kept in `tail` and (when `queue`)
/// offered to waiters.
fn drain(
    src: impl Read + Send + 'static,
    tail: Tail,
    queue: Option<SyncSender<String>>,
    log: fn(&str),
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("vm-console".into())
        .spawn(move || {
            let mut rd = BufReader::new(src);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match rd.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']);
                log(line);
                push_tail(&tail, line);
                if let Some(q) = &queue {
                    let _ = q.try_send(line.to_string());
                }
            }
        })
}

impl Guest {
    /// Start the VM described by `cfg`; the VMM's stderr is logged (target `qemu`).
    pub fn start(cfg: &LaunchConfig) -> Result<Guest, VmError> {
        Self::spawn(cfg, true)
    }

    /// Start the VM without logging its console or the VMM's stderr (probe boots, whose
    /// failure is expected and reported by the caller).
    pub fn start_quiet(cfg: &LaunchConfig) -> Result<Guest, VmError> {
        Self::spawn(cfg, false)
    }

    fn spawn(cfg: &LaunchConfig, loud: bool) -> Result<Guest, VmError> {
        if let Some(why) = profile::unsupported_launch(cfg) {
            return Err(VmError::Unsupported(why));
        }
        let l = profile::command(cfg);
        tracing::info!(program = %l.program, args = ?l.args, "starting guest");
        let mut cmd = Command::new(&l.program);
        cmd.args(&l.args);
        Self::spawn_command(cmd, loud).map_err(|err| VmError::Spawn {
            program: l.program.clone(),
            err,
        })
    }

    /// Starts `cmd` as a guest: tied to this process ([`spawn::spawn_tied`]), its stdout read
    /// as the serial console and its stderr captured. `loud`: log both.
    pub fn spawn_command(mut cmd: Command, loud: bool) -> std::io::Result<Guest> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn::spawn_tied(cmd)?;
        let (stdout, stderr) = match (child.stdout.take(), child.stderr.take()) {
            (Some(o), Some(e)) => (o, e),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::other("the VMM's output is not piped"));
            }
        };
        let (tx, rx) = mpsc::sync_channel(QUEUED_LINES);
        let (tail, stderr_tail) = (Tail::default(), Tail::default());
        let (log_out, log_err): (LogFn, LogFn) = if loud {
            (
                |l| tracing::info!(target: "guest", "{l}"),
                |l| tracing::warn!(target: "qemu", "{l}"),
            )
        } else {
            (|_| {}, |_| {})
        };
        let started = drain(stdout, tail.clone(), Some(tx), log_out)
            .and_then(|o| drain(stderr, stderr_tail.clone(), None, log_err).map(|e| (o, e)));
        let (stdout_reader, stderr_reader) = match started {
            Ok(h) => h,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        Ok(Guest {
            child,
            lines: rx,
            console: Vec::new(),
            tail,
            stderr_tail,
            stdout_reader: Some(stdout_reader),
            stderr_reader: Some(stderr_reader),
        })
    }

    /// The last console lines (at most [`CONSOLE_TAIL`]), oldest first.
    pub fn console_tail(&self) -> Vec<String> {
        let t = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        t.iter().cloned().collect()
    }

    /// Wait for a console line satisfying `pred`, passing every line to `on_line`.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl FnMut(&str) -> bool,
        on_line: impl FnMut(&str),
    ) -> Result<String, VmError> {
        self.wait_for_or_stop(what, timeout, None, pred, on_line)
    }

    /// [`Self::wait_for`] that also gives up (with [`VmError::Stopped`]) as soon as `stop` is
    /// set (checked every 100 ms).
    pub fn wait_for_or_stop(
        &mut self,
        what: &str,
        timeout: Duration,
        stop: Option<&AtomicBool>,
        mut pred: impl FnMut(&str) -> bool,
        mut on_line: impl FnMut(&str),
    ) -> Result<String, VmError> {
        let deadline = Instant::now() + timeout;
        loop {
            if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                return Err(VmError::Stopped { what: what.into() });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                Ok(line) => {
                    on_line(&line);
                    self.console.push(line.clone());
                    if pred(&line) {
                        return Ok(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) if left.is_zero() => {
                    return Err(VmError::Timeout {
                        what: what.into(),
                        secs: timeout.as_secs(),
                        console: self.console.join("\n"),
                    })
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(self.exited(what)),
            }
        }
    }

    /// The error for a VM whose console ended: its exit status and the VMM's stderr.
    fn exited(&mut self, what: &str) -> VmError {
        let deadline = Instant::now() + Duration::from_secs(2);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break st.to_string(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => break "still running, console closed".to_string(),
            }
        };
        // The stderr reader ends at EOF, i.e. once the VMM has exited.
        if let Some(h) = self.stderr_reader.take() {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        VmError::Exited {
            what: what.into(),
            status,
            stderr: joined(&self.stderr_tail),
            console: self.console.join("\n"),
        }
    }

    /// Wait for the VM to exit (up to `timeout`), draining the console; kill it after that.
    pub fn wait_exit(&mut self, timeout: Duration, mut on_line: impl FnMut(&str)) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Ok(line) = self.lines.try_recv() {
                on_line(&line);
                self.console.push(line);
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(50)) {
                    on_line(&line);
                    self.console.push(line);
                }
                return st.code();
            }
            if Instant::now() > deadline {
                self.stop();
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether the VM process is still running. Once it reports `false`, the console tail
    /// holds everything the VM printed (the reader is given up to a second to reach the end).
    pub fn is_running(&mut self) -> bool {
        if matches!(self.child.try_wait(), Ok(None)) {
            return true;
        }
        if let Some(h) = self.stdout_reader.take() {
            let deadline = Instant::now() + Duration::from_secs(1);
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        false
    }

    /// The VM's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kill the VM.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Fails with [`VmError::PortInUse`] (naming the holder) when 127.0.0.1:`port` cannot be bound.
pub fn check_port_free(port: u16) -> Result<(), VmError> {
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(VmError::PortInUse {
            port,
            holder: spawn::port_holder(port),
        }),
        // Anything else (e.g. no loopback) is QEMU's to report.
        Err(_) => Ok(()),
    }
}
