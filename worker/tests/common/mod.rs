//! Test fixtures: the `pupa-worker` binary as a child process, frames over raw sockets, the
//! real evidence samples, and `tsm_mimic` (a directory that behaves like configfs-tsm).
#![allow(dead_code)]

pub mod tsm_mimic;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pupa_protocol::frame::{Frame, FrameDecoder};
use pupa_protocol::msg::Message;

/// The shared evidence samples (measurements/testdata/evidence/SOURCE).
pub const SAMPLES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../measurements/testdata/evidence/"
);

/// A sample file's bytes.
pub fn sample(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(SAMPLES).join(name)).expect("evidence sample")
}

/// The real Milan SNP report (decoded from its hex file).
pub fn snp_report() -> Vec<u8> {
    pupa_measurements::verify::snp::load_report(&sample("report_milan.hex")).unwrap()
}

/// A fresh directory under the target's temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("pupa-worker")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `target/<profile>/BIN` of `package`, built (with this test's profile) first: the
/// workspace's other binaries are not this crate's, so cargo does not build them for its tests.
pub fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> → target/<profile>
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(ws)
        .args(["build", "-p", package, "--bin", bin]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    assert!(cmd.status().unwrap().success(), "building {bin} failed");
    profile_dir.join(bin)
}

/// A running `pupa-worker`; killed on drop.
pub struct WorkerProc {
    pub child: Child,
    pub addr: SocketAddr,
    pub stderr: PathBuf,
}

impl WorkerProc {
    /// Starts `pupa-worker --listen 127.0.0.1:0 ARGS` and waits for its ready line; stderr goes
    /// to `log_dir/worker.stderr`.
    pub fn start(args: &[&str], log_dir: &Path) -> WorkerProc {
        match Self::try_start(args, log_dir) {
            Ok(w) => w,
            Err((code, err)) => panic!("pupa-worker did not start ({code:?}): {err}"),
        }
    }

    /// [`Self::start`], or the exit code and stderr of a worker that did not start.
    pub fn try_start(args: &[&str], log_dir: &Path) -> Result<WorkerProc, (Option<i32>, String)> {
        let stderr = log_dir.join("worker.stderr");
        let mut child = Command::new(env!("CARGO_BIN_EXE_pupa-worker"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
            .spawn()
            .expect("spawn pupa-worker");
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let _ = out.read_line(&mut line);
        match line.trim().strip_prefix("pupa-worker: listening on ") {
            Some(a) => Ok(WorkerProc {
                addr: a.parse().unwrap(),
                child,
                stderr,
            }),
            None => {
                let st = child.wait().unwrap();
                Err((
                    st.code(),
                    std::fs::read_to_string(&stderr).unwrap_or_default(),
                ))
            }
        }
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads frames from `s` until EOF (or `timeout` without data); returns the messages and
/// whether the stream ended with EOF.
pub fn read_all_messages(s: &mut TcpStream, timeout: Duration) -> (Vec<Message>, bool) {
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut dec = FrameDecoder::new();
    let mut msgs = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let eof = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => {
                dec.feed(&buf[..n]);
                while let Ok(Some(f)) = dec.next_frame() {
                    msgs.push(decode(&f));
                }
            }
            Err(_) => break false,
        }
    };
    (msgs, eof)
}

fn decode(f: &Frame) -> Message {
    Message::from_frame(f).expect("a frame from the worker decodes")
}
