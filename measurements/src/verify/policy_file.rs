//! Policy knobs: the contents of a policy file (`--policy FILE`, TOML) or the flags of a command
//! line, merged (flags override the file) and turned into a [`Policy`].
//!
//! ```toml
//! # every key is optional; unknown keys are an error
//! expect = "manifest.json"          # or: measurements = ["<96 hex>", ...]  or: any_measurement = true
//! allow_debug = false
//! snp_min_tcb = "bl=3,tee=0,snp=8,ucode=115"
//! tdx_min_tcb = "UpToDate"          # the worst accepted TDX TCB status
//! tdx_vcpus = 2                     # TDX: the boot configuration's NUM_VCPUS, exactly
//! tdx_min_ram_mib = 2048            # TDX: the boot configuration's RAM, at least
//! vmpl = 0
//! allow_migration_agent = false
//! allow_insecure_dev = false
//! report_data = "<128 hex>"         # or: hpke_pk, receipt_pk, nonce (64 hex each)
//! ```
//! A relative `expect` path is taken relative to the policy file's directory. With `expect`,
//! TDX evidence must also record that manifest's `image.sha384` in its boot configuration, or,
//! when the manifest has a Linux payload (`payload.measurements.tdx`), carry that payload's
//! RTMR\[1\]/RTMR\[2\] instead; SNP evidence may carry the payload's launch digests with kernel
//! hashes (`payload.measurements.snp_with_kernel_hashes`). No other key is needed for the
//! payload: the manifest says it all.

use super::gpu::evidence::GpuPolicy;
use std::path::{Path, PathBuf};

use pupa_spec::tee::TeeKind;
use serde::Deserialize;

use super::policy::{
    image_sha384_from_manifest, linux_payload_tdx_from_manifest, MeasurementPolicy, Policy,
    SnpMinTcb, TdxBootPolicy, TdxTcbStatus,
};
use super::VerifyError;
use crate::hexfmt;

/// Largest policy file accepted.
pub const MAX_POLICY_FILE_LEN: usize = 64 * 1024;

/// Every knob of a verification policy, each optional: what a policy file says, or what the
/// flags say. Unset knobs take the strict default ([`Policy::STRICT`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyKnobs {
    /// Expected measurements from this `manifest.json`.
    pub expect: Option<PathBuf>,
    /// Expected measurements, 96 hex characters each.
    pub measurements: Option<Vec<String>>,
    /// Accept any measurement.
    pub any_measurement: Option<bool>,
    /// Required REPORT_DATA, 128 hex characters.
    pub report_data: Option<String>,
    /// REPORT_DATA binding: the guest's X25519 HPKE public key (64 hex characters).
    pub hpke_pk: Option<String>,
    /// REPORT_DATA binding: the guest's Ed25519 receipt public key (64 hex characters).
    pub receipt_pk: Option<String>,
    /// REPORT_DATA binding: the nonce (64 hex characters).
    pub nonce: Option<String>,
    /// Accept debug-enabled guests.
    pub allow_debug: Option<bool>,
    /// SNP: minimum REPORTED_TCB, `bl=N,tee=N,snp=N,ucode=N`.
    pub snp_min_tcb: Option<String>,
    /// TDX: the worst accepted TCB status (`UpToDate`, `SWHardeningNeeded`, ...).
    pub tdx_min_tcb: Option<String>,
    /// TDX: the vCPU count the boot configuration must record.
    pub tdx_vcpus: Option<u32>,
    /// TDX: the least RAM (MiB) the boot configuration must record.
    pub tdx_min_ram_mib: Option<u64>,
    /// SNP: required VMPL.
    pub vmpl: Option<u32>,
    /// SNP: accept a guest policy that allows a migration agent.
    pub allow_migration_agent: Option<bool>,
    /// Accept insecure development evidence.
    pub allow_insecure_dev: Option<bool>,
    /// GPUs: at least this many attested GPUs in the evidence.
    pub require_gpus: Option<u32>,
    /// GPUs: allowed driver versions (e.g. `["550.90.07"]`); absent: any.
    pub gpu_driver_versions: Option<Vec<String>>,
    /// GPUs: allowed VBIOS versions (e.g. `["96.00.9f.00.01"]`); absent: any.
    pub gpu_vbios_versions: Option<Vec<String>>,
    /// GPUs: the driver and VBIOS RIM files (relative paths: to the policy file's directory).
    pub gpu_rims: Option<Vec<PathBuf>>,
    /// GPUs: accept the certificates without a revocation (OCSP) check, with a warning.
    pub gpu_skip_revocation: Option<bool>,
    /// GPUs: DER OCSP responses for the GPU chain (relative paths: to the policy file's
    /// directory).
    pub gpu_ocsp: Option<Vec<PathBuf>>,
}

/// Keys and nonce a policy pins; evidence verification checks the evidence carries them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pins {
    /// Required HPKE public key.
    pub hpke_pk: Option<[u8; 32]>,
    /// Required receipt public key.
    pub receipt_pk: Option<[u8; 32]>,
    /// Required nonce (freshness).
    pub nonce: Option<[u8; 32]>,
}

fn bad(m: impl Into<String>) -> VerifyError {
    VerifyError::Policy(m.into())
}

fn hex_field<const N: usize>(
    s: &Option<String>,
    key: &str,
) -> Result<Option<[u8; N]>, VerifyError> {
    s.as_deref()
        .map(|h| hexfmt::decode_array::<N>(h.trim()).map_err(|e| bad(format!("{key}: {e}"))))
        .transpose()
}

impl PolicyKnobs {
    /// No knob set (usable in constants; the same as [`PolicyKnobs::default`]).
    pub const NONE: PolicyKnobs = PolicyKnobs {
        expect: None,
        measurements: None,
        any_measurement: None,
        report_data: None,
        hpke_pk: None,
        receipt_pk: None,
        nonce: None,
        allow_debug: None,
        snp_min_tcb: None,
        tdx_min_tcb: None,
        tdx_vcpus: None,
        tdx_min_ram_mib: None,
        vmpl: None,
        allow_migration_agent: None,
        allow_insecure_dev: None,
        require_gpus: None,
        gpu_driver_versions: None,
        gpu_vbios_versions: None,
        gpu_rims: None,
        gpu_skip_revocation: None,
        gpu_ocsp: None,
    };

    /// Whether a measurement choice (`expect`, `measurements`, `any_measurement`) is made.
    pub fn chooses_measurement(&self) -> bool {
        self.expect.is_some() || self.measurements.is_some() || self.any_measurement.is_some()
    }

    /// Parses a TOML policy; a relative `expect` is resolved against `base_dir`. The error
    /// names the line, the column and the problem (e.g. the unknown key).
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Self, VerifyError> {
        let mut k: Self = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim();
            let at = e.span().map_or(String::new(), |s| {
                let start = s.start.min(text.len());
                let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
                let line = text[..start].matches('\n').count() + 1;
                let col = text[line_start..start].chars().count() + 1;
                // Name the key of that line unless the message already does.
                let line_text = text[line_start..].lines().next().unwrap_or_default();
                let key = line_text.split_once('=').map(|(k, _)| k.trim());
                match key {
                    Some(k) if !k.is_empty() && !msg.contains(k) => {
                        format!("line {line}, column {col}, key `{k}`: ")
                    }
                    _ => format!("line {line}, column {col}: "),
                }
            });
            bad(format!("{at}{msg}"))
        })?;
        if let Some(p) = &k.expect {
            if p.is_relative() {
                k.expect = Some(base_dir.join(p));
            }
        }
        for p in k.gpu_rims.iter_mut().chain(k.gpu_ocsp.iter_mut()).flatten() {
            if p.is_relative() {
                *p = base_dir.join(&*p);
            }
        }
        Ok(k)
    }

    /// Reads and parses a policy file (see the module docs).
    pub fn load(path: &Path) -> Result<Self, VerifyError> {
        let text = std::fs::read(path)
            .map_err(|e| bad(format!("cannot read policy file {}: {e}", path.display())))?;
        if text.len() > MAX_POLICY_FILE_LEN {
            return Err(bad(format!(
                "policy file {}: {} bytes, more than {MAX_POLICY_FILE_LEN}",
                path.display(),
                text.len()
            )));
        }
        let text = String::from_utf8(text)
            .map_err(|_| bad(format!("policy file {}: not UTF-8", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base)
            .map_err(|e| bad(format!("policy file {}: {}", path.display(), strip(&e))))
    }

    /// These knobs with every knob set in `flags` replacing ours. The measurement choice
    /// (`expect` / `measurements` / `any_measurement`) is replaced as a whole, and so is the
    /// REPORT_DATA choice (`report_data` versus `hpke_pk` / `receipt_pk` / `nonce`).
    pub fn overridden_by(mut self, flags: &PolicyKnobs) -> Self {
        if flags.chooses_measurement() {
            self.expect = flags.expect.clone();
            self.measurements = flags.measurements.clone();
            self.any_measurement = flags.any_measurement;
        }
        if flags.report_data.is_some() {
            (self.hpke_pk, self.receipt_pk, self.nonce) = (None, None, None);
        }
        if flags.hpke_pk.is_some() || flags.receipt_pk.is_some() || flags.nonce.is_some() {
            self.report_data = None;
        }
        macro_rules! take {
            ($($f:ident),*) => { $( if flags.$f.is_some() { self.$f = flags.$f.clone(); } )* };
        }
        take!(
            report_data,
            hpke_pk,
            receipt_pk,
            nonce,
            allow_debug,
            snp_min_tcb,
            tdx_min_tcb,
            tdx_vcpus,
            tdx_min_ram_mib,
            vmpl,
            allow_migration_agent,
            allow_insecure_dev,
            require_gpus,
            gpu_driver_versions,
            gpu_vbios_versions,
            gpu_rims,
            gpu_skip_revocation,
            gpu_ocsp
        );
        self
    }

    /// The measurement policy for `tee`; exactly one of
    /// `expect`, `measurements`, `any_measurement = true` must be given.
    pub fn measurement(&self, tee: TeeKind) -> Result<MeasurementPolicy, VerifyError> {
        let any = self.any_measurement == Some(true);
        let given = usize::from(self.expect.is_some())
            + usize::from(self.measurements.is_some())
            + usize::from(any);
        if given > 1 {
            return Err(bad(
                "give only one of expect (manifest.json), measurements, any_measurement",
            ));
        }
        if let Some(m) = &self.expect {
            let text = std::fs::read_to_string(m)
                .map_err(|e| bad(format!("cannot read manifest {}: {e}", m.display())))?;
            return MeasurementPolicy::from_manifest(&text, tee);
        }
        if let Some(list) = &self.measurements {
            if list.is_empty() {
                return Err(bad("measurements: empty list"));
            }
            return Ok(MeasurementPolicy::OneOf(
                list.iter()
                    .map(|h| {
                        hexfmt::decode_array::<48>(h.trim())
                            .map_err(|e| bad(format!("measurement {h:?}: {e}")))
                    })
                    .collect::<Result<_, _>>()?,
            ));
        }
        if any {
            return Ok(MeasurementPolicy::Any);
        }
        Err(bad(
            "choose a measurement policy: --expect manifest.json, --measurement HEX or \
             --any-measurement (policy file: expect, measurements or any_measurement)",
        ))
    }

    /// The keys and nonce pinned by the policy (each optional).
    pub fn pins(&self) -> Result<Pins, VerifyError> {
        Ok(Pins {
            hpke_pk: hex_field(&self.hpke_pk, "hpke_pk")?,
            receipt_pk: hex_field(&self.receipt_pk, "receipt_pk")?,
            nonce: hex_field(&self.nonce, "nonce")?,
        })
    }

    /// The required REPORT_DATA: `report_data`, or the binding of `hpke_pk`, `receipt_pk` and
    /// `nonce` (all three), or none.
    pub fn expected_report_data(&self) -> Result<Option<[u8; 64]>, VerifyError> {
        let pins = self.pins()?;
        let rd = hex_field::<64>(&self.report_data, "report_data")?;
        match (rd, pins.hpke_pk, pins.receipt_pk, pins.nonce) {
            (Some(_), None, None, None) => Ok(rd),
            (Some(_), ..) => Err(bad(
                "give either report_data or hpke_pk + receipt_pk + nonce, not both",
            )),
            (None, Some(h), Some(r), Some(n)) => {
                Ok(Some(pupa_protocol::evidence::report_data(&h, &r, &n)))
            }
            (None, None, None, None) => Ok(None),
            (None, ..) => Err(bad(
                "hpke_pk, receipt_pk and nonce go together (the REPORT_DATA binding needs all three)",
            )),
        }
    }

    /// Everything but REPORT_DATA: measurement, debug, TCB, VMPL, migration, dev.
    pub fn policy_without_report_data(&self, tee: TeeKind) -> Result<Policy, VerifyError> {
        let mut p = Policy {
            measurement: self.measurement(tee)?,
            ..Policy::STRICT
        };
        if let Some(b) = self.allow_debug {
            p.allow_debug = b;
        }
        if let Some(v) = self.vmpl {
            p.snp_vmpl = v;
        }
        if let Some(b) = self.allow_migration_agent {
            p.allow_migration_agent = b;
        }
        if let Some(b) = self.allow_insecure_dev {
            p.allow_insecure_dev = b;
        }
        if let Some(t) = &self.snp_min_tcb {
            p.snp_min_tcb = Some(t.parse::<SnpMinTcb>()?);
        }
        if let Some(t) = &self.tdx_min_tcb {
            p.tdx_min_status = t.trim().parse::<TdxTcbStatus>()?;
        }
        if tee == TeeKind::Tdx {
            p.tdx_boot = self.tdx_boot_policy()?;
        }
        p.gpu = self.gpu_policy();
        Ok(p)
    }

    /// What the GPUs must show (`require_gpus`, `gpu_driver_versions`, `gpu_vbios_versions`).
    pub fn gpu_policy(&self) -> GpuPolicy {
        let lower = |v: &Option<Vec<String>>| {
            v.iter()
                .flatten()
                .map(|s| s.trim().to_ascii_lowercase())
                .collect()
        };
        GpuPolicy {
            require_gpus: self.require_gpus.unwrap_or(0),
            driver_versions: lower(&self.gpu_driver_versions),
            vbios_versions: lower(&self.gpu_vbios_versions),
        }
    }

    /// TDX: the boot-configuration requirements (`tdx_vcpus`, `tdx_min_ram_mib`, and the image
    /// hash and Linux payload RTMRs of the `expect` manifest).
    pub fn tdx_boot_policy(&self) -> Result<TdxBootPolicy, VerifyError> {
        let (image_sha384, linux) = match &self.expect {
            Some(m) => {
                let text = std::fs::read_to_string(m)
                    .map_err(|e| bad(format!("cannot read manifest {}: {e}", m.display())))?;
                (
                    image_sha384_from_manifest(&text)?,
                    linux_payload_tdx_from_manifest(&text)?,
                )
            }
            None => (None, None),
        };
        let min_ram_bytes = self
            .tdx_min_ram_mib
            .map(|mib| {
                mib.checked_mul(1 << 20)
                    .ok_or_else(|| bad(format!("tdx_min_ram_mib {mib}: too large")))
            })
            .transpose()?;
        Ok(TdxBootPolicy {
            image_sha384,
            vcpus: self.tdx_vcpus,
            min_ram_bytes,
            linux,
        })
    }

    /// The whole policy for `tee`, REPORT_DATA included ([`Self::expected_report_data`]).
    pub fn policy(&self, tee: TeeKind) -> Result<Policy, VerifyError> {
        Ok(Policy {
            report_data: self.expected_report_data()?,
            ..self.policy_without_report_data(tee)?
        })
    }
}

/// The message of a policy error without its `policy: ` prefix.
fn strip(e: &VerifyError) -> String {
    match e {
        VerifyError::Policy(m) => m.clone(),
        other => other.to_string(),
    }
}
