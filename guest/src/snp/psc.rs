//! SNP page-state changes (GHCB spec 56421 §4.1.6 "SNP Page State Change") and the PVALIDATE
//! plan (AMD APM Vol. 3 "PVALIDATE"; Vol. 2 §15.36.6 "Page Validation").
//!
//! The page-state change descriptor lives in the GHCB shared buffer; its layout is
//! [`pupa_spec::snp::PscDesc`]: CUR_ENTRY, END_ENTRY, then up to 253 entries (CUR_PAGE 11:0,
//! GFN 51:12, OPERATION 55:52 (1 private, 2 shared), PAGE_SIZE 56 (1 = 2 MiB)).
//!
//! SW_EXITCODE 0x8000_0010, SW_EXITINFO1/2 = 0, SW_SCRATCH = GPA of the shared buffer. The
//! hypervisor advances CUR_ENTRY (and CUR_PAGE inside a 2 MiB entry) as it works and may return
//! before the end; SW_EXITINFO2 ≠ 0 is an error. The guest re-issues the remainder, from its
//! own private copy of the entries, after checking that the hypervisor's progress is plausible.
//!
//! Order (as Linux `set_pages_state`): to make memory private, change its state and then
//! PVALIDATE it; to share memory, rescind validation first and then change its state.

use core::mem::offset_of;

use pupa_spec::snp::psc::{entry, PscDesc, PscHeader};
use zerocopy::little_endian::U64;
use zerocopy::{FromBytes, IntoBytes};

use super::ghcb::{exit, Field, Ghcb, GhcbError, PageOp, SHARED_BUFFER_LEN};

/// Most entries in one descriptor: (2032 − 8) / 8.
pub const MAX_ENTRIES: usize = pupa_spec::snp::psc::MAX_ENTRIES;
const _: () = assert!(size_of::<PscDesc>() == SHARED_BUFFER_LEN);
/// Offset of entry 0 in the descriptor.
const ENTRIES: usize = offset_of!(PscDesc, entries);
/// 4 KiB.
pub const PAGE_4K: u64 = 0x1000;
/// 2 MiB.
pub const PAGE_2M: u64 = 0x20_0000;
/// Pages of 4 KiB in 2 MiB.
const PAGES_PER_2M: u16 = 512;

/// PVALIDATE return codes (APM Vol. 3 "PVALIDATE", RAX on completion).
pub mod pvalidate_rc {
    /// Success.
    pub const SUCCESS: u32 = 0;
    /// Invalid input (address, size).
    pub const FAIL_INPUT: u32 = 1;
    /// A 2 MiB request on memory the RMP holds as 4 KiB pages.
    pub const FAIL_SIZEMISMATCH: u32 = 6;
}

/// One descriptor entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PscEntry {
    /// Guest frame number (GPA >> 12).
    pub gfn: u64,
    /// Requested state.
    pub op: PageOp,
    /// 2 MiB entry (else 4 KiB).
    pub size_2m: bool,
    /// Pages of this entry already processed (by the hypervisor).
    pub cur_page: u16,
}

impl PscEntry {
    /// The entry as a u64.
    pub fn encode(&self) -> u64 {
        entry::encode(self.cur_page, self.gfn, self.op as u8, self.size_2m)
    }

    fn pages(&self) -> u16 {
        if self.size_2m {
            PAGES_PER_2M
        } else {
            1
        }
    }
}

/// Why a page-state change or validation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PscError {
    /// The range is not 4 KiB aligned, empty-but-inverted, or beyond 52-bit GPAs.
    #[error("bad range {start:#x}..{end:#x}")]
    BadRange {
        /// Start.
        start: u64,
        /// End.
        end: u64,
    },
    /// The GHCB exchange failed (SW_EXITINFO1).
    #[error("GHCB: {0}")]
    Ghcb(#[from] GhcbError),
    /// SW_EXITINFO2 reports an error.
    #[error("hypervisor page state change error {0:#x}")]
    Hypervisor(u64),
    /// The descriptor header came back inconsistent (END_ENTRY changed, CUR_ENTRY past the
    /// end, CUR_PAGE backwards or past the entry, or an entry rewritten).
    #[error("hypervisor returned an inconsistent descriptor ({0})")]
    Inconsistent(&'static str),
    /// The hypervisor returned without processing anything.
    #[error("hypervisor made no progress")]
    NoProgress,
    /// PVALIDATE reported FAIL_INPUT.
    #[error("PVALIDATE FAIL_INPUT at {0:#x}")]
    PvalidateInput(u64),
    /// PVALIDATE returned another error code.
    #[error("PVALIDATE error {rc} at {addr:#x}")]
    Pvalidate {
        /// Return code.
        rc: u32,
        /// Page.
        addr: u64,
    },
    /// PVALIDATE left the page unchanged (CF = 1): it was already in the requested state,
    /// which for pupa means the hypervisor remapped memory under it.
    #[error("PVALIDATE did not change the page at {0:#x} (already in that state)")]
    PvalidateNoUpdate(u64),
}

fn check_range(start: u64, end: u64) -> Result<(), PscError> {
    if !start.is_multiple_of(PAGE_4K)
        || !end.is_multiple_of(PAGE_4K)
        || start > end
        || end > 1 << 52
    {
        return Err(PscError::BadRange { start, end });
    }
    Ok(())
}

/// The entries covering `[start, end)`: 2 MiB where a 2 MiB page fits aligned, 4 KiB elsewhere.
#[derive(Debug, Clone)]
pub struct Plan {
    next: u64,
    end: u64,
    op: PageOp,
}

/// Plans the entries for `[start, end)` (4 KiB aligned).
pub fn plan(start: u64, end: u64, op: PageOp) -> Result<Plan, PscError> {
    check_range(start, end)?;
    Ok(Plan {
        next: start,
        end,
        op,
    })
}

impl Iterator for Plan {
    type Item = PscEntry;
    fn next(&mut self) -> Option<PscEntry> {
        if self.next >= self.end {
            return None;
        }
        let size_2m = self.next.is_multiple_of(PAGE_2M) && self.end - self.next >= PAGE_2M;
        let e = PscEntry {
            gfn: self.next >> 12,
            op: self.op,
            size_2m,
            cur_page: 0,
        };
        self.next += if size_2m { PAGE_2M } else { PAGE_4K };
        Some(e)
    }
}

/// Writes a descriptor of `entries` (1..=253) into the shared buffer, CUR_ENTRY 0.
pub fn write_descriptor(buf: &mut [u8], entries: &[PscEntry]) {
    debug_assert!(!entries.is_empty() && entries.len() <= MAX_ENTRIES);
    let header = PscHeader {
        cur_entry: 0.into(),
        end_entry: ((entries.len() - 1) as u16).into(),
        _reserved: 0.into(),
    };
    buf[..ENTRIES].copy_from_slice(header.as_bytes());
    for (i, e) in entries.iter().enumerate() {
        let at = ENTRIES + 8 * i;
        buf[at..at + 8].copy_from_slice(&e.encode().to_le_bytes());
    }
}

/// Changes the state of `[start, end)` to `op` through the GHCB (SNP_PSC exits), in
/// descriptors of at most 253 entries. `shared_buffer_gpa` is the GPA of the GHCB's shared
/// buffer (GHCB GPA + 0x800); `vmgexit` runs VMGEXIT with the GHCB registered. Runs at boot
/// (accepting RAM, sharing the DMA window), never inside the #VC handler.
pub fn change_state(
    ghcb: &mut Ghcb<'_>,
    shared_buffer_gpa: u64,
    start: u64,
    end: u64,
    op: PageOp,
    vmgexit: &mut dyn FnMut(&mut Ghcb<'_>),
) -> Result<(), PscError> {
    let mut plan = plan(start, end, op)?;
    let mut batch = [PscEntry {
        gfn: 0,
        op,
        size_2m: false,
        cur_page: 0,
    }; MAX_ENTRIES];
    loop {
        let mut n = 0;
        for e in plan.by_ref().take(MAX_ENTRIES) {
            batch[n] = e;
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        submit(ghcb, shared_buffer_gpa, &mut batch[..n], vmgexit)?;
    }
}

/// Submits one batch until the hypervisor has processed all of it.
fn submit(
    ghcb: &mut Ghcb<'_>,
    shared_buffer_gpa: u64,
    entries: &mut [PscEntry],
    vmgexit: &mut dyn FnMut(&mut Ghcb<'_>),
) -> Result<(), PscError> {
    let mut done = 0;
    while done < entries.len() {
        let rest = &entries[done..];
        ghcb.reset();
        write_descriptor(ghcb.shared_buffer(), rest);
        ghcb.set(Field::SwExitCode, exit::SNP_PSC);
        ghcb.set(Field::SwExitInfo1, 0);
        ghcb.set(Field::SwExitInfo2, 0);
        ghcb.set(Field::SwScratch, shared_buffer_gpa);
        vmgexit(ghcb);
        ghcb.exit_result()?;
        match ghcb.exit_info2_raw() {
            0 => {}
            e => return Err(PscError::Hypervisor(e)),
        }
        // The shared buffer is host-writable: copy the header out once and check the copy
        // (no typed reference into it, no second read of a field already checked).
        let buf = ghcb.shared_buffer();
        let (h, _) = PscHeader::read_from_prefix(buf)
            .map_err(|_| PscError::Inconsistent("shared buffer shorter than a header"))?;
        let (cur, last) = (
            usize::from(h.cur_entry.get()),
            usize::from(h.end_entry.get()),
        );
        if last != rest.len() - 1 {
            return Err(PscError::Inconsistent("END_ENTRY changed"));
        }
        if cur > last + 1 {
            return Err(PscError::Inconsistent("CUR_ENTRY past END_ENTRY"));
        }
        if cur == last + 1 {
            return Ok(());
        }
        // Entries before `cur` are done; entry `cur` may be partly done.
        let want = rest[cur];
        let at = ENTRIES + 8 * cur;
        let got = U64::read_from_bytes(&buf[at..at + 8])
            .map_err(|_| PscError::Inconsistent("entry outside the shared buffer"))?
            .get();
        if got & !0xFFF != want.encode() & !0xFFF {
            return Err(PscError::Inconsistent("entry rewritten"));
        }
        let page = (got & 0xFFF) as u16;
        if page > want.pages() {
            return Err(PscError::Inconsistent("CUR_PAGE past the entry"));
        }
        if cur == 0 && page < want.cur_page {
            return Err(PscError::Inconsistent("CUR_PAGE went backwards"));
        }
        if cur == 0 && page == want.cur_page {
            return Err(PscError::NoProgress);
        }
        done += cur;
        if page == want.pages() {
            done += 1;
        } else {
            entries[done].cur_page = page;
        }
    }
    Ok(())
}

/// PVALIDATEs (or rescinds, `validate` = false) every page of `[start, end)`, 2 MiB at a time
/// where aligned; a 2 MiB page the RMP holds as 4 KiB pages (FAIL_SIZEMISMATCH) is retried as
/// 512 4 KiB pages. `pvalidate(addr, size_2m, validate)` is the instruction, returning (RAX, CF).
/// Runs at boot, never inside the #VC handler.
pub fn pvalidate_range(
    start: u64,
    end: u64,
    validate: bool,
    pvalidate: &mut dyn FnMut(u64, bool, bool) -> (u32, bool),
) -> Result<(), PscError> {
    let mut one = |addr: u64, size_2m: bool| -> Result<bool, PscError> {
        match pvalidate(addr, size_2m, validate) {
            (pvalidate_rc::SUCCESS, false) => Ok(true),
            (pvalidate_rc::SUCCESS, true) => Err(PscError::PvalidateNoUpdate(addr)),
            (pvalidate_rc::FAIL_SIZEMISMATCH, _) if size_2m => Ok(false),
            (pvalidate_rc::FAIL_INPUT, _) => Err(PscError::PvalidateInput(addr)),
            (rc, _) => Err(PscError::Pvalidate { rc, addr }),
        }
    };
    for e in plan(start, end, PageOp::Private)? {
        let addr = e.gfn << 12;
        if e.size_2m && !one(addr, true)? {
            for i in 0..u64::from(PAGES_PER_2M) {
                one(addr + i * PAGE_4K, false)?;
            }
        } else if !e.size_2m {
            one(addr, false)?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "psc_tests.rs"]
mod tests;
