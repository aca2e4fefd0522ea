//! What a verifier requires of evidence: measurement, debug off, minimum TCB, VMPL, migration
//! policy, REPORT_DATA binding, and whether insecure development evidence is acceptable.

use super::gpu::evidence::GpuPolicy;
use std::fmt;
use std::str::FromStr;

use pupa_spec::tee::TeeKind;
use serde::Serialize;

use super::VerifyError;
use crate::hexfmt;

/// Which launch measurements are acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeasurementPolicy {
    /// Any measurement (the verdict still shows it).
    Any,
    /// One of these 48-byte digests (SNP launch digest, TDX MRTD, or dev image SHA-384).
    OneOf(Vec<[u8; 48]>),
    /// SNP, a manifest whose firmware also boots a Linux payload (`payload` in manifest.json):
    /// the firmware's own launch digests (its built-in runtime, the unikernel) or those of the
    /// payload under QEMU's `kernel-hashes=on` (`payload.measurements.snp_with_kernel_hashes`);
    /// the verdict names which one matched.
    /// Dev evidence likewise: the firmware image's SHA-384 (the unikernel) or pupa-worker's
    /// dev measurement of the firmware and payload it was booted with
    /// (`payload.measurements.dev`, `pupa_protocol::boot_digests`).
    WithLinuxPayload {
        /// The unikernel's digests (`measurements.snp`; `image.sha384` for dev).
        unikernel: Vec<[u8; 48]>,
        /// The Linux payload's digests: with kernel hashes (SNP), the dev measurement (dev).
        linux_kernel_hashes: Vec<[u8; 48]>,
        /// How the payload is covered, for the verdict: "kernel hashes", "boot digests".
        how: &'static str,
    },
}

impl MeasurementPolicy {
    /// The expected measurements for `tee` listed in a
    /// `manifest.json` written by `pupa-image build`: every SNP digest, every TDX MRTD, or the
    /// image SHA-384 for dev evidence. With a Linux payload (`payload`), SNP also accepts the
    /// payload's launch digests with kernel hashes ([`Self::WithLinuxPayload`]); TDX's MRTD is
    /// the firmware's whichever payload runs (the payload is in RTMR\[1\]/RTMR\[2\]:
    /// [`TdxBootPolicy::linux`]).
    pub fn from_manifest(json: &str, tee: TeeKind) -> Result<Self, VerifyError> {
        let bad = |m: String| VerifyError::Policy(format!("manifest: {m}"));
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| bad(format!("not JSON: {e}")))?;
        let strings: Vec<&str> = match tee {
            TeeKind::Dev => vec![v
                .pointer("/image/sha384")
                .and_then(|s| s.as_str())
                .ok_or_else(|| bad("no image.sha384".into()))?],
            TeeKind::Snp | TeeKind::Tdx => {
                // manifest.json's `measurements` lists are keyed by the kind's name
                let list = tee.name();
                let key = if tee == TeeKind::Snp {
                    "digest"
                } else {
                    "mrtd"
                };
                v.pointer(&format!("/measurements/{list}"))
                    .and_then(|a| a.as_array())
                    .ok_or_else(|| bad(format!("no measurements.{list} array")))?
                    .iter()
                    .map(|e| e.get(key).and_then(|s| s.as_str()))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad(format!("a measurements.{list} entry lacks \"{key}\"")))?
            }
        };
        let (linux, how) = match tee {
            TeeKind::Snp => (snp_kernel_hashes_digests(&v)?, "kernel hashes"),
            TeeKind::Dev => (dev_linux_digest(&v)?, "boot digests"),
            TeeKind::Tdx => (Vec::new(), ""),
        };
        if strings.is_empty() && linux.is_empty() {
            return Err(bad(format!("lists no {tee} measurement")));
        }
        let digests = strings
            .iter()
            .map(|s| hexfmt::decode_array::<48>(s).map_err(|e| bad(format!("{s:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if linux.is_empty() {
            return Ok(Self::OneOf(digests));
        }
        Ok(Self::WithLinuxPayload {
            unikernel: digests,
            linux_kernel_hashes: linux,
            how,
        })
    }

    /// Checks `got` against the policy.
    pub fn check(&self, got: &[u8; 48]) -> Result<String, String> {
        let hex = hexfmt::encode(got);
        match self {
            Self::Any => Ok(format!("{hex} (any measurement allowed)")),
            Self::OneOf(list) if list.is_empty() => Err(format!(
                "{hex}: no expected measurement is configured (give a manifest.json or the \
                 measurements to accept)"
            )),
            Self::OneOf(list) if list.contains(got) => Ok(format!("{hex} is expected")),
            Self::OneOf(list) => Err(format!(
                "{hex} is not one of the {} expected measurement(s)",
                list.len()
            )),
            Self::WithLinuxPayload {
                unikernel,
                linux_kernel_hashes,
                how,
            } => {
                if unikernel.contains(got) {
                    Ok(format!("{hex} is expected (unikernel)"))
                } else if linux_kernel_hashes.contains(got) {
                    Ok(format!("{hex} is expected (Linux payload, {how})"))
                } else {
                    Err(format!(
                        "{hex} is not one of the {} expected measurement(s): neither the \
                         unikernel's ({}) nor the Linux payload's with {how} ({})",
                        unikernel.len() + linux_kernel_hashes.len(),
                        unikernel.len(),
                        linux_kernel_hashes.len()
                    ))
                }
            }
        }
    }
}

/// Reads a manifest's `payload` object, if any; its `kind` must be `"linux"`.
fn manifest_payload(v: &serde_json::Value) -> Result<Option<&serde_json::Value>, VerifyError> {
    let bad = |m: String| VerifyError::Policy(format!("manifest: {m}"));
    let Some(p) = v.get("payload") else {
        return Ok(None);
    };
    match p.get("kind").and_then(|k| k.as_str()) {
        Some("linux") => Ok(Some(p)),
        Some(other) => Err(bad(format!(
            "payload.kind {other:?}: only \"linux\" is known"
        ))),
        None => Err(bad("payload has no \"kind\" string".into())),
    }
}

/// The dev measurement of pupa's firmware booting the manifest's Linux payload
/// (`payload.measurements.dev`); none without a payload or that field.
fn dev_linux_digest(v: &serde_json::Value) -> Result<Vec<[u8; 48]>, VerifyError> {
    let bad = |m: String| VerifyError::Policy(format!("manifest: {m}"));
    let Some(p) = manifest_payload(v)? else {
        return Ok(Vec::new());
    };
    match p.pointer("/measurements/dev") {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::String(s)) => hexfmt::decode_array::<48>(s)
            .map(|d| vec![d])
            .map_err(|e| bad(format!("payload.measurements.dev {s:?}: {e}"))),
        Some(_) => Err(bad("payload.measurements.dev is not a string".into())),
    }
}

/// The SNP launch digests of a manifest's Linux payload under `kernel-hashes=on`
/// (`payload.measurements.snp_with_kernel_hashes[].digest`); none without a payload or list.
fn snp_kernel_hashes_digests(v: &serde_json::Value) -> Result<Vec<[u8; 48]>, VerifyError> {
    let bad = |m: String| VerifyError::Policy(format!("manifest: {m}"));
    let Some(p) = manifest_payload(v)? else {
        return Ok(Vec::new());
    };
    let Some(list) = p.pointer("/measurements/snp_with_kernel_hashes") else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| bad("payload.measurements.snp_with_kernel_hashes is not an array".into()))?;
    list.iter()
        .map(|e| {
            let s = e.get("digest").and_then(|s| s.as_str()).ok_or_else(|| {
                bad("a payload.measurements.snp_with_kernel_hashes entry lacks \"digest\"".into())
            })?;
            hexfmt::decode_array::<48>(s).map_err(|e| {
                bad(format!(
                    "payload.measurements.snp_with_kernel_hashes digest {s:?}: {e}"
                ))
            })
        })
        .collect()
}

/// TDX: what a manifest's Linux payload leaves in the RTMRs, and the SHA-384s of the parts the
/// firmware's events carry (see [`super::tdx_linux`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxPayloadTdx {
    /// `payload.measurements.tdx.rtmr1`: the kernel's event.
    pub rtmr1: [u8; 48],
    /// `payload.measurements.tdx.rtmr2`: the initrd's, then the command line's event.
    pub rtmr2: [u8; 48],
    /// `payload.initrd.sha384` (of the file, as measured); `None` if the manifest has none.
    pub initrd_sha384: Option<[u8; 48]>,
    /// `payload.cmdline.sha384` (of the file's bytes and one NUL, as measured); `None` if the
    /// manifest has none.
    pub cmdline_sha384: Option<[u8; 48]>,
}

/// The TDX measurements of a manifest's Linux payload (`payload.measurements.tdx`); `None`
/// without a payload, or for a payload whose manifest predates them.
pub fn linux_payload_tdx_from_manifest(json: &str) -> Result<Option<LinuxPayloadTdx>, VerifyError> {
    let bad = |m: String| VerifyError::Policy(format!("manifest: {m}"));
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Some(p) = manifest_payload(&v)? else {
        return Ok(None);
    };
    let Some(tdx) = p.pointer("/measurements/tdx") else {
        return Ok(None);
    };
    let hex48 = |what: &str, s: Option<&serde_json::Value>| -> Result<[u8; 48], VerifyError> {
        let s = s
            .and_then(|s| s.as_str())
            .ok_or_else(|| bad(format!("payload.{what} is not a string")))?;
        hexfmt::decode_array::<48>(s).map_err(|e| bad(format!("payload.{what} {s:?}: {e}")))
    };
    let part = |name: &str| -> Result<Option<[u8; 48]>, VerifyError> {
        match p.get(name) {
            None => Ok(None),
            Some(o) => hex48(&format!("{name}.sha384"), o.get("sha384")).map(Some),
        }
    };
    Ok(Some(LinuxPayloadTdx {
        rtmr1: hex48("measurements.tdx.rtmr1", tdx.get("rtmr1"))?,
        rtmr2: hex48("measurements.tdx.rtmr2", tdx.get("rtmr2"))?,
        initrd_sha384: part("initrd")?,
        cmdline_sha384: part("cmdline")?,
    }))
}

/// The image SHA-384 (`image.sha384`) of a `manifest.json` written by `pupa-image build`;
/// `None` if the manifest names none (a hand-written list of measurements).
pub fn image_sha384_from_manifest(json: &str) -> Result<Option<[u8; 48]>, VerifyError> {
    let bad = |m: String| VerifyError::Policy(format!("manifest: {m}"));
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| bad(format!("not JSON: {e}")))?;
    match v.pointer("/image/sha384") {
        None => Ok(None),
        Some(serde_json::Value::String(s)) => hexfmt::decode_array::<48>(s)
            .map(Some)
            .map_err(|e| bad(format!("image.sha384 {s:?}: {e}"))),
        Some(_) => Err(bad("image.sha384 is not a string".into())),
    }
}

/// TDX: what the guest's boot-configuration record (RTMR\[2\], read from the event log that comes
/// with the evidence) must say. Unset fields are not checked; the record is always decoded and
/// shown when a log is present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TdxBootPolicy {
    /// The firmware image the guest hashed must be this one (the manifest's `image.sha384`).
    pub image_sha384: Option<[u8; 48]>,
    /// NUM_VCPUS must be exactly this.
    pub vcpus: Option<u32>,
    /// The TD's RAM (accepted plus unaccepted, from the TD HOB) must be at least this, bytes.
    pub min_ram_bytes: Option<u64>,
    /// The manifest's Linux payload: evidence whose RTMR\[1\]/RTMR\[2\] are these is accepted as
    /// that payload (which writes no boot-configuration record); other evidence must show the
    /// unikernel's record ([`super::tdx_log::check`]).
    pub linux: Option<LinuxPayloadTdx>,
}

impl TdxBootPolicy {
    /// Nothing required (usable in constants).
    pub const NONE: TdxBootPolicy = TdxBootPolicy {
        image_sha384: None,
        vcpus: None,
        min_ram_bytes: None,
        linux: None,
    };

    /// Whether evidence without an event log fails: the vCPU count or the RAM is required (the
    /// image is pinned by MRTD already, so the image hash alone does not require the log).
    pub fn requires_log(&self) -> bool {
        self.vcpus.is_some() || self.min_ram_bytes.is_some()
    }

    /// Whether the evidence must show which payload ran: the policy comes from a pupa manifest
    /// (its image hash or its Linux payload), whose firmware can boot either its unikernel or a
    /// Linux kernel, both under the same MRTD.
    pub fn requires_payload(&self) -> bool {
        self.image_sha384.is_some() || self.linux.is_some()
    }
}

/// Minimum SNP TCB (security patch levels), compared component-wise with the REPORTED_TCB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SnpMinTcb {
    /// PSP bootloader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// Microcode SPL.
    pub microcode: u8,
}

impl FromStr for SnpMinTcb {
    type Err = VerifyError;
    /// `bl=3,tee=0,snp=8,ucode=115` (missing components are 0).
    fn from_str(s: &str) -> Result<Self, VerifyError> {
        let mut t = SnpMinTcb::default();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| VerifyError::Policy(format!("--min-tcb {part:?}: want KEY=N")))?;
            let n: u8 = v
                .trim()
                .parse()
                .map_err(|e| VerifyError::Policy(format!("--min-tcb {part:?}: {e}")))?;
            match k.trim() {
                "bl" | "bootloader" => t.bootloader = n,
                "tee" => t.tee = n,
                "snp" => t.snp = n,
                "ucode" | "microcode" => t.microcode = n,
                other => {
                    return Err(VerifyError::Policy(format!(
                        "--min-tcb: unknown component {other:?} (bl, tee, snp, ucode)"
                    )))
                }
            }
        }
        Ok(t)
    }
}

impl fmt::Display for SnpMinTcb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bl={},tee={},snp={},ucode={}",
            self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

/// Intel TCB statuses (TCB info v3), best first; a policy accepts a status at least as good as
/// its minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum TdxTcbStatus {
    /// The platform is up to date.
    UpToDate,
    /// Up to date, but software hardening (mitigations) is needed.
    SWHardeningNeeded,
    /// Up to date, but the platform configuration needs changes.
    ConfigurationNeeded,
    /// Both of the above.
    ConfigurationAndSWHardeningNeeded,
    /// The TCB level is out of date.
    OutOfDate,
    /// Out of date and configuration needed.
    OutOfDateConfigurationNeeded,
    /// The TCB level is revoked.
    Revoked,
}

impl FromStr for TdxTcbStatus {
    type Err = VerifyError;
    fn from_str(s: &str) -> Result<Self, VerifyError> {
        Ok(match s {
            "UpToDate" => Self::UpToDate,
            "SWHardeningNeeded" => Self::SWHardeningNeeded,
            "ConfigurationNeeded" => Self::ConfigurationNeeded,
            "ConfigurationAndSWHardeningNeeded" => Self::ConfigurationAndSWHardeningNeeded,
            "OutOfDate" => Self::OutOfDate,
            "OutOfDateConfigurationNeeded" => Self::OutOfDateConfigurationNeeded,
            "Revoked" => Self::Revoked,
            other => return Err(VerifyError::Policy(format!("unknown TCB status {other:?}"))),
        })
    }
}

impl fmt::Display for TdxTcbStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A verification policy. [`Policy::default`] is the strict one: a measurement policy must be
/// chosen, debug is forbidden, VMPL 0, no migration agent, TDX TCB `UpToDate`, no dev evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Acceptable measurements.
    pub measurement: MeasurementPolicy,
    /// Required REPORT_DATA (e.g. `pupa_protocol::evidence::report_data(keys, nonce)`).
    pub report_data: Option<[u8; 64]>,
    /// Accept debug-enabled guests (SNP policy bit 19, TD attributes bit 0).
    pub allow_debug: bool,
    /// SNP: minimum REPORTED_TCB.
    pub snp_min_tcb: Option<SnpMinTcb>,
    /// SNP: required VMPL.
    pub snp_vmpl: u32,
    /// SNP: accept a guest whose policy allows a migration agent (bit 18).
    pub allow_migration_agent: bool,
    /// TDX: the worst acceptable TCB status.
    pub tdx_min_status: TdxTcbStatus,
    /// TDX: the boot configuration the RTMR\[2\] event log must record.
    pub tdx_boot: TdxBootPolicy,
    /// Accept insecure development evidence (with a warning).
    pub allow_insecure_dev: bool,
    /// What the evidence's GPUs must show (none required by default).
    pub gpu: GpuPolicy,
}

impl Default for Policy {
    fn default() -> Self {
        Self::STRICT
    }
}

impl Policy {
    /// The strict policy ([`Policy::default`]), usable in constants.
    pub const STRICT: Policy = Policy {
        measurement: MeasurementPolicy::OneOf(Vec::new()),
        report_data: None,
        allow_debug: false,
        snp_min_tcb: None,
        snp_vmpl: 0,
        allow_migration_agent: false,
        tdx_min_status: TdxTcbStatus::UpToDate,
        tdx_boot: TdxBootPolicy::NONE,
        allow_insecure_dev: false,
        gpu: GpuPolicy::NONE,
    };

    /// Checks REPORT_DATA against the policy.
    pub fn check_report_data(&self, got: &[u8; 64]) -> Result<String, String> {
        let hex = hexfmt::encode(got);
        match &self.report_data {
            None => Ok(format!("{hex} (not checked: no --report-data)")),
            Some(want) if want == got => Ok(format!("{hex} matches")),
            Some(want) => Err(format!("{hex} != expected {}", hexfmt::encode(want))),
        }
    }

    /// Checks a debug flag against the policy.
    pub fn check_debug(&self, debug: bool, what: &str) -> Result<String, String> {
        match (debug, self.allow_debug) {
            (false, _) => Ok(format!("{what} clear: debugging disabled")),
            (true, true) => Ok(format!("{what} SET: debugging enabled (allowed by --allow-debug)")),
            (true, false) => Err(format!(
                "{what} SET: the host can read and modify guest memory (pass --allow-debug to accept)"
            )),
        }
    }
}
