//! Processes seen through /proc: children of a process, whether one is gone.
#![allow(dead_code)]

use std::process::Child;
use std::time::{Duration, Instant};

/// The state letter of `pid` (`R`, `S`, `Z`, …), None when it does not exist.
pub fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// The process group of `pid`.
pub fn pgrp(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After "comm) ": state ppid pgrp ...
    stat.rsplit_once(") ")?
        .1
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// Whether `pid` is gone (no such process, or a zombie waiting to be reaped).
pub fn gone(pid: u32) -> bool {
    matches!(state(pid), None | Some('Z'))
}

/// PIDs whose parent is `ppid` and whose command name starts with `prefix`.
pub fn children(ppid: u32, prefix: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((head, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let comm = head.split_once(" (").map(|(_, c)| c).unwrap_or("");
            let parent = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
            parent == Some(ppid) && comm.starts_with(prefix)
        })
        .collect()
}

/// Polls `cond` every 10 ms until it holds; panics after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills a child on drop (SIGKILL) and reaps it.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a PID this test started.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}
