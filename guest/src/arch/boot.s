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
 * SEV-SNP note: under SNP the page-table entries would need the C-bit and CPUID traps to #VC;
 * that path belongs to the SNP backend (not executed on this machine). The plain and TDX paths
 * here touch no SNP state.
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
    /* Boot-mode word handed to Rust in EDI. */
    .set BOOT_MODE_RESET16, 0
    .set BOOT_MODE_TDX32,   1

    /* SNP pages (SEV metadata section types 2 and 3) and the TD HOB, all below 1 MiB. */
    .set SNP_SECRETS_GPA,  0xA000
    .set SNP_CPUID_GPA,    0xB000
    .set TD_HOB_GPA,       0x8000
    .set TD_HOB_SIZE,      0x2000

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
    /* Only vCPU 0 builds the page tables; the others park here (see ap_park32). */
    testl %esi, %esi
    jnz ap_park32
    lgdtl gdt_ptr
    movl $BOOT_MODE_TDX32, %ebp
    ljmpl $SEL_CODE32, $protected32

/* TDX application processors: pupa runs its work on vCPU 0. APs spin on PAUSE (HLT would exit
 * to the host through #VE, which needs an IDT they do not have). They touch no memory. */
ap_park32:
    pause
    jmp ap_park32

/* ---------------------------------------------------------------- common 32-bit path */
protected32:
    movw $SEL_DATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs

    /* Identity map 0..4 GiB with 2 MiB pages: PML4 -> PDPT -> 4 PDs (6 pages, zeroed first). */
    movl $__pt_start, %edi
    movl $(6 * 4096 / 4), %ecx
    xorl %eax, %eax
    rep stosl
    movl $__pt_start, %edi
    leal (0x1000 + PTE_P_RW)(%edi), %eax
    movl %eax, (%edi)                     /* PML4[0] -> PDPT */
    leal 0x1000(%edi), %edi               /* EDI = PDPT */
    leal (0x1000 + PTE_P_RW)(%edi), %eax  /* first PD */
    movl $4, %ecx
1:  movl %eax, (%edi)                     /* PDPT[i] -> PD i */
    addl $0x1000, %eax
    addl $8, %edi
    loop 1b
    movl $__pt_start, %edi
    addl $0x2000, %edi                    /* EDI = PD 0; the 4 PDs are contiguous */
    movl $(PTE_P_RW | PTE_PS), %eax
    xorl %edx, %edx                       /* high dword of each entry */
    movl $2048, %ecx
2:  movl %eax, (%edi)
    movl %edx, 4(%edi)
    addl $0x200000, %eax
    adcl $0, %edx
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
    movl %cr0, %eax
    andl $~(CR0_CD | CR0_NW), %eax        /* the reset value has caches disabled */
    orl $(CR0_PG | CR0_PE), %eax
    movl %eax, %cr0
    ljmpl $SEL_CODE64, $long64

/* ---------------------------------------------------------------- 64-bit */
    .code64
long64:
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

    /* SSE: CR0.EM = 0, CR0.MP = 1, CR4.OSFXSR | OSXMMEXCPT (SDM Vol. 3A §13.1.3). */
    movq %cr0, %rax
    andq $~CR0_EM, %rax
    orq $CR0_MP, %rax
    movq %rax, %cr0
    movq %cr4, %rax
    orq $(CR4_OSFXSR | CR4_OSXMMEXCPT), %rax
    movq %rax, %cr4

    /* XSAVE-managed state (SDM Vol. 1 §13.3): if CPUID.1:ECX.XSAVE[26], set CR4.OSXSAVE and
     * XCR0 = x87 | SSE | the AVX / AVX-512 components the CPU supports (CPUID.(EAX=0DH,ECX=0):EAX),
     * so that the kernels' AVX2 and AVX-512 paths may run. */
    movl $1, %eax
    xorl %ecx, %ecx
    cpuid
    btl $26, %ecx
    jnc 5f
    movq %cr4, %rax
    orq $CR4_OSXSAVE, %rax
    movq %rax, %cr4
    movl $0xD, %eax
    xorl %ecx, %ecx
    cpuid                                  /* EAX = supported XCR0 bits [31:0] */
    movl %eax, %r8d
    movl $0x3, %eax                        /* x87 | SSE */
    testl $0x4, %r8d                       /* AVX (YMM_Hi128) */
    jz 4f
    orl $0x4, %eax
    movl %r8d, %r9d
    andl $0xE0, %r9d                       /* opmask | ZMM_Hi256 | Hi16_ZMM: all or none */
    cmpl $0xE0, %r9d
    jne 4f
    orl $0xE0, %eax
4:  xorl %edx, %edx
    xorl %ecx, %ecx
    xsetbv
5:
    movl %ebp, %edi                        /* arg 0: boot mode */
    movabsq $rust_main, %rax
    callq *%rax
6:  hlt
    jmp 6b

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

/* ---------------------------------------------------------------- SEV metadata */
/* OVMF's SEV metadata ("ASEV" header: signature, length, version 1, item count; then items
 * (u32 gpa, u32 size, u32 type)); consumed by QEMU/KVM at SNP launch and by sev-snp-measure.
 * Types: 1 SNP_SEC_MEM (pre-validated zero pages), 2 SECRETS, 3 CPUID. */
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
sev_metadata_end:

/* ---------------------------------------------------------------- TDX metadata */
/* The TDVF descriptor (TDVF design guide §11 "TDVF metadata"): "TDVF", length, version 1,
 * section count; sections (u32 data offset, u32 raw size, u64 GPA, u64 memory size, u32 type,
 * u32 attributes). Types: 0 BFV, 2 TD_HOB, 3 TEMP_MEM. Attribute bit 0: MR.EXTEND. */
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
    /* TD_HOB: the VMM writes the memory map here */
    .long 0, 0
    .quad TD_HOB_GPA, TD_HOB_SIZE
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
    .set GUID_TABLE_LEN, 3 * 22 + 18
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
