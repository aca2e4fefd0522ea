//! The legacy 8259A PIC pair, silenced: pupa takes interrupts from the local APIC (MSI-X and
//! the APIC timer) only.
//!
//! At reset the PICs deliver IRQ n on vector n (over the exception vectors) with nothing
//! masked, and QEMU's PIT channel 0 ticks IRQ 0 at 18.2 Hz: the first STI would take them.
//! [`mask_all`] reinitialises both PICs onto `base..base + 16` (so even a spurious IRQ 7/15
//! lands on a vector with a harmless handler) and masks every line (Intel 8259A datasheet:
//! ICW1–ICW4, then OCW1 = interrupt mask register).

use super::io::outb;

const PIC1_CMD: u16 = 0x20;
const PIC1_DATA: u16 = 0x21;
const PIC2_CMD: u16 = 0xA0;
const PIC2_DATA: u16 = 0xA1;
/// ICW1: initialisation, ICW4 follows (edge triggered, cascaded).
const ICW1_INIT_ICW4: u8 = 0x11;
/// ICW3 of the master: the slave is on IR2.
const ICW3_MASTER_SLAVE_ON_IR2: u8 = 1 << 2;
/// ICW3 of the slave: its cascade identity, 2.
const ICW3_SLAVE_ID: u8 = 2;
/// ICW4: 8086 mode.
const ICW4_8086: u8 = 0x01;
/// OCW1: every line masked.
const OCW1_MASK_ALL: u8 = 0xFF;

/// Remaps both PICs to vectors `base..base + 16` and masks all their lines.
pub fn mask_all(base: u8) {
    // SAFETY: ports 0x20/0x21/0xA0/0xA1 are the two 8259s; the sequence reprograms only them
    // (no other device decodes these ports on a PC/q35).
    unsafe {
        outb(PIC1_CMD, ICW1_INIT_ICW4);
        outb(PIC2_CMD, ICW1_INIT_ICW4);
        outb(PIC1_DATA, base);
        outb(PIC2_DATA, base + 8);
        outb(PIC1_DATA, ICW3_MASTER_SLAVE_ON_IR2);
        outb(PIC2_DATA, ICW3_SLAVE_ID);
        outb(PIC1_DATA, ICW4_8086);
        outb(PIC2_DATA, ICW4_8086);
        outb(PIC1_DATA, OCW1_MASK_ALL);
        outb(PIC2_DATA, OCW1_MASK_ALL);
    }
}
