//! GDT, TSS and IDT: every CPU exception is reported on the serial console (vector, error code,
//! RIP, and CR2 for #PF) and the VM exits, instead of a silent triple fault.
//!
//! #DF, NMI and #MC run on their own IST stacks (SDM Vol. 3A §6.14.5), so a stack overflow is
//! still reported.
//!
//! External interrupts: RFLAGS.IF stays clear everywhere except inside the idle halt
//! (`platform::idle`, `cpu::halt_with_interrupts`): the guest polls its devices while it has
//! work and only sleeps until the next interrupt when it has none. Every vector 0x20..=0xFF
//! has a handler, so nothing that arrives there can fault: the local-APIC ones (timer, MSI-X,
//! anything unexpected) acknowledge with EOI and return — the wake-up itself is the point,
//! the loop then polls; the remapped, masked 8259 range and the APIC's spurious vector return
//! without EOI (neither sets an in-service bit in the local APIC).

use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::idt::{InterruptDescriptorTable, InterruptStackFrame, PageFaultErrorCode};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

use pupa_guest::banner::ExceptionReport;
use pupa_guest::idle::{VECTOR_PIC_BASE, VECTOR_SPURIOUS};

const IST_STACK_SIZE: usize = 16 * 1024;
const IST_DOUBLE_FAULT: u16 = 0;
const IST_NMI: u16 = 1;
const IST_MACHINE_CHECK: u16 = 2;

#[repr(align(16))]
#[allow(dead_code)] // only the stacks' addresses are used
struct Stack([u8; IST_STACK_SIZE]);
static mut IST_STACKS: [Stack; 3] = [const { Stack([0; IST_STACK_SIZE]) }; 3];

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<(
    GlobalDescriptorTable,
    SegmentSelector,
    SegmentSelector,
    SegmentSelector,
)> = Once::new();
static IDT: Once<InterruptDescriptorTable> = Once::new();

/// Load the GDT/TSS and IDT. Call once, on the boot CPU, before anything can fault.
pub fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        for (i, slot) in [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK]
            .into_iter()
            .enumerate()
        {
            // SAFETY: each IST stack is only ever used as that one IST stack; we take its end
            // address and never create a reference to the array.
            let top = unsafe { core::ptr::addr_of!(IST_STACKS[i]) as u64 } + IST_STACK_SIZE as u64;
            tss.interrupt_stack_table[slot as usize] = VirtAddr::new(top);
        }
        tss
    });
    let (gdt, code, data, tss_sel) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss_sel = gdt.append(Descriptor::tss_segment(tss));
        (gdt, code, data, tss_sel)
    });
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded, which lives in a static forever.
    unsafe {
        CS::set_reg(*code);
        SS::set_reg(*data);
        DS::set_reg(*data);
        ES::set_reg(*data);
        load_tss(*tss_sel);
    }
    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        idt.divide_error.set_handler_fn(divide_error);
        idt.debug.set_handler_fn(debug);
        idt.breakpoint.set_handler_fn(breakpoint);
        idt.overflow.set_handler_fn(overflow);
        idt.bound_range_exceeded.set_handler_fn(bound_range);
        idt.invalid_opcode.set_handler_fn(invalid_opcode);
        idt.device_not_available
            .set_handler_fn(device_not_available);
        idt.invalid_tss.set_handler_fn(invalid_tss);
        idt.segment_not_present.set_handler_fn(segment_not_present);
        idt.stack_segment_fault.set_handler_fn(stack_segment_fault);
        idt.general_protection_fault
            .set_handler_fn(general_protection);
        idt.page_fault.set_handler_fn(page_fault);
        idt.x87_floating_point.set_handler_fn(x87_floating_point);
        idt.alignment_check.set_handler_fn(alignment_check);
        idt.simd_floating_point.set_handler_fn(simd_floating_point);
        idt.cp_protection_exception
            .set_handler_fn(control_protection);
        idt.security_exception.set_handler_fn(security_exception);
        for v in 0x20..=0xFFu8 {
            if v == VECTOR_SPURIOUS || (VECTOR_PIC_BASE..VECTOR_PIC_BASE + 16).contains(&v) {
                idt[v].set_handler_fn(no_eoi_interrupt);
            } else {
                idt[v].set_handler_fn(apic_interrupt);
            }
        }
        let (vc, ve) = super::trap::entries();
        // SAFETY: the IST indices were set up in the TSS above. The #VC/#VE entries are the
        // stubs of arch/trap.rs, which follow the interrupt-gate calling convention (save all
        // registers, IRETQ) and pop #VC's error code.
        unsafe {
            idt.vmm_communication_exception
                .set_handler_addr(VirtAddr::new(vc));
            idt.virtualization.set_handler_addr(VirtAddr::new(ve));
            idt.double_fault
                .set_handler_fn(double_fault)
                .set_stack_index(IST_DOUBLE_FAULT);
            idt.non_maskable_interrupt
                .set_handler_fn(nmi)
                .set_stack_index(IST_NMI);
            idt.machine_check
                .set_handler_fn(machine_check)
                .set_stack_index(IST_MACHINE_CHECK);
        }
        idt
    });
    idt.load();
}

/// An application processor's descriptor tables: its own GDT and TSS (with its own #DF, NMI
/// and #MC stacks, leaked from the heap) and the boot CPU's IDT. Call first on each AP, after
/// [`init`] ran on the boot CPU.
pub fn init_ap() {
    let Some(idt) = IDT.get() else {
        return; // unreachable: the BSP starts APs only after init()
    };
    let mut tss = TaskStateSegment::new();
    for slot in [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK] {
        let stack = alloc::vec![0u8; IST_STACK_SIZE].leak();
        let top = (stack.as_ptr() as u64 + IST_STACK_SIZE as u64) & !0xF;
        tss.interrupt_stack_table[slot as usize] = VirtAddr::new(top);
    }
    let tss: &'static TaskStateSegment = alloc::boxed::Box::leak(alloc::boxed::Box::new(tss));
    let mut gdt = GlobalDescriptorTable::new();
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss_sel = gdt.append(Descriptor::tss_segment(tss));
    let gdt: &'static GlobalDescriptorTable = alloc::boxed::Box::leak(alloc::boxed::Box::new(gdt));
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded, leaked so that it lives forever; the
    // TSS is this AP's alone.
    unsafe {
        CS::set_reg(code);
        SS::set_reg(data);
        DS::set_reg(data);
        ES::set_reg(data);
        load_tss(tss_sel);
    }
    idt.load();
}

/// The boot CPU's descriptor tables as an AP that starts in long mode needs them in its VMSA
/// (SNP AP creation, `platform/snp_ap.rs`), until [`init_ap`] loads its own GDT and TSS.
pub struct BspTables {
    /// GDT (base, limit).
    pub gdt: (u64, u16),
    /// IDT (base, limit).
    pub idt: (u64, u16),
    /// The 64-bit code and the data selector.
    pub code: u16,
    /// The data selector.
    pub data: u16,
    /// The TSS (selector, base, limit).
    pub tss: (u16, u64, u32),
}

/// The tables [`init`] loaded on the boot CPU; None before it ran. Read from the statics, not
/// with SGDT/SIDT (which a hypervisor may intercept, and #VC does not emulate them).
pub fn bsp_tables() -> Option<BspTables> {
    let (gdt, code, data, tss_sel) = GDT.get()?;
    let idt = IDT.get()?;
    let tss = TSS.get()?;
    Some(BspTables {
        gdt: (gdt.entries().as_ptr() as u64, gdt.limit()),
        idt: (
            idt as *const InterruptDescriptorTable as u64,
            (size_of::<InterruptDescriptorTable>() - 1) as u16,
        ),
        code: code.0,
        data: data.0,
        tss: (
            tss_sel.0,
            tss as *const TaskStateSegment as u64,
            (size_of::<TaskStateSegment>() - 1) as u32,
        ),
    })
}

/// Whether the IDT with the external-interrupt handlers is loaded (then setting IF is safe).
pub fn external_vectors_ready() -> bool {
    IDT.is_completed()
}

/// A local-APIC interrupt (the idle timer, the NIC's MSI-X, or anything unexpected): EOI.
extern "x86-interrupt" fn apic_interrupt(_frame: InterruptStackFrame) {
    super::apic::eoi();
}

/// The APIC's spurious vector and the (masked, remapped) 8259 range: no EOI (SDM "Spurious
/// Interrupt": the local APIC does not set an ISR bit for it; a spurious 8259 IRQ 7/15 needs
/// none either).
extern "x86-interrupt" fn no_eoi_interrupt(_frame: InterruptStackFrame) {}

/// Reports an exception taken through a `TrapFrame` stub (#VC, #VE) that its handler cannot
/// resolve, and exits.
pub fn report_trap(vector: u8, frame: &pupa_guest::trap::TrapFrame) -> ! {
    let r = ExceptionReport {
        vector,
        error_code: Some(frame.error_code),
        rip: frame.rip,
        cs: frame.cs,
        rflags: frame.rflags,
        rsp: frame.rsp,
        cr2: None,
    };
    crate::platform::serial::emergency_println(format_args!("{r}"));
    crate::platform::exit::fail(pupa_guest::exit_code::EXCEPTION)
}

fn report(vector: u8, frame: &InterruptStackFrame, error_code: Option<u64>, cr2: Option<u64>) -> ! {
    let r = ExceptionReport {
        vector,
        error_code,
        rip: frame.instruction_pointer.as_u64(),
        cs: frame.code_segment.0 as u64,
        rflags: frame.cpu_flags.bits(),
        rsp: frame.stack_pointer.as_u64(),
        cr2,
    };
    crate::platform::serial::emergency_println(format_args!("{r}"));
    crate::platform::exit::fail(pupa_guest::exit_code::EXCEPTION)
}

macro_rules! handlers {
    ($($name:ident = $vec:expr;)*) => {$(
        extern "x86-interrupt" fn $name(frame: InterruptStackFrame) {
            report($vec, &frame, None, None)
        }
    )*};
}
macro_rules! handlers_with_code {
    ($($name:ident = $vec:expr;)*) => {$(
        extern "x86-interrupt" fn $name(frame: InterruptStackFrame, code: u64) {
            report($vec, &frame, Some(code), None)
        }
    )*};
}

handlers! {
    divide_error = 0; debug = 1; nmi = 2; breakpoint = 3; overflow = 4; bound_range = 5;
    invalid_opcode = 6; device_not_available = 7; x87_floating_point = 16;
    simd_floating_point = 19;
}
handlers_with_code! {
    invalid_tss = 10; segment_not_present = 11; stack_segment_fault = 12;
    general_protection = 13; alignment_check = 17; control_protection = 21;
    security_exception = 30;
}

extern "x86-interrupt" fn page_fault(frame: InterruptStackFrame, code: PageFaultErrorCode) {
    report(14, &frame, Some(code.bits()), Some(super::cpu::cr2()))
}

extern "x86-interrupt" fn double_fault(frame: InterruptStackFrame, code: u64) -> ! {
    report(8, &frame, Some(code), None)
}

extern "x86-interrupt" fn machine_check(frame: InterruptStackFrame) -> ! {
    report(18, &frame, None, None)
}
