//! Processes seen through /proc: children of a process, whether one is gone.
#![allow(dead_code)]

use std::process::Child;
use std::time::{Duration, Instant};

#[allow(unused_imports)] // each test binary uses some of them
pub use pupa_host::vm::procfs::{children, gone};

/// The process group of `pid`.
pub fn pgrp(pid: u32) -> Option<u32> {
    pupa_host::vm::procfs::stat(pid).map(|s| s.pgrp)
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
