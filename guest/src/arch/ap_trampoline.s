/* The application processors' start-up trampoline for plain VMs (INIT-SIPI-SIPI, SDM Vol. 3A
 * §9.4 "Multiple-Processor (MP) Initialization"). The SIPI starts each AP in real mode at
 * CS:IP = (vector << 8):0, so this code is copied to AP_TRAMPOLINE (0x8000, SIPI vector 0x08)
 * and addresses itself as 0x8000 + (label - ap_trampoline). The BSP fills ap_data first (its
 * own CR3, CR4, EFER, CR0 and XCR0, the Rust entry and the stacks); each AP goes real mode ->
 * protected mode on the small GDT below -> IA-32e mode on the BSP's page tables, takes the
 * next index with LOCK XADD, its stack from it, and calls the entry with RDI = index. */

    .set AP_TRAMPOLINE, 0x8000
    .set AP_EFER_MSR, 0xC0000080
    .set AP_SEL_CODE32, 0x08
    .set AP_SEL_DATA, 0x10
    .set AP_SEL_CODE64, 0x18

    .pushsection .text.ap_trampoline, "ax"
    .globl ap_trampoline, ap_trampoline_end, ap_data
    .balign 16
ap_trampoline:
    .code16
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl AP_TRAMPOLINE + (ap_gdt_ptr - ap_trampoline)
    movl %cr0, %eax
    orl $1, %eax                              /* CR0.PE */
    movl %eax, %cr0
    ljmpl $AP_SEL_CODE32, $(AP_TRAMPOLINE + (ap_32 - ap_trampoline))

    .code32
ap_32:
    movw $AP_SEL_DATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl AP_TRAMPOLINE + (ap_data - ap_trampoline) + 4, %eax   /* CR4 (PAE, SSE, OSXSAVE) */
    movl %eax, %cr4
    movl AP_TRAMPOLINE + (ap_data - ap_trampoline) + 0, %eax   /* CR3: the BSP's tables */
    movl %eax, %cr3
    movl $AP_EFER_MSR, %ecx
    movl AP_TRAMPOLINE + (ap_data - ap_trampoline) + 12, %eax  /* EFER (LME), LMA clear */
    xorl %edx, %edx
    wrmsr
    movl AP_TRAMPOLINE + (ap_data - ap_trampoline) + 8, %eax   /* CR0 (PG | PE, caches on) */
    movl %eax, %cr0
    ljmpl $AP_SEL_CODE64, $(AP_TRAMPOLINE + (ap_64 - ap_trampoline))

    .code64
ap_64:
    xorl %eax, %eax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movq AP_TRAMPOLINE + (ap_data - ap_trampoline) + 16, %rax  /* XCR0 (0: no XSAVE) */
    testq %rax, %rax
    jz 1f
    movq %rax, %rdx
    shrq $32, %rdx
    xorl %ecx, %ecx
    xsetbv
1:  movl $1, %eax
    lock xaddl %eax, AP_TRAMPOLINE + (ap_data - ap_trampoline) + 48  /* EAX = this AP's index */
    movl %eax, %edi
    movq AP_TRAMPOLINE + (ap_data - ap_trampoline) + 40, %rsp  /* stack size */
    imulq %rdi, %rsp
    addq AP_TRAMPOLINE + (ap_data - ap_trampoline) + 32, %rsp  /* + stacks base: the top */
    andq $-16, %rsp
    movq AP_TRAMPOLINE + (ap_data - ap_trampoline) + 24, %rax  /* the Rust entry */
    callq *%rax
2:  hlt
    jmp 2b

    .balign 8
ap_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF                  /* 0x08: 32-bit code */
    .quad 0x00CF92000000FFFF                  /* 0x10: data */
    .quad 0x00AF9A000000FFFF                  /* 0x18: 64-bit code */
ap_gdt_ptr:
    .word 4 * 8 - 1
    .long AP_TRAMPOLINE + (ap_gdt - ap_trampoline)

    .balign 8
/* Filled by the BSP in the copy (arch::smp::ApData): cr3 u32, cr4 u32, cr0 u32, efer u32,
 * xcr0 u64, entry u64, stacks u64, stack_size u64, next u32. */
ap_data:
    .fill 56, 1, 0
ap_trampoline_end:
    .popsection
