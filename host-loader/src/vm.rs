//! Launching and watching a guest VM: spawn the profile's command line, stream the serial
//! console line by line, wait for markers, stop it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::profile::{self, LaunchConfig};

/// A running guest.
pub struct Guest {
    child: Child,
    lines: Receiver<String>,
    /// Every console line seen so far.
    pub console: Vec<String>,
}

/// Why a guest could not be started or did not come up.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot start {program}: {err} (is it installed? tests/bootstrap.sh installs QEMU)")]
    Spawn {
        program: String,
        err: std::io::Error,
    },
    #[error("the guest exited before {what} (console:\n{console})")]
    Exited { what: String, console: String },
    #[error("the guest did not print {what} within {secs} s (console:\n{console})")]
    Timeout {
        what: String,
        secs: u64,
        console: String,
    },
}

impl Guest {
    /// Start the VM described by `cfg`.
    pub fn start(cfg: &LaunchConfig) -> Result<Guest, VmError> {
        Self::spawn(cfg, Stdio::inherit())
    }

    /// Start the VM with QEMU's own stderr discarded (probe boots, whose failure is expected
    /// and reported by the caller).
    pub fn start_quiet(cfg: &LaunchConfig) -> Result<Guest, VmError> {
        Self::spawn(cfg, Stdio::null())
    }

    fn spawn(cfg: &LaunchConfig, stderr: Stdio) -> Result<Guest, VmError> {
        let l = profile::command(cfg);
        tracing::info!(program = %l.program, args = ?l.args, "starting guest");
        let mut child = Command::new(&l.program)
            .args(&l.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|err| VmError::Spawn {
                program: l.program.clone(),
                err,
            })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line.trim_end_matches('\r').to_string()).is_err() {
                    break;
                }
            }
        });
        Ok(Guest {
            child,
            lines: rx,
            console: Vec::new(),
        })
    }

    /// Wait for a console line satisfying `pred`, passing every line to `on_line`.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
        mut on_line: impl FnMut(&str),
    ) -> Result<String, VmError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    on_line(&line);
                    self.console.push(line.clone());
                    if pred(&line) {
                        return Ok(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(VmError::Timeout {
                        what: what.into(),
                        secs: timeout.as_secs(),
                        console: self.console.join("\n"),
                    })
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(VmError::Exited {
                        what: what.into(),
                        console: self.console.join("\n"),
                    })
                }
            }
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

    /// Whether the VM process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
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
