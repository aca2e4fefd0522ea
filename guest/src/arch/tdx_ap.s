/* The TDX application processors' wakeup vector (platform/tdx_smp.rs writes its address into
 * the ACPI wakeup mailbox). A parked AP jumps here from ap_park64 (arch/boot.s) once the
 * mailbox named its x2APIC ID: in 64-bit mode on the APs' own page tables (identity
 * 0..4 GiB), RFLAGS.IF = 0, the empty IDT (any event shuts the TD down), no stack. Before
 * Rust has loaded this AP's IDT (interrupts::init_ap, the first thing ap_entry does) nothing
 * here may raise #VE: only MOV to CR4/CR3/CR0 with the values the boot CPU already runs with
 * (no bit the TDX module owns changes), XSETBV with the boot CPU's XCR0 (within the TD's
 * XFAM), LOCK XADD and stack set-up; no CPUID, no MSR access, no port I/O, no HLT.
 *
 * tdx_ap_data is arch::tdx_ap::TdxApData: arch::smp::ApData (cr3 u32 +0, cr4 u32 +4, cr0 u32
 * +8, efer u32 +12 (unused: EFER is not writable in a TD), xcr0 u64 +16, entry u64 +24,
 * stacks u64 +32, stack_size u64 +40, next u32 +48), then last_index u32 +56. */

    .pushsection .text.tdx_ap_wakeup, "ax"
    .globl tdx_ap_wakeup
    .code64
    .balign 16
tdx_ap_wakeup:
    leaq tdx_ap_data(%rip), %rbx
    xorl %eax, %eax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl 4(%rbx), %eax                    /* CR4: PAE, OSFXSR/OSXMMEXCPT, OSXSAVE as the BSP */
    movq %rax, %cr4
    movl 0(%rbx), %eax                    /* CR3: the boot CPU's page tables */
    movq %rax, %cr3
    movl 8(%rbx), %eax                    /* CR0: PG | PE, caches on, MP set, EM clear */
    movq %rax, %cr0
    movq 16(%rbx), %rax                   /* XCR0 (0: no XSAVE) */
    testq %rax, %rax
    jz 1f
    movq %rax, %rdx
    shrq $32, %rdx
    xorl %ecx, %ecx
    xsetbv
1:  movl $1, %eax
    lock xaddl %eax, 48(%rbx)             /* EAX = this AP's index, 1 first */
    cmpl 56(%rbx), %eax                   /* more arrivals than stacks: park for good */
    ja 2f
    movl %eax, %edi                       /* arg 0: the index */
    movq 40(%rbx), %rsp
    imulq %rdi, %rsp
    addq 32(%rbx), %rsp                   /* the top of stack index-1 */
    andq $-16, %rsp
    callq *24(%rbx)                       /* platform::smp::ap_entry, never returns */
2:  pause
    jmp 2b
    .popsection

    .pushsection .data.tdx_ap_data, "aw"
    .balign 8
    .globl tdx_ap_data
tdx_ap_data:
    .fill 64, 1, 0
    .popsection
