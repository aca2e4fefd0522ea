//! Human-readable rendering of a parsed image (`pupa-image inspect`).

use core::fmt;

use super::Firmware;
use crate::guid;

impl fmt::Debug for Firmware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Firmware")
            .field("len", &self.data.len())
            .field("entries", &self.entries)
            .field("sev_sections", &self.sev_sections)
            .field("tdvf_sections", &self.tdvf_sections)
            .finish()
    }
}

impl fmt::Display for Firmware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "size       {:#x} ({} KiB), mapped at {:#x}..4GiB",
            self.len(),
            self.len() / 1024,
            self.load_gpa()
        )?;
        writeln!(f, "\nOVMF footer table ({} entries)", self.entries.len())?;
        writeln!(f, "  {:<38} {:<22} {:>6}  data", "GUID", "name", "offset")?;
        for e in &self.entries {
            let name = guid::known_name(&e.guid).unwrap_or("?");
            let shown = &e.data[..e.data.len().min(16)];
            let more = if e.data.len() > 16 { "…" } else { "" };
            writeln!(
                f,
                "  {:<38} {:<22} {:>#6x}  {}{more}",
                e.guid.to_string(),
                name,
                e.offset,
                crate::hexfmt::encode(shown)
            )?;
        }
        if let Some(eip) = self.sev_es_reset_eip() {
            writeln!(f, "\nSEV-ES AP reset address {eip:#010x}")?;
        }
        if let Some(h) = self.sev_hash_table() {
            writeln!(
                f,
                "SEV hash table          gpa {:#x} size {:#x}",
                h.gpa, h.size
            )?;
        }
        if let Some(s) = self.sev_secret_block() {
            writeln!(
                f,
                "SEV secret block        gpa {:#x} size {:#x}",
                s.gpa, s.size
            )?;
        }
        match self.sev_sections() {
            Some(secs) => {
                writeln!(f, "\nSEV metadata (ASEV, {} sections)", secs.len())?;
                writeln!(
                    f,
                    "  {:>2}  {:<18} {:>12} {:>10}",
                    "#", "type", "gpa", "size"
                )?;
                for (i, s) in secs.iter().enumerate() {
                    writeln!(
                        f,
                        "  {i:>2}  {:<18} {:>#12x} {:>#10x}",
                        s.kind.name(),
                        s.gpa,
                        s.size
                    )?;
                }
            }
            None => writeln!(f, "\nSEV metadata: none")?,
        }
        match self.tdvf_sections() {
            Some(secs) => {
                writeln!(f, "\nTDX metadata (TDVF, {} sections)", secs.len())?;
                writeln!(
                    f,
                    "  {:>2}  {:<9} {:>10} {:>10} {:>12} {:>10}  attributes",
                    "#", "type", "data off", "raw size", "gpa", "mem size"
                )?;
                for (i, s) in secs.iter().enumerate() {
                    let mut attrs = Vec::new();
                    if s.mr_extend() {
                        attrs.push("MR.EXTEND");
                    }
                    if s.page_aug() {
                        attrs.push("PAGE.AUG");
                    }
                    writeln!(
                        f,
                        "  {i:>2}  {:<9} {:>#10x} {:>#10x} {:>#12x} {:>#10x}  {}",
                        s.kind.name(),
                        s.data_offset,
                        s.raw_size,
                        s.gpa,
                        s.mem_size,
                        if attrs.is_empty() {
                            "-".to_string()
                        } else {
                            attrs.join("|")
                        }
                    )?;
                }
            }
            None => writeln!(f, "\nTDX metadata: none")?,
        }
        Ok(())
    }
}
