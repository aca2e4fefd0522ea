//! TDX application processors park in TDG.VP.VMCALL<Instruction.HLT> on page tables and a
//! mailbox that are part of the measured image (guest/src/arch/boot.s `ap_park32`,
//! guest/linker.ld `AP_PARK_BASE`). No TDX machine runs here, so this checks the built image:
//! the pages are where the linker script says, inside the MRTD-measured BFV and outside every
//! section the VMM may preset (TEMP_MEM, TD_HOB), their contents are the identity map with
//! Accessed/Dirty preset and an empty mailbox, and the boot page holds the TDVMCALL<HLT>
//! sequence (instead of the former endless PAUSE loop) and the ACPI wakeup mailbox protocol.

use pupa_guest::tdx::mailbox::{offsets, COMMAND_NOOP, COMMAND_WAKEUP};
use pupa_measurements::ovmf::TdvfSectionType;
use pupa_measurements::Firmware;
use pupa_tests::image;

const AP_PARK_BASE: u64 = 0xFFFF_C000;
const FOUR_GIB: u64 = 1 << 32;

fn quad(image: &[u8], gpa: u64) -> u64 {
    let off = (gpa - (FOUR_GIB - image.len() as u64)) as usize;
    u64::from_le_bytes(image[off..off + 8].try_into().unwrap())
}

#[test]
fn tdx_aps_park_on_measured_pages_in_tdvmcall_hlt() {
    let img = image();
    let bytes = std::fs::read(&img.image).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&img.manifest).unwrap()).unwrap();
    let park = manifest["layout"]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == ".ap_park")
        .expect("no .ap_park section in the image");
    assert_eq!(park["vma"], format!("{AP_PARK_BASE:#x}"));
    assert_eq!(park["size"], "0x3000");

    // In the BFV (measured), in no section whose contents the VMM chooses.
    let fw = Firmware::parse(&bytes).unwrap();
    let end = AP_PARK_BASE + 0x3000;
    for s in fw.tdvf_sections().unwrap() {
        let inside = s.gpa <= AP_PARK_BASE && end <= s.gpa + s.mem_size;
        let overlaps = s.gpa < end && AP_PARK_BASE < s.gpa + s.mem_size;
        match s.kind {
            TdvfSectionType::Bfv => assert!(inside && s.mr_extend(), "{s:?}"),
            _ => assert!(!overlaps, "{s:?} overlaps the AP pages"),
        }
    }

    // PML4[0] -> PDPT (P|RW|A); PDPT: four 1 GiB identity leaves (P|RW|A|D|PS); mailbox 0.
    assert_eq!(quad(&bytes, AP_PARK_BASE), AP_PARK_BASE + 0x1000 + 0x23);
    for i in 0..4u64 {
        assert_eq!(
            quad(&bytes, AP_PARK_BASE + 0x1000 + 8 * i),
            (i << 30) | 0xE3
        );
    }
    for gpa in (AP_PARK_BASE + 0x2000..end).step_by(8) {
        assert_eq!(quad(&bytes, gpa), 0, "mailbox at {gpa:#x}");
    }

    // The boot page: `mov ecx, 0xFC00` (expose R10-R15), `mov r11d, 12` (Instruction.HLT),
    // then TDCALL (66 0F 01 CC).
    let boot = &bytes[bytes.len() - 4096..];
    let find_from = |from: usize, needle: &[u8]| {
        boot[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| from + p)
    };
    let expose = find_from(0, &[0xB9, 0x00, 0xFC, 0x00, 0x00]).expect("no mov ecx, 0xFC00");
    let hlt = find_from(0, &[0x41, 0xBB, 0x0C, 0x00, 0x00, 0x00]).expect("no mov r11d, 12");
    let tdcall = find_from(hlt, &[0x66, 0x0F, 0x01, 0xCC]).expect("no TDCALL after the HLT");
    assert!(expose < hlt && hlt < tdcall, "{expose} {hlt} {tdcall}");

    // The ACPI wakeup mailbox loop (pupa_guest::tdx::mailbox::ap_poll): first the own x2APIC
    // ID from the VMM, TDG.VP.VMCALL<Instruction.RDMSR> (`mov r11d, 31; mov r12d, 0x802;
    // tdcall`: a plain RDMSR would raise #VE without an IDT), then the acknowledgement, a
    // 16-bit store of NOOP to Command (`mov word [rbx], 0`), before the halt.
    let rdmsr = find_from(0, &[0x41, 0xBB, 0x1F, 0x00, 0x00, 0x00]).expect("no mov r11d, 31");
    let msr = find_from(rdmsr, &[0x41, 0xBC, 0x02, 0x08, 0x00, 0x00]).expect("no r12d 0x802");
    let rdmsr_call = find_from(msr, &[0x66, 0x0F, 0x01, 0xCC]).expect("no TDCALL after it");
    let ack = find_from(0, &[0x66, 0xC7, 0x03, 0x00, 0x00]).expect("no 16-bit ack of Command");
    assert!(rdmsr_call < ack && ack < hlt, "{rdmsr_call} {ack} {hlt}");
    // Then SVR = APIC enable | 0xFF through TDG.VP.VMCALL<Instruction.WRMSR> (`mov r11d, 32;
    // mov r12d, 0x80F; mov r13d, 0x1FF; tdcall`), so that the waker's IPI is accepted.
    let wrmsr = find_from(rdmsr_call, &[0x41, 0xBB, 0x20, 0x00, 0x00, 0x00]).expect("r11d 32");
    let svr = find_from(wrmsr, &[0x41, 0xBC, 0x0F, 0x08, 0x00, 0x00]).expect("r12d 0x80F");
    let on = find_from(svr, &[0x41, 0xBD, 0xFF, 0x01, 0x00, 0x00]).expect("r13d 0x1FF");
    let wrmsr_call = find_from(on, &[0x66, 0x0F, 0x01, 0xCC]).expect("no TDCALL after it");
    assert!(wrmsr_call < ack, "{wrmsr_call} {ack}");
    // The loop's operands are the mailbox layout of pupa_guest::tdx::mailbox (RBX = the
    // mailbox, EBP = the own ID), in ap_poll's order: `cmp [rbx+ApicId], ebp`,
    // `cmp word [rbx+Command], WAKEUP`, `mov rax, [rbx+WakeupVector]`, the ack, then the
    // park_spin test `cmp dword [rbx+park_spin], 0` before the halt.
    let disp8 = |off: usize| u8::try_from(off).unwrap();
    let apic_id = find_from(0, &[0x39, 0x6B, disp8(offsets::APIC_ID)]).expect("ApicId");
    assert_eq!(
        offsets::COMMAND,
        0,
        "the encodings below address Command as [rbx]"
    );
    let command = find_from(apic_id, &[0x66, 0x83, 0x3B, COMMAND_WAKEUP as u8]).expect("WAKEUP");
    let vector = find_from(command, &[0x48, 0x8B, 0x43, disp8(offsets::WAKEUP_VECTOR)])
        .expect("WakeupVector");
    let mut spin = vec![0x83, 0xBB];
    spin.extend_from_slice(&u32::try_from(offsets::PARK_SPIN).unwrap().to_le_bytes());
    spin.push(0);
    let park_spin = find_from(ack, &spin).expect("park_spin");
    assert!(
        wrmsr_call < apic_id && apic_id < command && command < vector && vector < ack,
        "{wrmsr_call} {apic_id} {command} {vector} {ack}"
    );
    assert!(
        ack < park_spin && park_spin < hlt,
        "{ack} {park_spin} {hlt}"
    );
    assert_eq!(COMMAND_NOOP, 0, "the ack stores 0");
    // No plain RDMSR (0F 32) in the park loop, from the TDVMCALL to the halt.
    assert!(
        !boot[rdmsr..hlt].windows(2).any(|w| w == [0x0F, 0x32]),
        "a RDMSR in the AP park loop"
    );
}
