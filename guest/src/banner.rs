//! What the guest prints on the serial console: the boot banner and exception reports.
//!
//! The lines are a contract with the host tools and tests (`pupa-host`, `tests/`): each banner
//! line starts with `pupa: `; once the guest serves (evidence published, listening) it prints
//! exactly `pupa: ready`; an exception report starts with `pupa: EXCEPTION`.

use core::fmt;

use crate::clock::{Calibration, Tsc};
use crate::entropy::Source;
use crate::tee::TeeKind;

/// Everything the banner states about this boot.
pub struct BootReport<'a> {
    pub version: &'a str,
    /// SHA-384 of the firmware image as the guest reads it from its own ROM.
    pub image_sha384: [u8; 48],
    pub image_size: u64,
    pub tee: TeeKind,
    /// How the CPU entered the image: `false` 16-bit reset, `true` 32-bit (TDX) entry.
    pub entered_32bit: bool,
    /// Where the memory map came from ("fw_cfg etc/e820", "TD HOB").
    pub memmap_source: &'a str,
    pub ram_bytes: u64,
    pub unaccepted_bytes: u64,
    pub heap_bytes: u64,
    pub entropy: Source,
    pub tsc: Tsc,
    /// Time from the first Rust instruction to the banner, microseconds.
    pub boot_us: u64,
}

/// Lowercase hex of a byte string, for `Display`.
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for BootReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pupa: pupa guest {} (x86_64, firmware boot)",
            self.version
        )?;
        writeln!(
            f,
            "pupa: image sha384 {} ({} KiB, read back from ROM)",
            Hex(&self.image_sha384),
            self.image_size / 1024
        )?;
        writeln!(f, "pupa: tee {}", crate::tee::banner_name(self.tee))?;
        writeln!(
            f,
            "pupa: entry {}",
            if self.entered_32bit {
                "32-bit (TDX)"
            } else {
                "16-bit reset vector"
            }
        )?;
        writeln!(
            f,
            "pupa: memory {} MiB ram, {} MiB unaccepted (from {}), heap {} KiB",
            self.ram_bytes >> 20,
            self.unaccepted_bytes >> 20,
            self.memmap_source,
            self.heap_bytes >> 10
        )?;
        writeln!(
            f,
            "pupa: entropy {} (health-tested)",
            match self.entropy {
                Source::Rdseed => "rdseed",
                Source::Rdrand => "rdrand",
            }
        )?;
        let how = match self.tsc.calibration {
            Calibration::Cpuid15 => "cpuid 0x15",
            Calibration::Pit { .. } => "8254 pit",
        };
        writeln!(
            f,
            "pupa: tsc {}.{:03} MHz (from {})",
            self.tsc.hz / 1_000_000,
            (self.tsc.hz / 1_000) % 1_000,
            how
        )?;
        write!(
            f,
            "pupa: boot {}.{:03} ms",
            self.boot_us / 1000,
            self.boot_us % 1000
        )
    }
}

/// Architectural exception names (SDM Vol. 3A table 6-1).
pub fn exception_name(vector: u8) -> &'static str {
    match vector {
        0 => "#DE divide error",
        1 => "#DB debug",
        2 => "NMI",
        3 => "#BP breakpoint",
        4 => "#OF overflow",
        5 => "#BR bound range",
        6 => "#UD invalid opcode",
        7 => "#NM device not available",
        8 => "#DF double fault",
        10 => "#TS invalid TSS",
        11 => "#NP segment not present",
        12 => "#SS stack fault",
        13 => "#GP general protection",
        14 => "#PF page fault",
        16 => "#MF x87 error",
        17 => "#AC alignment check",
        18 => "#MC machine check",
        19 => "#XM SIMD exception",
        20 => "#VE virtualization exception",
        21 => "#CP control protection",
        28 => "#HV hypervisor injection",
        29 => "#VC VMM communication",
        30 => "#SX security exception",
        _ => "reserved/unknown",
    }
}

/// A CPU exception, as reported on the console before the VM exits.
pub struct ExceptionReport {
    pub vector: u8,
    pub error_code: Option<u64>,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    /// The faulting address, for #PF.
    pub cr2: Option<u64>,
}

impl fmt::Display for ExceptionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pupa: EXCEPTION vector {} ({})",
            self.vector,
            exception_name(self.vector)
        )?;
        match self.error_code {
            Some(e) => write!(f, " error {e:#x}")?,
            None => write!(f, " error none")?,
        }
        write!(
            f,
            " rip {:#018x} cs {:#x} rflags {:#x} rsp {:#018x}",
            self.rip, self.cs, self.rflags, self.rsp
        )?;
        if let Some(a) = self.cr2 {
            write!(f, " cr2 {a:#018x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn banner_lines() {
        let r = BootReport {
            version: "0.1.0",
            image_sha384: [0xab; 48],
            image_size: 512 * 1024,
            tee: TeeKind::Dev,
            entered_32bit: false,
            memmap_source: "fw_cfg etc/e820",
            ram_bytes: 256 << 20,
            unaccepted_bytes: 0,
            heap_bytes: 3 << 20,
            entropy: Source::Rdrand,
            tsc: Tsc {
                hz: 2_345_678_000,
                calibration: Calibration::Pit { ticks: 5966 },
            },
            boot_us: 12_345,
        };
        let s = r.to_string();
        assert!(s.lines().all(|l| l.starts_with("pupa: ")));
        assert_eq!(s.lines().count(), 8);
        assert!(s.contains(&"ab".repeat(48)));
        assert!(s.contains("tsc 2345.678 MHz"));
        assert!(s.contains("boot 12.345 ms"));
    }

    #[test]
    fn exception_line() {
        let r = ExceptionReport {
            vector: 14,
            error_code: Some(2),
            rip: 0x1234,
            cs: 8,
            rflags: 0x46,
            rsp: 0x8000,
            cr2: Some(0xdead000),
        };
        let s = r.to_string();
        assert!(s.starts_with(
            "pupa: EXCEPTION vector 14 (#PF page fault) error 0x2 rip 0x0000000000001234"
        ));
        assert!(s.ends_with("cr2 0x000000000dead000"));
    }
}
