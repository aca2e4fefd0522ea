//! Child processes that die with `pupa-host`, and who holds a TCP port.
//!
//! [`spawn_tied`] starts a process with `prctl(PR_SET_PDEATHSIG, SIGKILL)` set between fork and
//! exec, in its own process group. The kernel sends the parent-death signal when the *thread*
//! that forked the child exits, not the process; so every tied child is forked by one spawner
//! thread that is started once and never returns: the signal fires exactly when the `pupa-host`
//! process dies (SIGKILL included), whichever thread asked for the child. The own process group
//! keeps a terminal's Ctrl-C away from the VMM: `pupa-host` receives it, stops serving and
//! stops the guest itself.
//!
//! [`port_holder`] names the process listening on a TCP port of 127.0.0.1 (Linux: the socket's
//! inode from `/proc/net/tcp{,6}`, then the `/proc/*/fd` link `socket:[inode]`), so that a
//! stale VM holding the forward port is named with its PID.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, OnceLock};

type Request = (Command, Sender<io::Result<Child>>);

static SPAWNER: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();

fn spawner() -> io::Result<Sender<Request>> {
    if let Some(s) = SPAWNER.get() {
        return Ok(s.lock().unwrap_or_else(|p| p.into_inner()).clone());
    }
    let (tx, rx) = mpsc::channel::<Request>();
    std::thread::Builder::new()
        .name("vm-spawner".into())
        .spawn(move || {
            // Lives as long as the process: the parent-death signal of every child it forks
            // fires when the process dies, not when some caller's thread ends.
            for (mut cmd, reply) in rx {
                let _ = reply.send(cmd.spawn());
            }
        })?;
    let s = SPAWNER.get_or_init(|| Mutex::new(tx));
    Ok(s.lock().unwrap_or_else(|p| p.into_inner()).clone())
}

/// Spawns `cmd` so that it is killed (SIGKILL) when this process dies, in its own process
/// group (see the module docs).
pub fn spawn_tied(mut cmd: Command) -> io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only calls the
    // async-signal-safe prctl(2), getppid(2), getpid(2) and kill(2).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would signal us.
            if libc::getppid() != parent {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            Ok(())
        });
    }
    cmd.process_group(0);
    let (tx, rx) = mpsc::channel();
    spawner()?
        .send((cmd, tx))
        .map_err(|_| io::Error::other("the VM spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("the VM spawner thread is gone"))?
}

/// A process holding a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortHolder {
    /// Its PID.
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`).
    pub name: String,
}

impl std::fmt::Display for PortHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({})", self.pid, self.name)
    }
}

/// Inodes of sockets listening on `port` (IPv4 127.0.0.1 / 0.0.0.0, or IPv6 any/loopback).
fn listening_inodes(port: u16) -> Vec<u64> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            if f.len() < 10 || f[3] != "0A" {
                continue; // not LISTEN
            }
            let Some((_, p)) = f[1].rsplit_once(':') else {
                continue;
            };
            if u16::from_str_radix(p, 16).ok() == Some(port) {
                if let Ok(inode) = f[9].parse() {
                    out.push(inode);
                }
            }
        }
    }
    out
}

/// The process listening on TCP `port` on this host, if `/proc` tells (Linux; a process of
/// another user may not be visible).
pub fn port_holder(port: u16) -> Option<PortHolder> {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = proc_entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if wanted.iter().any(|w| link.as_os_str() == w.as_str()) {
                let name = std::fs::read_to_string(proc_entry.path().join("comm"))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default();
                return Some(PortHolder { pid, name });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_of_a_listening_port_is_this_process() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = port_holder(port).expect("found");
        assert_eq!(h.pid, std::process::id());
        drop(l);
        assert_eq!(port_holder(port), None);
    }
}
