//! The Guest-Hypervisor Communication Block (AMD GHCB specification 56421, rev 2.03): the MSR
//! protocol (§2.3.1) and the GHCB page (§2.5, Table 3 "GHCB layout"), as pure encode/decode
//! functions over values the firmware moves through the GHCB MSR (0xC001_0130) and VMGEXIT.
//!
//! Everything the hypervisor writes is untrusted: every response is checked for the response
//! code the request asked for, and every GHCB field is read only when the hypervisor marked it
//! valid. Offsets cross-checked against Linux `arch/x86/include/asm/svm.h` (`struct
//! ghcb_save_area`) and Unikraft's `ghcb.h`.

/// MSR C001_0130: the GHCB MSR (GHCB spec §2.2; AMD APM Vol. 2 §15.35.9).
pub const MSR_GHCB: u32 = 0xC001_0130;

/// The GHCB protocol version pupa speaks (version 2 is required for SEV-SNP, GHCB spec §2.2).
pub const GHCB_PROTOCOL_VERSION: u16 = 2;

/// GHCBInfo field (bits 11:0) values of the MSR protocol (GHCB spec §2.3.1, Table 2).
pub mod info {
    /// SEV information response.
    pub const SEV_INFO_RESP: u64 = 0x001;
    /// SEV information request.
    pub const SEV_INFO_REQ: u64 = 0x002;
    /// CPUID request.
    pub const CPUID_REQ: u64 = 0x004;
    /// CPUID response.
    pub const CPUID_RESP: u64 = 0x005;
    /// Register GHCB GPA request (SNP).
    pub const REGISTER_GPA_REQ: u64 = 0x012;
    /// Register GHCB GPA response (SNP).
    pub const REGISTER_GPA_RESP: u64 = 0x013;
    /// SNP page state change request.
    pub const PSC_REQ: u64 = 0x014;
    /// SNP page state change response.
    pub const PSC_RESP: u64 = 0x015;
    /// SNP hypervisor feature request (GHCB protocol version 2).
    pub const HV_FEATURES_REQ: u64 = 0x080;
    /// SNP hypervisor feature response.
    pub const HV_FEATURES_RESP: u64 = 0x081;
    /// Termination request.
    pub const TERM_REQ: u64 = 0x100;
}

const INFO_MASK: u64 = 0xFFF;
const PAGE_MASK: u64 = 0xFFF;

/// Termination reason code sets (GHCB spec §2.3.1, "Termination Request"): set 0 holds the
/// general SEV-ES codes; set 1 is free for the guest's own codes (Linux uses it for its own).
pub mod term {
    /// Reason code set 0: general.
    pub const SET_GENERAL: u8 = 0;
    /// Set 0 code 0: general termination request.
    pub const GENERAL: u8 = 0;
    /// Set 0 code 1: the SEV-ES / GHCB protocol range is not supported.
    pub const PROTOCOL_UNSUPPORTED: u8 = 1;
    /// Set 0 code 2: SEV-SNP features not supported.
    pub const SNP_UNSUPPORTED: u8 = 2;
    /// Reason code set 1: pupa's own codes (below).
    pub const SET_PUPA: u8 = 1;
    /// Set 1: a #VC could not be handled (unsupported exit or malformed instruction).
    pub const VC_UNHANDLED: u8 = 1;
    /// Set 1: the hypervisor answered a #VC request with an error or malformed data.
    pub const VC_HYPERVISOR: u8 = 2;
    /// Set 1: GHCB registration failed.
    pub const GHCB_REGISTER: u8 = 3;
    /// Set 1: a page-state change or PVALIDATE failed.
    pub const PAGE_STATE: u8 = 4;
    /// Set 1: the Linux payload differs from the launch-measured SEV hashes table, or the
    /// table is missing.
    pub const KERNEL_HASHES: u8 = 5;
}

/// Why an MSR-protocol response is unacceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MsrProtocolError {
    /// The GHCBInfo field is not the response the request asked for.
    #[error("GHCB MSR response code {got:#x}, want {want:#x}")]
    UnexpectedCode {
        /// Found.
        got: u64,
        /// Expected.
        want: u64,
    },
    /// A CPUID response names another register than the one requested.
    #[error("GHCB MSR CPUID response for register {got}, want {want}")]
    WrongRegister {
        /// Found.
        got: u8,
        /// Expected.
        want: u8,
    },
    /// The registered GHCB GFN is not the one requested.
    #[error("GHCB registered at GFN {got:#x}, want {want:#x}")]
    GpaMismatch {
        /// Found.
        got: u64,
        /// Expected.
        want: u64,
    },
    /// The hypervisor reported a page-state change error.
    #[error("page state change failed with error {0:#x}")]
    PscFailed(u32),
    /// The hypervisor's GHCB protocol range does not include the version pupa needs.
    #[error("GHCB protocol versions {min}..={max} do not include {GHCB_PROTOCOL_VERSION}")]
    UnsupportedVersion {
        /// Minimum supported by the hypervisor.
        min: u16,
        /// Maximum supported by the hypervisor.
        max: u16,
    },
    /// An address is not 4 KiB aligned.
    #[error("address {0:#x} is not page aligned")]
    Unaligned(u64),
    /// The hypervisor's feature bitmap lacks SEV-SNP support.
    #[error("hypervisor features {0:#x} lack SEV-SNP (bit 0)")]
    NoSnpSupport(u64),
}

fn expect_code(msr: u64, want: u64) -> Result<(), MsrProtocolError> {
    let got = msr & INFO_MASK;
    if got == want {
        Ok(())
    } else {
        Err(MsrProtocolError::UnexpectedCode { got, want })
    }
}

/// SEV information response (GHCB spec §2.3.1): `[63:48]` maximum and `[47:32]` minimum
/// protocol version, `[31:24]` the C-bit position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SevInfo {
    /// Highest GHCB protocol version the hypervisor supports.
    pub max_version: u16,
    /// Lowest GHCB protocol version the hypervisor supports.
    pub min_version: u16,
    /// Page-table encryption bit position (the hypervisor's claim; the trusted value is the
    /// CPUID page's leaf 0x8000_001F).
    pub c_bit: u8,
}

/// The SEV information request (no data).
pub const fn sev_info_request() -> u64 {
    info::SEV_INFO_REQ
}

/// Decodes a SEV information response and checks that version 2 is in range.
pub fn sev_info_response(msr: u64) -> Result<SevInfo, MsrProtocolError> {
    expect_code(msr, info::SEV_INFO_RESP)?;
    let i = SevInfo {
        max_version: (msr >> 48) as u16,
        min_version: (msr >> 32) as u16,
        c_bit: (msr >> 24) as u8,
    };
    if !(i.min_version..=i.max_version).contains(&GHCB_PROTOCOL_VERSION) {
        return Err(MsrProtocolError::UnsupportedVersion {
            min: i.min_version,
            max: i.max_version,
        });
    }
    Ok(i)
}

/// The register a CPUID MSR-protocol request asks for (bits 31:30).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CpuidReg {
    /// EAX.
    Eax = 0,
    /// EBX.
    Ebx = 1,
    /// ECX.
    Ecx = 2,
    /// EDX.
    Edx = 3,
}

/// CPUID request (GHCB spec §2.3.1): `[63:32]` function, `[31:30]` register, `[11:0]` 0x004.
/// The MSR protocol has no subleaf: only subleaf 0 can be asked for.
pub const fn cpuid_request(leaf: u32, reg: CpuidReg) -> u64 {
    (leaf as u64) << 32 | (reg as u64) << 30 | info::CPUID_REQ
}

/// CPUID response: `[63:32]` the register value, `[31:30]` the register, `[11:0]` 0x005.
pub fn cpuid_response(msr: u64, reg: CpuidReg) -> Result<u32, MsrProtocolError> {
    expect_code(msr, info::CPUID_RESP)?;
    let got = ((msr >> 30) & 3) as u8;
    if got != reg as u8 {
        return Err(MsrProtocolError::WrongRegister {
            got,
            want: reg as u8,
        });
    }
    Ok((msr >> 32) as u32)
}

/// Register GHCB GPA request: `[63:12]` the GHCB's GFN, `[11:0]` 0x012.
pub fn register_ghcb_request(gpa: u64) -> Result<u64, MsrProtocolError> {
    if gpa & PAGE_MASK != 0 {
        return Err(MsrProtocolError::Unaligned(gpa));
    }
    Ok(gpa | info::REGISTER_GPA_REQ)
}

/// Register GHCB GPA response: `[63:12]` the registered GFN (all ones on failure), 0x013.
pub fn register_ghcb_response(msr: u64, gpa: u64) -> Result<(), MsrProtocolError> {
    expect_code(msr, info::REGISTER_GPA_RESP)?;
    let (got, want) = (msr >> 12, gpa >> 12);
    if got != want {
        return Err(MsrProtocolError::GpaMismatch { got, want });
    }
    Ok(())
}

/// The page operation of a page-state change (GHCB spec §2.3.1 and §4.1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PageOp {
    /// Assign the page to the guest (private).
    Private = 1,
    /// Make the page shared with the hypervisor.
    Shared = 2,
}

/// SNP page state change request: `[55:52]` operation, `[51:12]` GFN, `[11:0]` 0x014.
pub fn psc_request(gpa: u64, op: PageOp) -> Result<u64, MsrProtocolError> {
    if gpa & PAGE_MASK != 0 || gpa >> 52 != 0 {
        return Err(MsrProtocolError::Unaligned(gpa));
    }
    Ok((op as u64) << 52 | gpa | info::PSC_REQ)
}

/// SNP page state change response: `[63:32]` error code (0 = success), `[11:0]` 0x015.
pub fn psc_response(msr: u64) -> Result<(), MsrProtocolError> {
    expect_code(msr, info::PSC_RESP)?;
    match (msr >> 32) as u32 {
        0 => Ok(()),
        e => Err(MsrProtocolError::PscFailed(e)),
    }
}

/// Hypervisor feature bits of the SNP hypervisor feature response (GHCB spec §2.3.1, "SNP
/// Hypervisor Feature Request"; §7 "Hypervisor Supported Features"; Linux `GHCB_HV_FT_*`).
pub mod hv_features {
    /// SEV-SNP support (the rest of the version-2 protocol a SNP guest needs).
    pub const SNP: u64 = 1 << 0;
    /// SNP AP creation (the AP Creation NAE event).
    pub const SNP_AP_CREATION: u64 = 1 << 1;
    /// Restricted injection.
    pub const RESTRICTED_INJECTION: u64 = 1 << 2;
    /// Restricted injection timer.
    pub const RESTRICTED_INJECTION_TIMER: u64 = 1 << 3;
}

/// SNP hypervisor feature request (no data; GHCB spec §2.3.1): the guest asks which GHCB
/// version-2 features the hypervisor implements.
pub const fn hv_features_request() -> u64 {
    info::HV_FEATURES_REQ
}

/// SNP hypervisor feature response: `[63:12]` the feature bitmap, `[11:0]` 0x081. Returns the
/// bitmap and requires [`hv_features::SNP`]: a hypervisor without it does not implement the
/// SNP events pupa relies on, and the guest must terminate (reason set 0, code 2, as Linux
/// `sev_enable` does after `get_hv_features`).
pub fn hv_features_response(msr: u64) -> Result<u64, MsrProtocolError> {
    expect_code(msr, info::HV_FEATURES_RESP)?;
    let features = msr >> 12;
    if features & hv_features::SNP == 0 {
        return Err(MsrProtocolError::NoSnpSupport(features));
    }
    Ok(features)
}

/// Termination request: `[23:16]` reason code, `[15:12]` reason code set, `[11:0]` 0x100.
pub const fn terminate_request(set: u8, code: u8) -> u64 {
    (code as u64) << 16 | ((set & 0xF) as u64) << 12 | info::TERM_REQ
}

/// SW_EXITCODE values pupa uses (AMD APM Vol. 2 Appendix C "SVM Intercept Exit Codes"; GHCB
/// spec §4.1 Table 6 for the 0x8000_xxxx software exits).
pub mod exit {
    /// CPUID.
    pub const CPUID: u64 = 0x72;
    /// IN/OUT.
    pub const IOIO: u64 = 0x7B;
    /// RDMSR/WRMSR.
    pub const MSR: u64 = 0x7C;
    /// MMIO read (GHCB spec §4.1.5).
    pub const MMIO_READ: u64 = 0x8000_0001;
    /// MMIO write (GHCB spec §4.1.5).
    pub const MMIO_WRITE: u64 = 0x8000_0002;
    /// SNP page state change (GHCB spec §4.1.6).
    pub const SNP_PSC: u64 = 0x8000_0010;
    /// SNP guest request (GHCB spec §4.1.7).
    pub const SNP_GUEST_REQUEST: u64 = 0x8000_0011;
}

/// Offsets in the GHCB page (GHCB spec §2.5, Table 3), taken from the one typed layout,
/// [`pupa_spec::snp::Ghcb`] (the save area shares the VMSA's offsets; the spec crate asserts
/// both against the tables). The page is host-writable, so it is never viewed as that type:
/// the accessors below move each field with volatile byte accesses at these offsets.
pub mod offset {
    use core::mem::offset_of;
    use pupa_spec::snp::{Ghcb, GhcbSaveArea};

    /// RAX.
    pub const RAX: usize = offset_of!(GhcbSaveArea, rax);
    /// RCX.
    pub const RCX: usize = offset_of!(GhcbSaveArea, rcx);
    /// RDX.
    pub const RDX: usize = offset_of!(GhcbSaveArea, rdx);
    /// RBX.
    pub const RBX: usize = offset_of!(GhcbSaveArea, rbx);
    /// SW_EXITCODE.
    pub const SW_EXITCODE: usize = offset_of!(GhcbSaveArea, sw_exit_code);
    /// SW_EXITINFO1.
    pub const SW_EXITINFO1: usize = offset_of!(GhcbSaveArea, sw_exit_info_1);
    /// SW_EXITINFO2.
    pub const SW_EXITINFO2: usize = offset_of!(GhcbSaveArea, sw_exit_info_2);
    /// SW_SCRATCH.
    pub const SW_SCRATCH: usize = offset_of!(GhcbSaveArea, sw_scratch);
    /// XCR0.
    pub const XCR0: usize = offset_of!(GhcbSaveArea, xcr0);
    /// The valid bitmap: bit n covers the quadword at n * 8 of the save area.
    pub const VALID_BITMAP: usize = offset_of!(GhcbSaveArea, valid_bitmap);
    /// The shared buffer.
    pub const SHARED_BUFFER: usize = offset_of!(Ghcb, shared_buffer);
    /// PROTOCOL_VERSION (u16).
    pub const PROTOCOL_VERSION: usize = offset_of!(Ghcb, protocol_version);
    /// GHCB_USAGE (u32; 0 = standard).
    pub const GHCB_USAGE: usize = offset_of!(Ghcb, ghcb_usage);
}

/// Size of the GHCB shared buffer.
pub const SHARED_BUFFER_LEN: usize = pupa_spec::snp::ghcb::SHARED_BUFFER_LEN;
/// Size of the save area whose quadwords the valid bitmap covers (0x000..0x3F0) plus the
/// bitmap itself (16 bytes).
const SAVE_AREA_LEN: usize = offset::VALID_BITMAP + 16;
const _: () = assert!(size_of::<pupa_spec::snp::Ghcb>() == 4096);

/// The save-area fields pupa exchanges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// RAX.
    Rax,
    /// RBX.
    Rbx,
    /// RCX.
    Rcx,
    /// RDX.
    Rdx,
    /// XCR0.
    Xcr0,
    /// SW_EXITCODE.
    SwExitCode,
    /// SW_EXITINFO1.
    SwExitInfo1,
    /// SW_EXITINFO2.
    SwExitInfo2,
    /// SW_SCRATCH.
    SwScratch,
}

impl Field {
    /// The field's offset in the page.
    pub const fn offset(self) -> usize {
        match self {
            Field::Rax => offset::RAX,
            Field::Rbx => offset::RBX,
            Field::Rcx => offset::RCX,
            Field::Rdx => offset::RDX,
            Field::Xcr0 => offset::XCR0,
            Field::SwExitCode => offset::SW_EXITCODE,
            Field::SwExitInfo1 => offset::SW_EXITINFO1,
            Field::SwExitInfo2 => offset::SW_EXITINFO2,
            Field::SwScratch => offset::SW_SCRATCH,
        }
    }
}

/// Why a GHCB exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GhcbError {
    /// The hypervisor did not mark a field it had to return valid.
    #[error("GHCB field {0:?} not marked valid by the hypervisor")]
    NotValid(Field),
    /// SW_EXITINFO1[31:0] = 1: the hypervisor asks to inject an exception (SW_EXITINFO2 is its
    /// EVENTINJ encoding, GHCB spec §4.1.2).
    #[error("hypervisor returned an exception to inject ({0:#x})")]
    Exception(u64),
    /// SW_EXITINFO1[31:0] = 2: the hypervisor found the request malformed (SW_EXITINFO2 holds
    /// the reason, GHCB spec §4.1.2).
    #[error("hypervisor rejected the request as malformed (reason {0:#x})")]
    MalformedInput(u64),
    /// SW_EXITINFO1[31:0] is not a defined result.
    #[error("undefined GHCB result {0:#x}")]
    UnknownResult(u64),
}

/// The GHCB page: a 4 KiB page shared with the hypervisor. Every access is volatile (the
/// hypervisor may change the page at any time) and every value read from it is validated by
/// the caller.
pub struct Ghcb<'a> {
    page: &'a mut [u8; 4096],
}

impl<'a> Ghcb<'a> {
    /// Wraps the page. Call [`Ghcb::reset`] before building each request.
    pub fn new(page: &'a mut [u8; 4096]) -> Self {
        Self { page }
    }

    fn write_u64(&mut self, off: usize, v: u64) {
        for (i, b) in v.to_le_bytes().into_iter().enumerate() {
            // SAFETY: `off + i < 4096` for every offset used (module `offset`); the pointer is
            // derived from the exclusive borrow of the page.
            unsafe { core::ptr::write_volatile(self.page.as_mut_ptr().add(off + i), b) };
        }
    }

    fn read_u64(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        for (i, x) in b.iter_mut().enumerate() {
            // SAFETY: as in `write_u64`.
            *x = unsafe { core::ptr::read_volatile(self.page.as_ptr().add(off + i)) };
        }
        u64::from_le_bytes(b)
    }

    fn valid_bit(off: usize) -> (usize, u8) {
        pupa_spec::snp::Ghcb::valid_bit(off)
    }

    /// Clears the save area and the valid bitmap, and writes PROTOCOL_VERSION (2) and
    /// GHCB_USAGE (0). Run before every request (GHCB spec §2.5: stale valid bits would hand
    /// old register values to the hypervisor).
    pub fn reset(&mut self) {
        for i in 0..SAVE_AREA_LEN {
            // SAFETY: i < 0x400 < 4096.
            unsafe { core::ptr::write_volatile(self.page.as_mut_ptr().add(i), 0) };
        }
        let v = GHCB_PROTOCOL_VERSION.to_le_bytes();
        self.page[offset::PROTOCOL_VERSION..offset::PROTOCOL_VERSION + 2].copy_from_slice(&v);
        self.page[offset::GHCB_USAGE..offset::GHCB_USAGE + 4].copy_from_slice(&[0; 4]);
    }

    /// Writes a field and marks it valid.
    pub fn set(&mut self, f: Field, v: u64) {
        self.write_u64(f.offset(), v);
        let (byte, mask) = Self::valid_bit(f.offset());
        self.page[byte] |= mask;
    }

    /// Whether a field is marked valid.
    pub fn is_valid(&self, f: Field) -> bool {
        let (byte, mask) = Self::valid_bit(f.offset());
        // SAFETY: `byte` is inside the valid bitmap.
        unsafe { core::ptr::read_volatile(self.page.as_ptr().add(byte)) & mask != 0 }
    }

    /// Reads a field the hypervisor must have marked valid.
    pub fn get(&self, f: Field) -> Result<u64, GhcbError> {
        if !self.is_valid(f) {
            return Err(GhcbError::NotValid(f));
        }
        Ok(self.read_u64(f.offset()))
    }

    /// Checks the result of a VMGEXIT (GHCB spec §4.1.2): SW_EXITINFO1[31:0] is 0 on success.
    /// The field is read whether or not it is marked valid (as Linux does): the guest always
    /// writes SW_EXITINFO1 itself before the exit, and a hypervisor that leaves it unchanged
    /// either echoes the guest's input (non-zero for IOIO, caught here) or leaves the output
    /// registers unmarked (caught by [`Ghcb::get`]).
    pub fn exit_result(&self) -> Result<(), GhcbError> {
        let info1 = self.read_u64(offset::SW_EXITINFO1);
        let info2 = self.read_u64(offset::SW_EXITINFO2);
        match info1 & 0xFFFF_FFFF {
            0 => Ok(()),
            1 => Err(GhcbError::Exception(info2)),
            2 => Err(GhcbError::MalformedInput(info2)),
            _ => Err(GhcbError::UnknownResult(info1)),
        }
    }

    /// Reads SW_EXITINFO2 without the valid check (the result of a PSC or guest request; see
    /// [`Ghcb::exit_result`] for why).
    pub fn exit_info2_raw(&self) -> u64 {
        self.read_u64(offset::SW_EXITINFO2)
    }

    /// The shared buffer (GHCB offset 0x800, 2032 bytes).
    pub fn shared_buffer(&mut self) -> &mut [u8] {
        &mut self.page[offset::SHARED_BUFFER..offset::SHARED_BUFFER + SHARED_BUFFER_LEN]
    }
}

/// Builds an MMIO exit (GHCB spec §4.1.5): SW_EXITINFO1 = the device GPA, SW_EXITINFO2 = the
/// size (1, 2, 4 or 8; larger is clamped to 8), SW_SCRATCH = the GPA of the GHCB shared buffer,
/// which holds the data (written here for `write = Some(value)`, returned there for reads).
pub fn mmio_request(
    g: &mut Ghcb<'_>,
    shared_buffer_gpa: u64,
    gpa: u64,
    size: usize,
    write: Option<u64>,
) {
    let size = size.clamp(1, 8);
    g.reset();
    if let Some(v) = write {
        g.shared_buffer()[..size].copy_from_slice(&v.to_le_bytes()[..size]);
    }
    let code = if write.is_some() {
        exit::MMIO_WRITE
    } else {
        exit::MMIO_READ
    };
    g.set(Field::SwExitCode, code);
    g.set(Field::SwExitInfo1, gpa);
    g.set(Field::SwExitInfo2, size as u64);
    g.set(Field::SwScratch, shared_buffer_gpa);
}

/// The value an MMIO read returned: checks the exit result, then takes `size` bytes of the
/// shared buffer (zero-extended).
pub fn mmio_read_result(g: &mut Ghcb<'_>, size: usize) -> Result<u64, GhcbError> {
    g.exit_result()?;
    let size = size.clamp(1, 8);
    let mut b = [0u8; 8];
    b[..size].copy_from_slice(&g.shared_buffer()[..size]);
    Ok(u64::from_le_bytes(b))
}

#[cfg(test)]
#[path = "ghcb_tests.rs"]
mod tests;
