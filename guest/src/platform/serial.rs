//! The console: a 16550 UART at COM1 (0x3F8), polled.

use core::fmt::{self, Write};
use spin::Mutex;

use crate::arch::io::{inb, outb};

const COM1: u16 = 0x3F8;
const LSR_THR_EMPTY: u8 = 0x20;

struct Uart;

impl Uart {
    fn put(&mut self, b: u8) {
        // SAFETY: COM1's line-status and transmit registers; polling LSR then writing THR.
        unsafe {
            // bounded wait: a missing UART reads 0xFF (THR empty), a stuck one must not hang us
            for _ in 0..100_000 {
                if inb(COM1 + 5) & LSR_THR_EMPTY != 0 {
                    break;
                }
                core::hint::spin_loop();
            }
            outb(COM1, b);
        }
    }
}

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}

static UART: Mutex<Uart> = Mutex::new(Uart);

/// Program 115200 8N1, FIFOs on, no interrupts.
pub fn init() {
    // SAFETY: the standard 16550 initialisation sequence on COM1's registers.
    unsafe {
        outb(COM1 + 1, 0x00); // IER: no interrupts
        outb(COM1 + 3, 0x80); // LCR: DLAB
        outb(COM1, 0x01); // DLL: 115200 baud
        outb(COM1 + 1, 0x00); // DLM
        outb(COM1 + 3, 0x03); // LCR: 8N1
        outb(COM1 + 2, 0xC7); // FCR: enable + clear FIFOs
        outb(COM1 + 4, 0x03); // MCR: DTR | RTS
    }
}

/// Print a formatted line.
pub fn println(args: fmt::Arguments) {
    let mut u = UART.lock();
    let _ = u.write_fmt(args);
    let _ = u.write_str("\n");
}

/// Print from an exception or panic handler: does not wait for the lock (which the interrupted
/// code may hold).
pub fn emergency_println(args: fmt::Arguments) {
    let mut u = Uart;
    let _ = u.write_str("\n");
    let _ = u.write_fmt(args);
    let _ = u.write_str("\n");
}

/// `println!` to the serial console.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::platform::serial::println(format_args!($($arg)*)) };
}
