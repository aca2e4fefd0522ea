//! The one TEE kind shared by the guest, the protocol, the host loader and the verifier.
//!
//! Its text form is the spelling every command line, manifest and policy uses: `dev`, `snp`,
//! `tdx` ([`TeeKind::name`]); `none` is accepted as another name for `dev` (the host loader's
//! `--tee none` predates the shared kind).

use core::fmt;
use core::str::FromStr;

/// Which trusted execution environment a pupa guest runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TeeKind {
    /// No TEE: a plain VM for development. The guest's evidence is the insecure development
    /// report (`pupa_protocol::evidence::DevReport`), which verifiers refuse unless told to
    /// accept insecure evidence.
    Dev,
    /// AMD SEV-SNP (SNP ABI 56860; the guest's evidence is an SNP attestation report).
    Snp,
    /// Intel TDX (TDX module ABI; the guest's evidence is a TDX quote with the RTMR event log).
    Tdx,
}

impl TeeKind {
    /// Every kind, in declaration order.
    pub const ALL: [TeeKind; 3] = [TeeKind::Dev, TeeKind::Snp, TeeKind::Tdx];

    /// The kind's name: `"dev"`, `"snp"` or `"tdx"` (what [`FromStr`] parses back).
    pub const fn name(self) -> &'static str {
        match self {
            TeeKind::Dev => "dev",
            TeeKind::Snp => "snp",
            TeeKind::Tdx => "tdx",
        }
    }

    /// Whether the kind is a hardware TEE (everything but [`TeeKind::Dev`]).
    pub const fn is_confidential(self) -> bool {
        !matches!(self, TeeKind::Dev)
    }
}

impl fmt::Display for TeeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A string that names no [`TeeKind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownTeeKind;

impl fmt::Display for UnknownTeeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown TEE kind (expected dev, snp or tdx; none means dev)")
    }
}

impl core::error::Error for UnknownTeeKind {}

impl FromStr for TeeKind {
    type Err = UnknownTeeKind;

    /// Parses [`TeeKind::name`], and `none` as [`TeeKind::Dev`]. Case-sensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "dev" | "none" => Ok(TeeKind::Dev),
            "snp" => Ok(TeeKind::Snp),
            "tdx" => Ok(TeeKind::Tdx),
            _ => Err(UnknownTeeKind),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in TeeKind::ALL {
            assert_eq!(k.name().parse(), Ok(k));
        }
        assert_eq!(
            TeeKind::ALL.map(TeeKind::name),
            ["dev", "snp", "tdx"],
            "the CLI, manifest and policy spelling"
        );
    }

    #[test]
    fn none_is_dev_and_others_are_refused() {
        assert_eq!("none".parse(), Ok(TeeKind::Dev));
        for bad in ["", "SNP", "sev", "sev-snp", "tdx ", "plain"] {
            assert_eq!(bad.parse::<TeeKind>(), Err(UnknownTeeKind), "{bad:?}");
        }
        assert!(!TeeKind::Dev.is_confidential());
        assert!(TeeKind::Snp.is_confidential() && TeeKind::Tdx.is_confidential());
    }
}
