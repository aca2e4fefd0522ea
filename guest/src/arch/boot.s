/*
 * pupa boot page: the last 4 KiB of the firmware image, at [0xFFFFF000, 4 GiB).
 *
 * Holds the reset vector, the 16/32/64-bit boot stub, the SEV and TDX metadata and the OVMF GUID
 * table. Entered in one of two ways:
 *   - plain VM, SEV-SNP BSP: 16-bit real mode at 0xFFFFFFF0 (CS.base 0xFFFF0000, IP 0xFFF0);
 *   - Intel TDX, every vCPU at once: 32-bit protected mode, paging off, flat segments, at
 *     0xFFFFFFF0, ESI = vCPU index (TDX module spec, "Initial TD vCPU state";
 *     TDVF design guide §3.2). EFER.LME is already set and EFER is not writable.
 * The reset vector tells the two apart by CR0.PE (the edk2 trick): `mov eax, cr0; test al, 1`
 * encode identically in 16- and 32-bit mode.
 *
 * Before long mode only declared memory is touched: the page tables at __pt_start, inside early
 * RAM, which the metadata below declares as SNP_SEC_MEM and TDX TEMP_MEM.
 *
 * SEV-ES/SNP (reset-vector path only; not executed on this machine, which has no SNP): the
 * 32-bit stub loads a tiny IDT (idt32) and first reads SEV_STATUS from the MSR: whether SEV is on
 * never depends on the hypervisor's CPUID answers. Its #GP gate turns a faulting RDMSR of
 * SEV_STATUS (no such MSR: not AMD, or no SEV) into "no SEV". If SEV_STATUS says SNP, the C-bit
 * position is read from the SNP CPUID page (validated by the PSP at launch, so the hypervisor
 * cannot move the C-bit; SNP FW ABI 56860 §8.17.2) and set in every page-table entry; SEV-ES
 * without SNP sends a GHCB termination request, plain SEV (no GHCB protocol) halts. The CPUID the
 * stub then executes (XSAVE state) raises #VC under SNP, and the #VC gate answers it from the
 * CPUID page, never from the hypervisor (Linux `do_vc_no_ghcb` + `snp_cpuid`, OVMF
 * `SnpCpuidLookup`). Before paging is enabled the stub loads an empty IDT: an event injected
 * while the CPU is in IA-32e mode (an NMI, a #VC) then shuts the VM down instead of going
 * through 32-bit gates read as 64-bit ones. The 64-bit stub executes no CPUID. Rust receives the
 * SEV status and the C-bit position, installs its own #VC handler (arch/trap.rs) before anything
 * else can trap, and re-reads SEV_STATUS itself (platform/snp.rs).
 */

    .set EFER_MSR,        0xC0000080
    .set EFER_LME,        0x100
    .set CR0_PE,          0x1
    .set CR0_MP,          0x2
    .set CR0_EM,          0x4
    .set CR0_NW,          0x20000000
    .set CR0_CD,          0x40000000
    .set CR0_PG,          0x80000000
    .set CR4_PAE,         0x20
    .set CR4_OSFXSR,      0x200
    .set CR4_OSXMMEXCPT,  0x400
    .set CR4_OSXSAVE,     0x40000
    .set PTE_P_RW,        0x3
    .set PTE_PS,          0x80
    .set SEL_CODE32,      0x08
    .set SEL_DATA,        0x10
    .set SEL_CODE64,      0x18
    /* TDX AP mailbox (at __ap_mailbox; guest/linker.ld AP_PARK_BASE documents the pages): the
     * ACPI 6.4 §5.2.12.19 Multiprocessor Wakeup mailbox, pupa_guest::tdx::mailbox (offsets
     * asserted there). */
    .set MB_COMMAND,           0           /* u16 Command */
    .set MB_APIC_ID,           4           /* u32 ApicId */
    .set MB_WAKEUP_VECTOR,     8           /* u64 WakeupVector */
    .set MB_PARK_SPIN,         2048        /* u32 in ReservedForFirmware: FirmwareArea::park_spin */
    .set MB_COMMAND_NOOP,      0
    .set MB_COMMAND_WAKEUP,    1
    .set MB_APIC_ID_NONE,      0xFFFFFFFF  /* no x2APIC ID known: matches no request */
    .set MSR_X2APIC_ID,        0x802       /* x2APIC ID register (SDM Vol. 3A §11.12.1) */
    .set MSR_X2APIC_SVR,       0x80F       /* spurious-interrupt vector register */
    .set APIC_SVR_ON_FF,       0x1FF       /* APIC software enable | spurious vector 0xFF */
    /* Entry bits of the APs' page tables: P | RW | A, and for the 1 GiB leaves also D | PS. */
    .set AP_PTE_TABLE,         0x23
    .set AP_PTE_1G_LEAF,       0xE3
    /* TDG.VP.VMCALL (GHCI 1.5 §2.4.1, §3.8): RCX bitmap exposing R10-R15; Instruction.HLT. */
    .set TDVMCALL_EXPOSE_R10_R15, 0xFC00
    .set TDVMCALL_HLT,         12
    .set TDVMCALL_RDMSR,       31          /* Instruction.RDMSR (GHCI 1.5 §3.10) */
    .set TDVMCALL_WRMSR,       32          /* Instruction.WRMSR (GHCI 1.5 §3.11) */
    /* Boot-mode word handed to Rust in EDI. */
    .set BOOT_MODE_RESET16, 0
    .set BOOT_MODE_TDX32,   1
    /* SEV (AMD APM Vol. 2 §15.34.10; GHCB spec 56421 §2.3.1). */
    .set MSR_SEV_STATUS,       0xC0010131
    .set SEV_STATUS_SEV,       0x1
    .set SEV_STATUS_ES,        0x2
    .set SEV_STATUS_SNP,       0x4
    .set MSR_GHCB,             0xC0010130
    .set GHCB_MSR_TERM_REQ,    0x100
    /* Termination reason set 0 (GHCB spec 56421 §4.1.13): 0 general, 2 SEV-SNP not supported */
    .set TERM_GENERAL,         0
    .set TERM_SNP_UNSUPPORTED, 2
    .set SVM_EXIT_CPUID,       0x72
    .set CPUID_MEM_ENC_LEAF,   0x8000001F
    /* SNP CPUID page (SNP FW ABI 56860 §8.17.2): u32 count at +0, entries from +16, 48 bytes each
     * (EAX_IN +0, ECX_IN +4, XCR0_IN +8, XSS_IN +16, EAX +24, EBX +28, ECX +32, EDX +36). */
    .set SNP_CPUID_MAX,        64
    .set SNP_CPUID_ENTRIES,    16
    .set SNP_CPUID_ENTRY_LEN,  48

    /* SNP pages (SEV metadata section types 2 and 3), below 1 MiB. The TD HOB's place and size
     * are the linker script's __td_hob_start / __td_hob_size (guest/linker.ld). */
    .set SNP_SECRETS_GPA,  0xA000
    .set SNP_CPUID_GPA,    0xB000
    /* The SEV hashes table page (SEV metadata section type 0x10): with kernel-hashes=on QEMU
     * writes the SHA-256 table of -kernel/-initrd/-append here and the PSP measures it as a
     * NORMAL page; without it the page is measured as a ZERO page. */
    .set SNP_KERNEL_HASHES_GPA, 0xC000
    .set SNP_KERNEL_HASHES_SIZE, 0x1000

    .pushsection .boot, "ax"
boot_page:

/* ---------------------------------------------------------------- 16-bit entry (plain, SNP) */
    .code16
boot16:
    cli
    cld
    /* CS.base is 0xFFFF0000: address the GDT pointer relative to it; the 0x66 form loads a
     * 32-bit base. */
    lgdtl %cs:(gdt_ptr - 0xFFFF0000)
    movl %cr0, %eax
    orl $CR0_PE, %eax
    movl %eax, %cr0
    movl $BOOT_MODE_RESET16, %ebp
    ljmpl $SEL_CODE32, $protected32

/* ---------------------------------------------------------------- 32-bit entry (TDX) */
    .code32
tdx32:
    /* Only vCPU 0 builds the page tables; the others park (see ap_park32). */
    testl %esi, %esi
    jnz ap_park32
    lgdtl gdt_ptr
    movl $BOOT_MODE_TDX32, %ebp
    ljmpl $SEL_CODE32, $protected32

/* TDX application processors (ESI = vCPU index, 1..NUM_VCPUS-1): vCPU 0 boots pupa; the others
 * park in long mode, halted in TDG.VP.VMCALL<Instruction.HLT> (GHCI 1.5 §3.8), until woken
 * through the AP mailbox (guest/linker.ld AP_PARK_BASE; ap_park64 below). A plain HLT would
 * raise #VE, which needs an IDT the APs do not have, and TDG.VP.VMCALL takes its sub-function and
 * arguments in R10-R15, which 32-bit code cannot load: so the APs enter long mode first, on
 * page tables of their own that are part of the measured image (ap_pml4: identity 0..4 GiB in
 * 1 GiB pages), independent of vCPU 0's. They read only those pages and the mailbox, and write
 * nothing but the mailbox's acknowledgement (Accessed/Dirty are preset in their entries). */
ap_park32:
    lgdtl gdt_ptr
    lidtl idt_empty_ptr                   /* an event from here on shuts the TD down */
    movl %cr4, %eax
    orl $CR4_PAE, %eax
    movl %eax, %cr4
    movl $ap_pml4, %eax
    movl %eax, %cr3
    movl %cr0, %eax                       /* EFER.LME is set by the TDX module */
    andl $~(CR0_CD | CR0_NW), %eax
    orl $(CR0_PG | CR0_PE), %eax
    movl %eax, %cr0
    ljmpl $SEL_CODE64, $ap_park64

/* ---------------------------------------------------------------- common 32-bit path */
protected32:
    movw $SEL_DATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    /* The boot stack (early RAM): exceptions under the early IDT and the pushes below use it. */
    movl $__stack_top, %esp

    /* EBX = SEV_STATUS (low dword), ESI = C-bit mask for the high dword of every page-table
     * entry; both 0 on plain VMs and under TDX (whose entry path skips the SEV probe). */
    xorl %ebx, %ebx
    xorl %esi, %esi
    cmpl $BOOT_MODE_TDX32, %ebp
    je sev_done
    lidtl idt32_ptr
    /* SEV_STATUS straight from the MSR, before any CPUID (AMD APM Vol. 2 §15.34.10): a
     * hypervisor that hides SEV in CPUID Fn8000_001F cannot make an SNP guest take the plain
     * path. Under SEV-ES/SNP the read raises no #VC (it is not intercepted). */
    movl $MSR_SEV_STATUS, %ecx
rdmsr_sev_status:
    rdmsr                                 /* #GP (no such MSR) -> gp32 -> EAX = 0 */
    movl %eax, %ebx
    testl $SEV_STATUS_SNP, %ebx
    jnz snp_cbit
    testl $SEV_STATUS_ES, %ebx            /* SEV-ES without SNP: unsupported, say so */
    jnz sev_es_terminate
    testl $SEV_STATUS_SEV, %ebx           /* plain SEV: no GHCB protocol to report through */
    jnz halt32
    jmp sev_done
snp_cbit:
    /* Fn8000_001F EBX[5:0] from the CPUID page. */
    movl $CPUID_MEM_ENC_LEAF, %eax
    xorl %ecx, %ecx
    call snp_cpuid_entry                  /* EDX = the entry */
    movl 28(%edx), %ecx
    andl $0x3F, %ecx
    subl $32, %ecx                        /* the C-bit is above bit 31 on every SNP CPU */
    jb vc32_terminate
    movl $1, %esi
    shll %cl, %esi
sev_done:

    /* SSE: CR0.EM = 0, CR0.MP = 1, CR4.OSFXSR | OSXMMEXCPT (SDM Vol. 3A §13.1.3). */
    movl %cr0, %eax
    andl $~CR0_EM, %eax
    orl $CR0_MP, %eax
    movl %eax, %cr0
    movl %cr4, %eax
    orl $(CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
    movl %eax, %cr4

    /* XSAVE-managed state (SDM Vol. 1 §13.3): if CPUID.1:ECX.XSAVE[26], set CR4.OSXSAVE and
     * XCR0 = x87 | SSE | the AVX / AVX-512 components the CPU supports (CPUID.(EAX=0DH,ECX=0):EAX),
     * so that the kernels' AVX2 and AVX-512 paths may run. */
    pushl %ebx
    pushl %esi
    movl $1, %eax
    xorl %ecx, %ecx
    cpuid
    btl $26, %ecx
    jnc 5f
    movl %cr4, %eax
    orl $CR4_OSXSAVE, %eax
    movl %eax, %cr4
    movl $0xD, %eax
    xorl %ecx, %ecx
    cpuid                                  /* EAX = supported XCR0 bits [31:0] */
    movl %eax, %esi
    movl $0x3, %eax                        /* x87 | SSE */
    testl $0x4, %esi                       /* AVX (YMM_Hi128) */
    jz 4f
    orl $0x4, %eax
    movl %esi, %edi
    andl $0xE0, %edi                       /* opmask | ZMM_Hi256 | Hi16_ZMM: all or none */
    cmpl $0xE0, %edi
    jne 4f
    orl $0xE0, %eax
4:  xorl %edx, %edx
    xorl %ecx, %ecx
    xsetbv
5:  popl %esi
    popl %ebx

    /* Identity map 0..4 GiB with 2 MiB pages: PML4 -> PDPT -> 4 PDs (6 pages, zeroed first). */
    movl $__pt_start, %edi
    movl $(6 * 4096 / 4), %ecx
    xorl %eax, %eax
    rep stosl
    movl $__pt_start, %edi
    leal (0x1000 + PTE_P_RW)(%edi), %eax
    movl %eax, (%edi)                     /* PML4[0] -> PDPT */
    movl %esi, 4(%edi)                    /* (SNP: C-bit) */
    leal 0x1000(%edi), %edi               /* EDI = PDPT */
    leal (0x1000 + PTE_P_RW)(%edi), %eax  /* first PD */
    movl $4, %ecx
1:  movl %eax, (%edi)                     /* PDPT[i] -> PD i */
    movl %esi, 4(%edi)
    addl $0x1000, %eax
    addl $8, %edi
    loop 1b
    movl $__pt_start, %edi
    addl $0x2000, %edi                    /* EDI = PD 0; the 4 PDs are contiguous */
    movl $(PTE_P_RW | PTE_PS), %eax
    xorl %edx, %edx                       /* high dword of each entry: 0 below 4 GiB */
    movl $2048, %ecx
2:  movl %eax, (%edi)
    movl %esi, 4(%edi)                    /* (SNP: C-bit) */
    addl $0x200000, %eax
    addl $8, %edi
    loop 2b

    movl %cr4, %eax
    orl $CR4_PAE, %eax
    movl %eax, %cr4
    movl $__pt_start, %eax
    movl %eax, %cr3

    /* EFER.LME: set by the TDX module under TDX (and not writable there). */
    cmpl $BOOT_MODE_TDX32, %ebp
    je 3f
    movl $EFER_MSR, %ecx
    rdmsr
    orl $EFER_LME, %eax
    wrmsr
3:
    /* From here on the CPU is in IA-32e mode, where idt32's 8-byte gates would be read as
     * 16-byte ones: an empty IDT makes any event until Rust loads its IDT (an injected #VC or
     * NMI) escalate to a shutdown. */
    lidtl idt_empty_ptr
    movl %cr0, %eax
    andl $~(CR0_CD | CR0_NW), %eax        /* the reset value has caches disabled */
    orl $(CR0_PG | CR0_PE), %eax
    movl %eax, %cr0
    ljmpl $SEL_CODE64, $long64

/* ---------------------------------------------------------------- 64-bit */
    .code64
long64:
    movl %esi, %r12d                       /* C-bit mask (the image copy clobbers ESI) */
    xorl %eax, %eax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movabsq $__stack_top, %rsp

    /* Copy the Rust image (.text/.rodata/.data) ROM -> early RAM, zero .bss. */
    movabsq $__image_lma, %rsi
    movabsq $__image_start, %rdi
    movabsq $__image_end, %rcx
    subq %rdi, %rcx
    rep movsb
    movabsq $__bss_start, %rdi
    movabsq $__bss_end, %rcx
    subq %rdi, %rcx
    xorl %eax, %eax
    rep stosb

    movl %ebp, %edi                        /* arg 0: boot mode */
    movl %ebx, %esi                        /* arg 1: SEV_STATUS[31:0] (0 if not probed) */
    movl %r12d, %edx                       /* arg 2: C-bit mask, high dword (0: none) */
    movabsq $rust_main, %rax
    callq *%rax
6:  hlt
    jmp 6b

/* TDX APs in long mode (from ap_park32): wait on the ACPI Multiprocessor Wakeup mailbox
 * (ACPI 6.4 §5.2.12.19) as pupa_guest::tdx::mailbox::ap_poll does, step for step (marked
 * below), and as Linux's acpi_wakeup_cpu (madt_wakeup.c) drives it: only when ApicId is this
 * AP's x2APIC ID and then Command is WAKEUP, read WakeupVector, acknowledge with Command = NOOP
 * and jump there with RDI = the mailbox, RSI = the vCPU index (no stack, the empty IDT,
 * IF = 0). First, by TDG.VP.VMCALL because the RDMSR/WRMSR would raise #VE (fatal without an
 * IDT): the own x2APIC ID (MSR 0x802; MB_APIC_ID_NONE if the call fails), and SVR = enable |
 * 0xFF so that the VMM accepts the waker's IPI (arch/tdx_ap.rs says why both).
 *
 * Between passes the AP sleeps in TDG.VP.VMCALL<Instruction.HLT> (GHCI 1.5 §3.8), ended by
 * the waker's IPI; once ReservedForFirmware's park_spin word is non-zero it spins on PAUSE
 * instead (Linux's waker sends no IPI). R12 (GHCI "interrupt blocked") is 0 although IF is 0:
 * with 1, KVM never ends the halt for an interrupt (tdx_protected_apic_has_interrupt), and the
 * waker's IPI must end it; the interrupt then stays pending (IF = 0) for the woken code to
 * take once it has an IDT. A wake without a command for this AP (a stray interrupt, another
 * AP's request) only repeats the loop, which then exits to the VMM at once on every pass
 * while the interrupt is pending: CPU time the VMM spends, no guest state changes. A failed
 * TDCALL is retried the same way. TDG.VP.VMCALL exposes R10-R15 only; RBX, RBP and RSI are
 * kept by the TDX module. The only memory written is the acknowledgement. */
    .code64
ap_park64:
    movl %esi, %esi                       /* vCPU index; the upper half is undefined */
    xorl %eax, %eax                       /* TDCALL leaf 0: TDG.VP.VMCALL */
    movl $TDVMCALL_EXPOSE_R10_R15, %ecx
    xorl %r10d, %r10d                     /* a GHCI-defined call */
    movl $TDVMCALL_RDMSR, %r11d           /* Instruction.RDMSR */
    movl $MSR_X2APIC_ID, %r12d
    .byte 0x66, 0x0f, 0x01, 0xcc          /* tdcall: R11 = the MSR's value */
    movl $MB_APIC_ID_NONE, %ebp
    orq %r10, %rax                        /* TDCALL status | VMCALL status */
    jnz 0f
    movl %r11d, %ebp                      /* EBP = this AP's x2APIC ID */
0:  xorl %eax, %eax                       /* TDG.VP.VMCALL */
    movl $TDVMCALL_EXPOSE_R10_R15, %ecx
    xorl %r10d, %r10d
    movl $TDVMCALL_WRMSR, %r11d           /* Instruction.WRMSR: SVR, see above */
    movl $MSR_X2APIC_SVR, %r12d
    movl $APIC_SVR_ON_FF, %r13d
    .byte 0x66, 0x0f, 0x01, 0xcc          /* tdcall; the result does not matter */
    movl $__ap_mailbox, %ebx
1:  cmpl %ebp, MB_APIC_ID(%rbx)           /* ap_poll 1: ApicId == own ID? */
    jne 3f
    cmpw $MB_COMMAND_WAKEUP, MB_COMMAND(%rbx)   /* ap_poll 2: Command == WAKEUP? */
    jne 3f
    movq MB_WAKEUP_VECTOR(%rbx), %rax     /* ap_poll 3: the vector, before the ack */
    movw $MB_COMMAND_NOOP, MB_COMMAND(%rbx)     /* ap_poll 4: acknowledge */
    movq %rbx, %rdi
    jmpq *%rax
3:  cmpl $0, MB_PARK_SPIN(%rbx)           /* Poll::Wait: halt, or spin */
    jne 4f
    xorl %eax, %eax                       /* TDCALL leaf 0: TDG.VP.VMCALL */
    movl $TDVMCALL_EXPOSE_R10_R15, %ecx
    xorl %r10d, %r10d                     /* a GHCI-defined call */
    movl $TDVMCALL_HLT, %r11d             /* Instruction.HLT */
    xorl %r12d, %r12d                     /* interrupt blocked flag, see above */
    .byte 0x66, 0x0f, 0x01, 0xcc          /* tdcall */
4:  pause
    jmp 1b

/* The TDX APs' page tables and mailbox: three pages at AP_PARK_BASE (guest/linker.ld), part of
 * the image, so their contents (all-zero mailbox included) are measured into MRTD with the
 * rest of the BFV. */
    .pushsection .ap_park, "aw"
    .balign 4096
ap_pml4:
    .quad ap_pdpt + AP_PTE_TABLE          /* PML4[0] -> the PDPT; the rest not present */
    .fill 511, 8, 0
ap_pdpt:
    .quad 0x00000000 + AP_PTE_1G_LEAF     /* identity 0..4 GiB, four 1 GiB pages */
    .quad 0x40000000 + AP_PTE_1G_LEAF
    .quad 0x80000000 + AP_PTE_1G_LEAF
    .quad 0xC0000000 + AP_PTE_1G_LEAF
    .fill 508, 8, 0
    .globl __ap_mailbox
__ap_mailbox:                             /* Command NOOP, ApicId 0, no vector, park_spin 0 */
    .fill 512, 8, 0
    .popsection

/* ---------------------------------------------------------------- SEV-ES/SNP AP entry */
/* The AP reset address named in the SEV-ES reset block. pupa runs on the BSP; an AP that is
 * started anyway halts (HLT is an automatic exit under SEV-ES, no #VC). */
    .code16
    .balign 16
sev_es_ap_entry:
    cli
7:  hlt
    jmp 7b

/* ---------------------------------------------------------------- GDT for the stub */
    .balign 8
gdt:
    .quad 0                       /* 0x00 null */
    .quad 0x00CF9B000000FFFF      /* 0x08 32-bit code, accessed preset (the GDT is in ROM) */
    .quad 0x00CF93000000FFFF      /* 0x10 data, accessed preset */
    .quad 0x00AF9B000000FFFF      /* 0x18 64-bit code (L=1) */
gdt_end:
gdt_ptr:
    .word gdt_end - gdt - 1
    .long gdt

/* ---------------------------------------------------------------- SEV-ES/SNP early #VC */
    .code32
/* #VC before Rust runs. The stub executes CPUID only once SEV_STATUS said SNP (leaf 1 and leaf
 * 0xD/0 for the XSAVE set-up), so the only #VC handled is CPUID under SNP, answered from the SNP
 * CPUID page (validated by the PSP at launch), never from the hypervisor. Anything else -- another
 * exit code, bytes at EIP other than CPUID (0F A2), SNP off, a leaf the page lacks -- terminates.
 * Linux `snp_cpuid` and OVMF `SnpCpuidLookup` adjust leaf 1 EBX/ECX[27] and leaf 0xD EBX to
 * the running state; the bits the stub uses (leaf 1 ECX[26], leaf 0xD/0 EAX) are taken as
 * the page has them. */
vc32:
    cmpl $SVM_EXIT_CPUID, (%esp)
    jne vc32_terminate
    pushl %edi
    movl 8(%esp), %edi                    /* EIP of the faulting instruction */
    cmpw $0xA20F, (%edi)                  /* CPUID = 0F A2 */
    jne vc32_terminate
    movl %eax, %edi                       /* the leaf */
    movl %ecx, %ebx                       /* the subleaf (EBX is an output anyway) */
    movl $MSR_SEV_STATUS, %ecx
    rdmsr                                 /* not intercepted under SEV-ES/SNP */
    testl $SEV_STATUS_SNP, %eax
    jz vc32_terminate
    movl %edi, %eax
    movl %ebx, %ecx
    call snp_cpuid_entry
    movl 24(%edx), %eax
    movl 28(%edx), %ebx
    movl 32(%edx), %ecx
    movl 36(%edx), %edx
    popl %edi
    addl $4, %esp                         /* the error code */
    addl $2, (%esp)                       /* past CPUID (0F A2) */
    iretl

/* EDX = the entry of the SNP CPUID page for leaf EAX (and subleaf ECX for leaf 0xD, the one
 * indexed leaf the stub asks for; Linux `cpuid_function_is_indexed`). Terminates if the page
 * claims more than 64 entries or has none for the leaf: refuse to guess. Preserves the other
 * registers. */
snp_cpuid_entry:
    pushl %esi
    movl SNP_CPUID_GPA, %esi              /* COUNT */
    cmpl $SNP_CPUID_MAX, %esi
    ja vc32_terminate
    movl $(SNP_CPUID_GPA + SNP_CPUID_ENTRIES), %edx
1:  testl %esi, %esi
    jz vc32_terminate
    cmpl %eax, (%edx)                     /* EAX_IN */
    jne 2f
    cmpl $0xD, %eax
    jne 3f
    cmpl %ecx, 4(%edx)                    /* ECX_IN */
    je 3f
2:  addl $SNP_CPUID_ENTRY_LEN, %edx
    decl %esi
    jmp 1b
3:  popl %esi
    ret

/* GHCB MSR protocol termination request (GHCB spec 56421 §4.1.13: GHCBData[23:16] reason
 * code, [15:12] reason set 0, [11:0] 0x100), then halt should the hypervisor resume us. */
vc32_terminate:
    movl $(TERM_GENERAL << 16 | GHCB_MSR_TERM_REQ), %eax
    jmp 1f
sev_es_terminate:                         /* SEV-ES without SNP: pupa needs SNP */
    movl $(TERM_SNP_UNSUPPORTED << 16 | GHCB_MSR_TERM_REQ), %eax
1:  xorl %edx, %edx
    movl $MSR_GHCB, %ecx
    wrmsr
    .byte 0xf3, 0x0f, 0x01, 0xd9          /* vmgexit */
halt32:
    cli
    hlt
    jmp halt32

/* #GP: only the SEV_STATUS RDMSR can fault here (a CPU/hypervisor without that MSR): read it
 * as 0 and continue. Anything else halts. */
gp32:
    cmpl $rdmsr_sev_status, 4(%esp)
    jne halt32
    addl $4, %esp                         /* the error code */
    xorl %eax, %eax
    xorl %edx, %edx
    addl $2, (%esp)                       /* past RDMSR (0F 32) */
    iretl

/* IDT for the 32-bit stub: #GP (13) and #VC (29); every other vector is not present (a fault
 * there escalates to a shutdown, as before any IDT). The stub runs at 0xFFFFFxxx, so a handler's
 * offset is 0xFFFF:(0xF000 + its offset in this page). */
    .balign 8
idt32:
    .fill 13, 8, 0
    .word (gp32 - boot_page) + 0xF000, SEL_CODE32
    .byte 0, 0x8E
    .word 0xFFFF
    .fill 29 - 14, 8, 0
    .word (vc32 - boot_page) + 0xF000, SEL_CODE32
    .byte 0, 0x8E
    .word 0xFFFF
idt32_end:
idt32_ptr:
    .word idt32_end - idt32 - 1
    .long idt32
/* The empty IDT (limit 0) loaded before paging is enabled. */
idt_empty_ptr:
    .word 0
    .long 0

/* ---------------------------------------------------------------- SEV metadata */
/* OVMF's SEV metadata ("ASEV" header: signature, length, version 1, item count; then items
 * (u32 gpa, u32 size, u32 type)); consumed by QEMU/KVM at SNP launch and by sev-snp-measure.
 * Types: 1 SNP_SEC_MEM (pre-validated zero pages), 2 SECRETS, 3 CPUID, 0x10 SNP_KERNEL_HASHES
 * (the page QEMU's kernel-hashes table goes in, as OVMF's AmdSev build declares it). The layout is
 * pupa_spec::snp::metadata (SevMetadataHeader, SevMetadataSection), which pupa-measurements
 * parses images with. */
    .balign 16
sev_metadata:
    .ascii "ASEV"
    .long sev_metadata_end - sev_metadata
    .long 1
    .long (sev_metadata_end - sev_metadata_items) / 12
sev_metadata_items:
    .long __early_ram_start, __early_ram_size, 1
    .long SNP_SECRETS_GPA, 0x1000, 2
    .long SNP_CPUID_GPA, 0x1000, 3
    .long SNP_KERNEL_HASHES_GPA, SNP_KERNEL_HASHES_SIZE, 0x10
sev_metadata_end:

/* ---------------------------------------------------------------- TDX metadata */
/* The TDVF descriptor (TDVF design guide §11 "TDVF metadata"): "TDVF", length, version 1,
 * section count; sections (u32 data offset, u32 raw size, u64 GPA, u64 memory size, u32 type,
 * u32 attributes). Types: 0 BFV, 2 TD_HOB, 3 TEMP_MEM. Attribute bit 0: MR.EXTEND. The layout
 * is pupa_spec::tdx::metadata (TdvfDescriptor, TdvfSection), which pupa-measurements parses
 * images with. */
    .balign 16
tdvf_descriptor:
    .ascii "TDVF"
    .long tdvf_descriptor_end - tdvf_descriptor
    .long 1
    .long (tdvf_descriptor_end - tdvf_sections) / 32
tdvf_sections:
    /* BFV: the whole image, added and measured into MRTD */
    .long 0, __rom_size
    .quad __rom_start, __rom_size
    .long 0, 1
    /* TD_HOB: the VMM writes the memory map here (guest/linker.ld: 128 KiB) */
    .long 0, 0
    .quad __td_hob_start, __td_hob_size
    .long 2, 0
    /* TEMP_MEM: early RAM (page tables, image copy, .bss, stacks, early heap) */
    .long 0, 0
    .quad __early_ram_start, __early_ram_size
    .long 3, 0
tdvf_descriptor_end:

/* ---------------------------------------------------------------- OVMF GUID table */
/* Walked backwards from the footer: each entry is data ‖ u16 length (data + 18) ‖ GUID. The
 * footer GUID ends at 4 GiB - 0x20, the table length is the u16 before it. GUIDs are stored in
 * their little-endian (mixed-endian) binary form. */
    .set GUID_TABLE_LEN, 3 * 22 + 26 + 18
    .org 0xFE0 - GUID_TABLE_LEN, 0
guid_table:
    /* SEV metadata offset, counted from the end of the image */
    .long boot_page_end - sev_metadata
    .word 22
    .long 0xdc886566
    .word 0x984a, 0x4798
    .byte 0xa7, 0x5e, 0x55, 0x85, 0xa7, 0xbf, 0x67, 0xcc
    /* SEV-ES reset block: the AP reset address */
    .long sev_es_ap_entry
    .word 22
    .long 0x00f771de
    .word 0x1a7e, 0x4fcb
    .byte 0x89, 0x0e, 0x68, 0xc7, 0x7e, 0x2f, 0xb4, 0x4e
    /* SEV hashes table area (u32 base, u32 size): where QEMU writes the kernel-hashes table
     * (SEV_HASH_TABLE_RV_GUID 7255371f-3a3b-4b04-927b-1da6efa8d454; QEMU target/i386/sev.c
     * sev_add_kernel_loader_hashes). The page is the SNP_KERNEL_HASHES section above. */
    .long SNP_KERNEL_HASHES_GPA, SNP_KERNEL_HASHES_SIZE
    .word 26
    .long 0x7255371f
    .word 0x3a3b, 0x4b04
    .byte 0x92, 0x7b, 0x1d, 0xa6, 0xef, 0xa8, 0xd4, 0x54
    /* TDX metadata offset, counted from the end of the image, to the "TDVF" descriptor */
    .long boot_page_end - tdvf_descriptor
    .word 22
    .long 0xe47a6535
    .word 0x984a, 0x4798
    .byte 0x86, 0x5e, 0x46, 0x85, 0xa7, 0xbf, 0x8e, 0xc2
    /* footer: total table length, then the table GUID */
    .word GUID_TABLE_LEN
    .long 0x96b582de
    .word 0x1fb2, 0x45f7
    .byte 0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d

/* ---------------------------------------------------------------- reset vector */
    .org 0xFF0, 0xCC
    .code16
    .globl reset_vector
reset_vector:
    .byte 0x0f, 0x20, 0xc0        /* mov eax, cr0   (same bytes in 16- and 32-bit mode) */
    .byte 0xa8, 0x01              /* test al, 1 */
    .byte 0x74, 0x05              /* jz real_mode (skip the 5-byte 32-bit jmp) */
    .byte 0xe9                    /* 32-bit: jmp tdx32 (rel32) */
    .long tdx32 - (. + 4)
real_mode:
    jmp boot16                    /* 16-bit: near jmp */
    .org 0x1000, 0xF4
boot_page_end:
    .popsection
