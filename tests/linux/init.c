/* /init of the direct-Linux-boot test's initramfs (tests/tests/linux_boot.rs): no libc, raw
 * x86-64 syscalls. Prints a marker and /proc/cmdline to the console, then exits QEMU through
 * isa-debug-exit (port 0xF4, code 0x31: status 99), falling back to reboot(POWER_OFF). */
static long sc(long n, long a, long b, long c, long d, long e) {
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                     : "rcx", "r11", "memory");
    return ret;
}

static void say(const char *s) {
    long n = 0;
    while (s[n]) n++;
    sc(1 /* write */, 1, (long)s, n, 0, 0);
}

__attribute__((force_align_arg_pointer, noreturn)) void _start(void) {
    static char buf[4096];
    say("pupa-linux-test: init running\n");
    sc(165 /* mount */, (long)"proc", (long)"/proc", (long)"proc", 0, 0);
    long fd = sc(2 /* open */, (long)"/proc/cmdline", 0, 0, 0, 0);
    long n = fd >= 0 ? sc(0 /* read */, fd, (long)buf, sizeof buf - 1, 0, 0) : -1;
    say("pupa-linux-test: cmdline: ");
    if (n > 0)
        sc(1, 1, (long)buf, n, 0, 0);
    else
        say("(unreadable)\n");
    say("PUPA_LINUX_INIT_OK\n");
    if (sc(173 /* ioperm */, 0xF4, 1, 1, 0, 0) == 0)
        __asm__ volatile("outb %0, %1" : : "a"((unsigned char)0x31), "Nd"((unsigned short)0xF4));
    sc(169 /* reboot */, 0xfee1dead, 672274793, 0x4321fedc /* POWER_OFF */, 0, 0);
    for (;;) {
    }
}
