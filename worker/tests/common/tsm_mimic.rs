//! A directory that behaves like configfs-tsm's report directory
//! (Documentation/ABI/testing/configfs-tsm) for one requester at a time, serving recorded
//! reports.
//!
//! configfs creates a report instance's attributes with `mkdir`, computes `outblob` when it is
//! read, and bumps `generation` on every write. A plain directory cannot, so a helper thread
//! notices each new instance directory and populates it: `provider` and `auxblob` as files,
//! `inblob` as an empty file, and `outblob` and `generation` as FIFOs (created last), which
//! make the requester's reads wait for the helper exactly as a configfs read waits for the
//! kernel. The helper serves, in order: `generation` (0), waits for the 64 bytes of `inblob`
//! (recorded), `outblob` (the sample), `generation` (0 + the scenario's count of writes);
//! then removes the instance (the requester's own `rmdir` fails on a non-empty directory, and
//! the worker logs that). A requester that stops early leaves a FIFO unread: the helper gives
//! up on it after a deadline.

use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What the mimic serves for each instance.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// `provider`.
    pub provider: String,
    /// `outblob`.
    pub outblob: Vec<u8>,
    /// `auxblob` (absent if `None`).
    pub auxblob: Option<Vec<u8>>,
    /// How far `generation` has moved when it is read after `outblob` (1: only the
    /// requester's write; more: another writer).
    pub writes_seen: u64,
}

/// The helper thread; stops on drop.
pub struct Mimic {
    stop: Arc<AtomicBool>,
    /// The REPORT_DATA written to each instance, in order.
    pub inblobs: Arc<Mutex<Vec<Vec<u8>>>>,
    thread: Option<JoinHandle<()>>,
}

/// How long the helper waits for each step of a requester.
const STEP_DEADLINE: Duration = Duration::from_secs(10);

impl Mimic {
    /// Serves `scenario` in `dir` until dropped.
    pub fn start(dir: &Path, scenario: Scenario) -> Mimic {
        let stop = Arc::new(AtomicBool::new(false));
        let inblobs = Arc::new(Mutex::new(Vec::new()));
        let (s, ib, d) = (stop.clone(), inblobs.clone(), dir.to_path_buf());
        let thread = thread::spawn(move || run(&d, &scenario, &s, &ib));
        Mimic {
            stop,
            inblobs,
            thread: Some(thread),
        }
    }
}

impl Drop for Mimic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(dir: &Path, sc: &Scenario, stop: &AtomicBool, inblobs: &Mutex<Vec<Vec<u8>>>) {
    let mut seen: Vec<PathBuf> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let entries: Vec<PathBuf> = fs::read_dir(dir)
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        let mut served = false;
        for e in entries {
            if e.is_dir() && !seen.contains(&e) {
                seen.push(e.clone());
                serve_instance(&e, sc, stop, inblobs);
                let _ = fs::remove_dir_all(&e);
                served = true;
            }
        }
        if !served {
            thread::sleep(Duration::from_micros(200));
        }
    }
}

fn mkfifo(p: &Path) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path; mkfifo only reads it.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo {}", p.display());
}

/// Populates one instance and serves its reads. The inblob is recorded before `outblob` is
/// served: once the requester has its report it may answer its client, whose test then reads
/// the record (recording it after the last write raced with that).
fn serve_instance(
    e: &Path,
    sc: &Scenario,
    stop: &AtomicBool,
    inblobs: &Mutex<Vec<Vec<u8>>>,
) -> Option<()> {
    fs::write(e.join("provider"), format!("{}\n", sc.provider)).ok()?;
    if let Some(a) = &sc.auxblob {
        fs::write(e.join("auxblob"), a).ok()?;
    }
    fs::write(e.join("inblob"), b"").ok()?;
    mkfifo(&e.join("outblob"));
    mkfifo(&e.join("generation"));
    write_fifo(&e.join("generation"), b"0\n", stop)?;
    let deadline = Instant::now() + STEP_DEADLINE;
    let inblob = loop {
        let b = fs::read(e.join("inblob")).unwrap_or_default();
        if b.len() >= 64 || Instant::now() > deadline || stop.load(Ordering::SeqCst) {
            break b;
        }
        thread::sleep(Duration::from_micros(200));
    };
    inblobs.lock().unwrap().push(inblob);
    write_fifo(&e.join("outblob"), &sc.outblob, stop)?;
    write_fifo(
        &e.join("generation"),
        format!("{}\n", sc.writes_seen).as_bytes(),
        stop,
    )
}

/// Writes `data` to the FIFO once a reader has opened it (within [`STEP_DEADLINE`]).
fn write_fifo(p: &Path, data: &[u8], stop: &AtomicBool) -> Option<()> {
    let deadline = Instant::now() + STEP_DEADLINE;
    let mut f = loop {
        // Nonblocking open of a FIFO for writing fails (ENXIO) until a reader has it open.
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(p)
        {
            Ok(f) => break f,
            Err(_) if Instant::now() < deadline && !stop.load(Ordering::SeqCst) => {
                thread::sleep(Duration::from_micros(100));
            }
            Err(_) => return None,
        }
    };
    let fd = f.as_raw_fd();
    // SAFETY: `fd` is the open FIFO; F_GETFL/F_SETFL only change its status flags.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
    }
    f.write_all(data).ok()
}
