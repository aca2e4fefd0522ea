//! A mock NVML for host tests (`--gpus mock:DIR`): serves a directory's files and records the
//! calls, in memory ([`MockNvml::calls`]) and, for tests that run the worker as a process, as
//! lines appended to `DIR/calls.log` (`report I NONCE_HEX`, `chain I`, `ready 0|1`).
//!
//! `DIR` holds `attestationReport.txt` (hex, as NVIDIA stores its samples; served decoded, as
//! NVML returns it, whatever the nonce asked for) and `gpuAkCertChain.txt` (PEM), and optionally
//! `mock.conf`, lines of `key=value`: `cc=on|off`, `devtools=on|off`, `gpus=N` (default 1),
//! `fail=report|chain|ready` (that call fails). Never a source of real evidence.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{CcState, GpuAttestation, GpuError};

/// One call the mock saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `attestation_report(index, nonce)`.
    Report(u32, [u8; 32]),
    /// `certificate_chain(index)`.
    Chain(u32),
    /// `set_ready(ready)`.
    Ready(bool),
}

/// The mock NVML.
#[derive(Debug, Clone)]
pub struct MockNvml {
    /// What `cc_state` returns.
    pub state: CcState,
    /// How many GPUs.
    pub gpus: u32,
    /// The report served (binary).
    pub report: Vec<u8>,
    /// The chain served.
    pub chain: Vec<u8>,
    /// The call that fails: `"report"`, `"chain"` or `"ready"`.
    pub fail: Option<String>,
    /// The calls so far.
    pub calls: Arc<Mutex<Vec<Call>>>,
    log: Option<PathBuf>,
}

impl MockNvml {
    /// CC on, devtools off, one GPU serving `report` and `chain`; calls recorded in memory.
    pub fn new(report: Vec<u8>, chain: Vec<u8>) -> Self {
        MockNvml {
            state: CcState {
                cc_enabled: true,
                devtools: false,
            },
            gpus: 1,
            report,
            chain,
            fail: None,
            calls: Arc::default(),
            log: None,
        }
    }

    /// The mock `dir` describes (module docs); calls also go to `dir/calls.log`.
    pub fn from_dir(dir: &Path) -> Result<Self, String> {
        let read = |name: &str| {
            std::fs::read(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()))
        };
        let report = decode_hex(&read("attestationReport.txt")?)
            .ok_or_else(|| "attestationReport.txt is not hex".to_string())?;
        let mut m = MockNvml::new(report, read("gpuAkCertChain.txt")?);
        if dir.join("mock.conf").exists() {
            let conf = String::from_utf8_lossy(&read("mock.conf")?).into_owned();
            m.configure(&conf)?;
        }
        m.log = Some(dir.join("calls.log"));
        Ok(m)
    }

    fn configure(&mut self, conf: &str) -> Result<(), String> {
        for line in conf.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let on = |v: &str| match v {
                "on" => Ok(true),
                "off" => Ok(false),
                _ => Err(format!("mock.conf: {line:?}: expected on or off")),
            };
            match line.split_once('=') {
                Some(("cc", v)) => self.state.cc_enabled = on(v)?,
                Some(("devtools", v)) => self.state.devtools = on(v)?,
                Some(("gpus", v)) => self.gpus = v.parse().map_err(|_| format!("{line:?}"))?,
                Some(("fail", v)) => self.fail = Some(v.to_string()),
                _ => return Err(format!("mock.conf: unknown line {line:?}")),
            }
        }
        Ok(())
    }

    fn record(&self, call: Call, step: &'static str) -> Result<(), GpuError> {
        if let Some(path) = &self.log {
            let line = match &call {
                Call::Report(i, n) => format!("report {i} {}\n", encode_hex(n)),
                Call::Chain(i) => format!("chain {i}\n"),
                Call::Ready(r) => format!("ready {}\n", u8::from(*r)),
            };
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| GpuError::new("mock", e))?;
            f.write_all(line.as_bytes())
                .map_err(|e| GpuError::new("mock", e))?;
        }
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(call);
        if self.fail.as_deref() == Some(step) {
            return Err(GpuError::new(
                match step {
                    "report" => "attestation_report",
                    "chain" => "certificate_chain",
                    _ => "set_ready",
                },
                "mock failure (mock.conf fail=)",
            ));
        }
        Ok(())
    }

    fn check_index(&self, index: u32) -> Result<(), GpuError> {
        if index < self.gpus {
            Ok(())
        } else {
            Err(GpuError::new("mock", format!("no GPU {index}")))
        }
    }
}

impl GpuAttestation for MockNvml {
    fn cc_state(&self) -> Result<CcState, GpuError> {
        Ok(self.state)
    }

    fn device_count(&self) -> Result<u32, GpuError> {
        Ok(self.gpus)
    }

    fn attestation_report(&self, index: u32, nonce: &[u8; 32]) -> Result<Vec<u8>, GpuError> {
        self.check_index(index)?;
        self.record(Call::Report(index, *nonce), "report")?;
        Ok(self.report.clone())
    }

    fn certificate_chain(&self, index: u32) -> Result<Vec<u8>, GpuError> {
        self.check_index(index)?;
        self.record(Call::Chain(index), "chain")?;
        Ok(self.chain.clone())
    }

    fn set_ready(&self, ready: bool) -> Result<(), GpuError> {
        self.record(Call::Ready(ready), "ready")
    }
}

/// Lower-case hex.
pub fn encode_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Hex (surrounding whitespace ignored) to bytes.
pub fn decode_hex(text: &[u8]) -> Option<Vec<u8>> {
    let t = std::str::from_utf8(text).ok()?.trim();
    if t.len() % 2 != 0 {
        return None;
    }
    (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(t.get(i..i + 2)?, 16).ok())
        .collect()
}
