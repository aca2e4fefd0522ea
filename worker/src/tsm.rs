//! SEV-SNP and TDX evidence through Linux's configfs-tsm report interface
//! (Documentation/ABI/testing/configfs-tsm, Linux ≥ 6.7), as a [`pupa_runtime::Tee`].
//!
//! One report, in the order the ABI document describes (its `generation` entry: "check
//! generation before writing to any attribute and make sure the number of writes matches
//! expectations after reading outblob"):
//!
//! 1. `mkdir $tsm_path/$name`: a fresh report instance per request ("create a report instance
//!    per requesting context"); configfs creates its attributes with it;
//! 2. read `generation` (RO, "increments each time inblob or any option is written");
//! 3. write the 64 bytes of REPORT_DATA to `inblob` (WO, "up to 64 bytes of user specified
//!    binary data"): one write, so `generation` must move by exactly one;
//! 4. read `outblob` (RO, the report, "format ... conveyed via the provider attribute"): for
//!    `sev_guest` the 1184-byte ATTESTATION_REPORT (SNP firmware ABI rev 1.55, Table 22), for
//!    `tdx_guest` the DCAP quote (v4 or v5, Intel TDX DCAP Quoting Library API, App. 4–5);
//! 5. SNP only: read `auxblob` (RO, optional: "the cert_table from SEV-ES GHCB Standardization
//!    v2.03 Section 4.1.8.1 MSG_REPORT_REQ"), whose VCEK entry becomes the evidence's VCEK;
//! 6. read `provider` (RO, "sev_guest" or "tdx_guest") and require the one `--tee` names;
//! 7. read `generation` again: anything but the value of step 2 plus one means another writer
//!    used this instance in between, and the report is refused;
//! 8. `rmdir` the instance (failure is logged, the report stands).
//!
//! Every read is bounded; every failure is a [`TsmError`] naming the attribute and the
//! reason. The report's own REPORT_DATA is compared with the one written and a mismatch is
//! logged (the client's verifier refuses such evidence on its REPORT_DATA check).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pupa_protocol::evidence::TeeEvidence;
use pupa_runtime::{Tee, TeeFailure};

use crate::certtable::{self, CertTableError, VCEK_GUID, VLEK_GUID};

/// The default configfs-tsm report directory.
pub const DEFAULT_TSM_PATH: &str = "/sys/kernel/config/tsm/report";
/// Bytes of an SEV-SNP ATTESTATION_REPORT (SNP firmware ABI, Table 22).
pub const SNP_REPORT_LEN: usize = 1184;
/// Offset of REPORT_DATA in the SNP report.
const SNP_REPORT_DATA_AT: usize = 0x50;
/// Most bytes read from `outblob` (a TDX quote with its PCK chain is a few KiB).
pub const MAX_OUTBLOB: usize = 1 << 20;
/// Where Linux exposes the log area of the firmware's CCEL ACPI table (TDX).
pub const DEFAULT_CCEL_PATH: &str = "/sys/firmware/acpi/tables/data/CCEL";
/// Largest event log read (pupa's firmware writes a few KiB).
pub const MAX_EVENT_LOG: usize = 1 << 20;
/// Most bytes read from `auxblob` (VCEK, ASK, ARK: a few KiB).
pub const MAX_AUXBLOB: usize = 1 << 20;
/// Most bytes read from `provider` and `generation`.
const MAX_SMALL: usize = 64;
/// TDX quote: header bytes, TD 1.0 report body bytes, REPORTDATA offset in the body.
const TDX_HEADER: usize = 48;
const TDX_TD10_BODY: usize = 584;
const TDX_TD15_BODY: usize = 648;
const TDX_REPORT_DATA_IN_BODY: usize = 520;
/// The TEE type of a TDX quote header.
const TDX_TEE_TYPE: u32 = 0x81;

/// Which TEE the configfs-tsm provider must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsmKind {
    /// AMD SEV-SNP: provider `sev_guest`.
    Snp,
    /// Intel TDX: provider `tdx_guest`.
    Tdx,
}

impl TsmKind {
    /// The `provider` value of this TEE.
    pub fn provider(self) -> &'static str {
        match self {
            TsmKind::Snp => "sev_guest",
            TsmKind::Tdx => "tdx_guest",
        }
    }
}

/// Why configfs-tsm gave no usable report.
#[derive(Debug, thiserror::Error)]
pub enum TsmError {
    /// The report instance could not be created.
    #[error("cannot create the report instance {path}: {source} (is configfs-tsm mounted, Linux ≥ 6.7, and the guest driver loaded?)")]
    Mkdir {
        /// The instance directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// An attribute never appeared in the instance.
    #[error("{attr} did not appear in {entry} within {waited_ms} ms: not a configfs-tsm report directory")]
    AttributeMissing {
        /// The instance directory.
        entry: PathBuf,
        /// The attribute.
        attr: &'static str,
        /// How long it was waited for.
        waited_ms: u128,
    },
    /// Reading an attribute failed.
    #[error("cannot read {attr}: {source}")]
    Read {
        /// The attribute.
        attr: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// Writing `inblob` failed.
    #[error("cannot write the 64-byte REPORT_DATA to inblob: {0}")]
    WriteInblob(io::Error),
    /// An attribute is larger than the bound.
    #[error("{attr} is larger than {limit} bytes")]
    TooLarge {
        /// The attribute.
        attr: &'static str,
        /// The bound.
        limit: usize,
    },
    /// `generation` is not a decimal counter.
    #[error("generation is not a decimal counter: {0:?}")]
    BadGeneration(String),
    /// The provider is not the TEE asked for.
    #[error("provider is {got:?}, expected {want:?} (--tee names the wrong TEE for this machine)")]
    WrongProvider {
        /// The provider `--tee` needs.
        want: &'static str,
        /// The provider found.
        got: String,
    },
    /// `generation` moved by other than the one write: a concurrent writer.
    #[error("generation moved from {before} to {after} across one inblob write: another writer used the report instance; report refused")]
    GenerationMoved {
        /// Before the write.
        before: u64,
        /// After reading outblob.
        after: u64,
    },
    /// `outblob` is empty.
    #[error("outblob is empty: the TSM produced no report")]
    EmptyOutblob,
    /// The SNP report is not 1184 bytes.
    #[error("outblob holds {got} bytes; an SEV-SNP attestation report is {SNP_REPORT_LEN}")]
    SnpReportSize {
        /// Bytes read.
        got: usize,
    },
    /// The TDX quote is malformed or truncated.
    #[error("outblob is not a complete TDX quote: {0}")]
    TdxQuote(String),
    /// `auxblob` is not a valid SNP certificate table.
    #[error("auxblob: {0}")]
    CertTable(#[from] CertTableError),
    /// The TDX event log (CCEL) could not be read.
    #[error("TDX event log: {0}")]
    EventLog(String),
}

impl TsmError {
    /// A fixed description for the runtime's `TeeFailure` (the full error is logged).
    pub fn category(&self) -> &'static str {
        match self {
            TsmError::Mkdir { .. } => "configfs-tsm: cannot create a report instance",
            TsmError::AttributeMissing { .. } => "configfs-tsm: not a report directory",
            TsmError::Read { .. } => "configfs-tsm: attribute read failed",
            TsmError::WriteInblob(_) => "configfs-tsm: inblob write failed",
            TsmError::TooLarge { .. } => "configfs-tsm: attribute too large",
            TsmError::BadGeneration(_) => "configfs-tsm: bad generation counter",
            TsmError::WrongProvider { .. } => "configfs-tsm: wrong provider for --tee",
            TsmError::GenerationMoved { .. } => {
                "configfs-tsm: concurrent writer (generation moved)"
            }
            TsmError::EmptyOutblob => "configfs-tsm: empty report",
            TsmError::SnpReportSize { .. } => "configfs-tsm: SNP report of the wrong size",
            TsmError::TdxQuote(_) => "configfs-tsm: malformed TDX quote",
            TsmError::CertTable(_) => "configfs-tsm: malformed SNP certificate table",
            TsmError::EventLog(_) => "TDX event log unreadable",
        }
    }
}

/// The configfs-tsm backend of one TEE kind.
#[derive(Debug)]
pub struct ConfigfsTsm {
    root: PathBuf,
    kind: TsmKind,
    /// How long to wait for an instance's attributes to appear. configfs creates them with the
    /// directory, so on a kernel this ends at once; a directory that only mimics configfs (the
    /// tests) populates them asynchronously.
    attr_wait: Duration,
    reports: u64,
    /// TDX: the firmware's RTMR event log, sent with every quote.
    event_log: Option<Vec<u8>>,
}

impl ConfigfsTsm {
    /// Reports of `kind` under `root` (normally [`DEFAULT_TSM_PATH`]).
    pub fn new(root: impl Into<PathBuf>, kind: TsmKind) -> Self {
        ConfigfsTsm {
            root: root.into(),
            kind,
            attr_wait: Duration::from_secs(2),
            reports: 0,
            event_log: None,
        }
    }

    /// Changes how long an instance's attributes are waited for.
    pub fn with_attr_wait(mut self, wait: Duration) -> Self {
        self.attr_wait = wait;
        self
    }

    /// TDX: sends `log` (the firmware's RTMR event log, [`read_event_log`]) with every quote.
    pub fn with_event_log(mut self, log: Vec<u8>) -> Self {
        self.event_log = Some(log);
        self
    }

    /// One report over `report_data` (steps 1–8 of the module docs).
    pub fn report(&mut self, report_data: &[u8; 64]) -> Result<TeeEvidence, TsmError> {
        self.reports += 1;
        let entry = self.root.join(entry_name(self.reports));
        fs::create_dir(&entry).map_err(|source| TsmError::Mkdir {
            path: entry.clone(),
            source,
        })?;
        let result = self.report_in(&entry, report_data);
        if let Err(e) = fs::remove_dir(&entry) {
            tracing::warn!(entry = %entry.display(), "cannot rmdir the report instance: {e}");
        }
        result
    }

    fn report_in(&self, entry: &Path, report_data: &[u8; 64]) -> Result<TeeEvidence, TsmError> {
        wait_for(entry, "generation", self.attr_wait)?;
        let before = read_generation(entry)?;
        let mut inblob = OpenOptions::new()
            .write(true)
            .open(entry.join("inblob"))
            .map_err(TsmError::WriteInblob)?;
        inblob
            .write_all(report_data)
            .map_err(TsmError::WriteInblob)?;
        drop(inblob);
        let outblob = read_bounded(entry, "outblob", MAX_OUTBLOB)?;
        let auxblob = match self.kind {
            TsmKind::Snp => read_optional(entry, "auxblob", MAX_AUXBLOB)?,
            TsmKind::Tdx => None,
        };
        let provider = read_bounded(entry, "provider", MAX_SMALL)?;
        let provider = String::from_utf8_lossy(&provider).trim().to_string();
        if provider != self.kind.provider() {
            return Err(TsmError::WrongProvider {
                want: self.kind.provider(),
                got: provider,
            });
        }
        let after = read_generation(entry)?;
        if Some(after) != before.checked_add(1) {
            return Err(TsmError::GenerationMoved { before, after });
        }
        let (evidence, got_rd) = match self.kind {
            TsmKind::Snp => snp_evidence(outblob, auxblob.as_deref())?,
            TsmKind::Tdx => tdx_evidence(outblob, self.event_log.clone())?,
        };
        if &got_rd != report_data {
            tracing::warn!(
                provider = %provider,
                "the report's REPORT_DATA is not the one written to inblob: verifiers will refuse \
                 this evidence"
            );
        }
        tracing::debug!(entry = %entry.display(), provider = %provider, "configfs-tsm report");
        Ok(evidence)
    }
}

impl Tee for ConfigfsTsm {
    fn evidence(&mut self, report_data: &[u8; 64]) -> Result<TeeEvidence, TeeFailure> {
        self.report(report_data).map_err(|e| {
            tracing::error!(tsm = %self.root.display(), "{e}");
            TeeFailure(e.category())
        })
    }
}

/// A fresh instance name: process id, report counter and 64 random bits.
/// The TSM provider this guest has (`sev_guest`, `tdx_guest`), read from a fresh report
/// instance under `root` that is removed again; `None` when no TSM is registered (no
/// configfs-tsm directory, or the kernel refuses the instance: no TEE guest driver).
pub fn provider(root: &Path, wait: Duration) -> Result<Option<String>, TsmError> {
    let entry = root.join(format!("pupa-detect-{}", std::process::id()));
    match fs::create_dir(&entry) {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound) || e.raw_os_error() == Some(6) => {
            return Ok(None); // ENOENT: no configfs-tsm; ENXIO: no provider registered
        }
        Err(source) => {
            return Err(TsmError::Mkdir {
                path: entry,
                source,
            })
        }
    }
    let got = wait_for(&entry, "provider", wait)
        .and_then(|()| read_bounded(&entry, "provider", MAX_SMALL));
    if let Err(e) = fs::remove_dir(&entry) {
        tracing::warn!(entry = %entry.display(), "cannot rmdir the report instance: {e}");
    }
    Ok(Some(String::from_utf8_lossy(&got?).trim().to_string()))
}

/// Reads the firmware's event log (the CCEL table's log area, as Linux exposes it), at most
/// [`MAX_EVENT_LOG`] bytes; the 0xFF filler after the last event is kept (verifiers stop there).
pub fn read_event_log(path: &Path) -> Result<Vec<u8>, TsmError> {
    let f = File::open(path).map_err(|e| TsmError::EventLog(format!("{}: {e}", path.display())))?;
    let log = read_limited(f, "CCEL", MAX_EVENT_LOG)?;
    if log.is_empty() {
        return Err(TsmError::EventLog(format!("{}: empty", path.display())));
    }
    Ok(log)
}

fn entry_name(n: u64) -> String {
    let mut r = [0u8; 8];
    let salt = getrandom::fill(&mut r).map_or(0, |()| u64::from_le_bytes(r));
    format!("pupa-{}-{n}-{salt:016x}", std::process::id())
}

fn wait_for(entry: &Path, attr: &'static str, wait: Duration) -> Result<(), TsmError> {
    let start = Instant::now();
    let path = entry.join(attr);
    let mut pause = Duration::from_micros(50);
    while !path.exists() {
        if start.elapsed() >= wait {
            return Err(TsmError::AttributeMissing {
                entry: entry.to_path_buf(),
                attr,
                waited_ms: start.elapsed().as_millis(),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
    Ok(())
}

/// Reads all of `entry/attr`, at most `limit` bytes.
fn read_bounded(entry: &Path, attr: &'static str, limit: usize) -> Result<Vec<u8>, TsmError> {
    let f = File::open(entry.join(attr)).map_err(|source| TsmError::Read { attr, source })?;
    read_limited(f, attr, limit)
}

/// [`read_bounded`], or `None` if the attribute does not exist.
fn read_optional(
    entry: &Path,
    attr: &'static str,
    limit: usize,
) -> Result<Option<Vec<u8>>, TsmError> {
    match File::open(entry.join(attr)) {
        Ok(f) => read_limited(f, attr, limit).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TsmError::Read { attr, source }),
    }
}

fn read_limited(f: File, attr: &'static str, limit: usize) -> Result<Vec<u8>, TsmError> {
    let mut buf = Vec::new();
    f.take(limit as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|source| TsmError::Read { attr, source })?;
    if buf.len() > limit {
        return Err(TsmError::TooLarge { attr, limit });
    }
    Ok(buf)
}

fn read_generation(entry: &Path) -> Result<u64, TsmError> {
    let raw = read_bounded(entry, "generation", MAX_SMALL)?;
    let text = String::from_utf8_lossy(&raw);
    text.trim()
        .parse()
        .map_err(|_| TsmError::BadGeneration(text.into_owned()))
}

/// The SNP report (exactly [`SNP_REPORT_LEN`] bytes) with the VCEK from the certificate
/// table, if the table has one; and the report's REPORT_DATA.
fn snp_evidence(
    report: Vec<u8>,
    auxblob: Option<&[u8]>,
) -> Result<(TeeEvidence, [u8; 64]), TsmError> {
    if report.is_empty() {
        return Err(TsmError::EmptyOutblob);
    }
    if report.len() != SNP_REPORT_LEN {
        return Err(TsmError::SnpReportSize { got: report.len() });
    }
    let table = certtable::parse(auxblob.unwrap_or_default())?;
    let vcek = table.iter().find(|e| e.guid == VCEK_GUID).map(|e| e.cert);
    if vcek.is_none() && table.iter().any(|e| e.guid == VLEK_GUID) {
        tracing::warn!("auxblob has a VLEK but no VCEK: the evidence carries no certificate");
    }
    let mut rd = [0u8; 64];
    rd.copy_from_slice(&report[SNP_REPORT_DATA_AT..SNP_REPORT_DATA_AT + 64]);
    let vcek = vcek.map(|c| c.to_vec().into());
    Ok((TeeEvidence::Snp { report, vcek }, rd))
}

fn le16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn le32(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

/// Where a TDX quote's TD report body starts, from its header (v4: right after it; v5: after
/// the body descriptor), and the body's length.
fn tdx_body(quote: &[u8]) -> Result<(usize, usize), TsmError> {
    let bad = |m: String| TsmError::TdxQuote(m);
    if quote.len() < TDX_HEADER + 6 {
        return Err(bad(format!(
            "{} bytes, shorter than the header",
            quote.len()
        )));
    }
    let tee_type = le32(quote, 4) as u32;
    if tee_type != TDX_TEE_TYPE {
        return Err(bad(format!("TEE type {tee_type:#x}, not TDX (0x81)")));
    }
    match le16(quote, 0) {
        4 => Ok((TDX_HEADER, TDX_TD10_BODY)),
        5 => {
            let (ty, size) = (le16(quote, TDX_HEADER), le32(quote, TDX_HEADER + 2));
            match (ty, size) {
                (2, TDX_TD10_BODY) | (3, TDX_TD15_BODY) => Ok((TDX_HEADER + 6, size)),
                _ => Err(bad(format!("v5 body type {ty} of {size} bytes"))),
            }
        }
        v => Err(bad(format!("quote version {v} (4 and 5 are known)"))),
    }
}

/// The TDX quote, checked to be complete (header, body, signature data length and that much
/// signature data, then at most zero padding); and the TD report's REPORTDATA.
fn tdx_evidence(
    quote: Vec<u8>,
    event_log: Option<Vec<u8>>,
) -> Result<(TeeEvidence, [u8; 64]), TsmError> {
    if quote.is_empty() {
        return Err(TsmError::EmptyOutblob);
    }
    let (body, len) = tdx_body(&quote)?;
    let sig_at = body + len;
    if quote.len() < sig_at + 4 {
        return Err(TsmError::TdxQuote(format!(
            "{} bytes, truncated inside the TD report body (needs {})",
            quote.len(),
            sig_at + 4
        )));
    }
    let need = sig_at + 4 + le32(&quote, sig_at);
    if quote.len() < need {
        return Err(TsmError::TdxQuote(format!(
            "{} bytes, truncated inside the signature data (header, body and signature data \
             make {need})",
            quote.len()
        )));
    }
    // The quote buffer may come back zero-padded (the real sample is); anything else after
    // the signature data is not a quote.
    if quote[need..].iter().any(|&b| b != 0) {
        return Err(TsmError::TdxQuote(format!(
            "non-zero bytes after the signature data ({} bytes where the quote makes {need})",
            quote.len()
        )));
    }
    let mut rd = [0u8; 64];
    let at = body + TDX_REPORT_DATA_IN_BODY;
    rd.copy_from_slice(&quote[at..at + 64]);
    let ev = TeeEvidence::Tdx {
        quote,
        event_log: event_log.map(Into::into),
    };
    Ok((ev, rd))
}
