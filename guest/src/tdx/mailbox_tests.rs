//! Tests of the Multiprocessor Wakeup mailbox protocol: std threads play the parked APs
//! (running [`ap_poll`], as `ap_park64` does) on a heap mailbox, the test thread the waker
//! ([`wake`]); the layout against the ACPI 6.4 §5.2.12.19 tables.

use std::boxed::Box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};
use std::vec::Vec;

use super::*;

/// A waker's wait: polls `acked` until it holds or `ms` milliseconds have passed.
fn wait_ms(ms: u64) -> impl FnOnce(&dyn Fn() -> bool) {
    move |acked| {
        let end = Instant::now() + Duration::from_millis(ms);
        while !acked() && Instant::now() < end {
            thread::yield_now();
        }
    }
}

/// A parked AP: polls until woken or `stop`; records (its ID, the vector) when woken.
fn park(mb: &WakeupMailbox, id: u32, woken: &Mutex<Vec<(u32, u64)>>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match ap_poll(mb, id) {
            Poll::Wake(v) => {
                woken.lock().unwrap().push((id, v));
                return;
            }
            Poll::Wait { .. } => thread::yield_now(),
        }
    }
}

#[test]
fn layout_is_acpi_mailbox() {
    // ACPI 6.4 §5.2.12.19, Multiprocessor Wakeup Mailbox Structure: Command u16 @0,
    // Reserved u16 @2, ApicId u32 @4, WakeupVector u64 @8, ReservedForOs 2032 @16,
    // ReservedForFirmware 2048 @2048; 4 KiB, 4 KiB aligned.
    assert_eq!(core::mem::size_of::<WakeupMailbox>(), 4096);
    assert_eq!(core::mem::align_of::<WakeupMailbox>(), 4096);
    assert_eq!(offset_of!(WakeupMailbox, command), 0);
    assert_eq!(offset_of!(WakeupMailbox, reserved), 2);
    assert_eq!(offset_of!(WakeupMailbox, apic_id), 4);
    assert_eq!(offset_of!(WakeupMailbox, wakeup_vector), 8);
    assert_eq!(offset_of!(WakeupMailbox, reserved_for_os), 16);
    assert_eq!(offset_of!(WakeupMailbox, firmware), 2048);
    assert_eq!(16 + RESERVED_FOR_OS_LEN, 2048);
    assert_eq!(2048 + RESERVED_FOR_FIRMWARE_LEN, 4096);
    assert_eq!((COMMAND_NOOP, COMMAND_WAKEUP), (0, 1));
    // The heap mailbox the tests use is page-aligned like the real one.
    let mb = Box::new(WakeupMailbox::new());
    assert_eq!(&*mb as *const WakeupMailbox as usize % 4096, 0);
}

#[test]
fn madt_structure_bytes() {
    // Type 0x10, Length 16, MailBoxVersion 0 (u16), Reserved (u32), MailBoxAddress (u64).
    let b = MadtMpWakeup::new(0xFFFF_E000).to_bytes();
    assert_eq!(
        b,
        [0x10, 16, 0, 0, 0, 0, 0, 0, 0x00, 0xE0, 0xFF, 0xFF, 0, 0, 0, 0]
    );
    assert_eq!(core::mem::size_of::<MadtMpWakeup>(), 16);
}

#[test]
fn ap_ignores_other_ids_and_stray_wakes() {
    let mb = WakeupMailbox::new();
    // The empty mailbox: nothing for anyone (ApicId 0 but no command).
    assert_eq!(ap_poll(&mb, 0), Poll::Wait { halt: true });
    assert_eq!(ap_poll(&mb, 3), Poll::Wait { halt: true });
    // A command for AP 2: AP 3 leaves it alone.
    mb.apic_id.store(2, Ordering::Relaxed);
    mb.wakeup_vector.store(0x1000, Ordering::Relaxed);
    mb.command.store(COMMAND_WAKEUP, Ordering::Release);
    assert_eq!(ap_poll(&mb, 3), Poll::Wait { halt: true });
    assert_eq!(mb.command.load(Ordering::Relaxed), COMMAND_WAKEUP);
    // Its own ID but no command (a stray interrupt ending the halt): ignored.
    mb.command.store(COMMAND_NOOP, Ordering::Relaxed);
    assert_eq!(ap_poll(&mb, 2), Poll::Wait { halt: true });
    // A reserved command value: ignored and left in place.
    mb.command.store(2, Ordering::Relaxed);
    assert_eq!(ap_poll(&mb, 2), Poll::Wait { halt: true });
    assert_eq!(mb.command.load(Ordering::Relaxed), 2);
    // WAKEUP for it: the vector, and Command acknowledged to NOOP.
    mb.command.store(COMMAND_WAKEUP, Ordering::Release);
    assert_eq!(ap_poll(&mb, 2), Poll::Wake(0x1000));
    assert_eq!(mb.command.load(Ordering::Relaxed), COMMAND_NOOP);
    // The ID and vector stay as the waker wrote them; only Command changes.
    assert_eq!(mb.apic_id.load(Ordering::Relaxed), 2);
    assert_eq!(mb.wakeup_vector.load(Ordering::Relaxed), 0x1000);
}

#[test]
fn park_spin_turns_the_halt_into_a_spin() {
    let mb = WakeupMailbox::new();
    mb.firmware.park_spin.store(1, Ordering::Relaxed);
    assert_eq!(ap_poll(&mb, 1), Poll::Wait { halt: false });
}

#[test]
fn waker_writes_in_acpi_order_and_waits_for_the_ack() {
    let mb = WakeupMailbox::new();
    let kicked = AtomicUsize::new(0);
    let r = wake(
        &mb,
        5,
        0xABCD_0000,
        |id| {
            // The kick comes after the request is complete.
            assert_eq!(id, 5);
            assert_eq!(mb.apic_id.load(Ordering::Relaxed), 5);
            assert_eq!(mb.wakeup_vector.load(Ordering::Relaxed), 0xABCD_0000);
            assert_eq!(mb.command.load(Ordering::Relaxed), COMMAND_WAKEUP);
            kicked.fetch_add(1, Ordering::Relaxed);
        },
        |acked| {
            // The wait sees no acknowledgement until the AP acts.
            assert!(!acked());
            assert_eq!(ap_poll(&mb, 5), Poll::Wake(0xABCD_0000));
            assert!(acked());
        },
    );
    assert_eq!(r, Ok(()));
    assert_eq!(kicked.load(Ordering::Relaxed), 1);
}

#[test]
fn timeout_is_reported_and_the_request_withdrawn() {
    let mb = WakeupMailbox::new();
    let r = wake(&mb, 7, 0x2000, |_| {}, wait_ms(20));
    assert_eq!(r, Err(WakeError::Timeout { apic_id: 7 }));
    // Withdrawn: an AP 7 arriving late does not act on it, and the mailbox is free again.
    assert_eq!(mb.command.load(Ordering::Relaxed), COMMAND_NOOP);
    assert_eq!(ap_poll(&mb, 7), Poll::Wait { halt: true });
    let woken = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| park(&mb, 8, &woken, &stop));
        assert_eq!(wake(&mb, 8, 0x3000, |_| {}, wait_ms(10_000)), Ok(()));
    });
    assert_eq!(*woken.lock().unwrap(), [(8, 0x3000)]);
}

#[test]
fn an_ack_at_the_deadline_counts() {
    let mb = WakeupMailbox::new();
    // The wait gives up, but the AP acknowledges before the withdrawal.
    let r = wake(
        &mb,
        4,
        0x5000,
        |_| {},
        |_| {
            assert_eq!(ap_poll(&mb, 4), Poll::Wake(0x5000));
        },
    );
    assert_eq!(r, Ok(()));
}

#[test]
fn busy_mailbox_is_refused() {
    let mb = WakeupMailbox::new();
    mb.command.store(COMMAND_WAKEUP, Ordering::Relaxed);
    mb.apic_id.store(1, Ordering::Relaxed);
    let r = wake(&mb, 2, 0x1000, |_| panic!("no kick"), |_| panic!("no wait"));
    assert_eq!(r, Err(WakeError::Busy(COMMAND_WAKEUP)));
    assert_eq!(
        mb.apic_id.load(Ordering::Relaxed),
        1,
        "the pending request is kept"
    );
}

#[test]
fn several_aps_are_woken_in_sequence_each_once() {
    // Non-contiguous x2APIC IDs, all APs polling the one mailbox at once; each is woken with
    // its own vector (the firmware uses one vector, Linux too; distinct ones show that no AP
    // takes another's request).
    let ids = [1u32, 2, 4, 5, 6, 9];
    let mb = Box::new(WakeupMailbox::new());
    let woken = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        for &id in &ids {
            let (mb, woken, stop) = (&*mb, &woken, &stop);
            s.spawn(move || park(mb, id, woken, stop));
        }
        for round in 0..3 {
            for &id in &ids {
                let v = 0x10_0000 + u64::from(id) * 0x1000;
                if round == 0 {
                    assert_eq!(wake(&mb, id, v, |_| {}, wait_ms(10_000)), Ok(()), "AP {id}");
                } else {
                    // Woken already: gone from the loop, nobody acknowledges again.
                    assert_eq!(
                        wake(&mb, id, v, |_| {}, wait_ms(5)),
                        Err(WakeError::Timeout { apic_id: id })
                    );
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let mut got = woken.into_inner().unwrap();
    got.sort();
    let want: Vec<(u32, u64)> = ids
        .iter()
        .map(|&id| (id, 0x10_0000 + u64::from(id) * 0x1000))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn an_absent_id_times_out_and_the_next_ap_still_wakes() {
    // APs 1 and 3; ID 2 is nobody's (a topology with gaps): reported, then 3 wakes.
    let mb = Box::new(WakeupMailbox::new());
    let woken = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        for id in [1u32, 3] {
            let (mb, woken, stop) = (&*mb, &woken, &stop);
            s.spawn(move || park(mb, id, woken, stop));
        }
        assert_eq!(wake(&mb, 1, 0x9000, |_| {}, wait_ms(10_000)), Ok(()));
        assert_eq!(
            wake(&mb, 2, 0x9000, |_| {}, wait_ms(20)),
            Err(WakeError::Timeout { apic_id: 2 })
        );
        assert_eq!(wake(&mb, 3, 0x9000, |_| {}, wait_ms(10_000)), Ok(()));
        stop.store(true, Ordering::Relaxed);
    });
    let mut got = woken.into_inner().unwrap();
    got.sort();
    assert_eq!(got, [(1, 0x9000), (3, 0x9000)]);
}

/// The interrupt line of the halting APs below: `kicks` counts IPIs, `halts` the APs' entries
/// into the halt (so a test can wait until an AP sleeps).
#[derive(Default)]
struct Line {
    kicks: AtomicUsize,
    halts: AtomicUsize,
    stop: AtomicBool,
}

/// A parked AP that halts as `ap_park64` does: on `Poll::Wait { halt: true }` it sleeps until
/// kicked (the IPI); on `halt: false` it spins. Returns the vector it was woken with.
fn halting_ap(mb: &WakeupMailbox, id: u32, line: &Line) -> Option<u64> {
    let mut seen = line.kicks.load(Ordering::Acquire);
    while !line.stop.load(Ordering::Relaxed) {
        match ap_poll(mb, id) {
            Poll::Wake(v) => return Some(v),
            Poll::Wait { halt: false } => thread::yield_now(),
            Poll::Wait { halt: true } => {
                // TDG.VP.VMCALL<HLT>: returns once an interrupt is pending (a kick since the
                // last look; one that came before the halt ends it at once).
                line.halts.fetch_add(1, Ordering::Release);
                while line.kicks.load(Ordering::Acquire) == seen
                    && !line.stop.load(Ordering::Relaxed)
                {
                    thread::yield_now();
                }
                seen = line.kicks.load(Ordering::Acquire);
            }
        }
    }
    None
}

/// Waits until the halting APs have entered the halt `n` times in all.
fn until_halted(line: &Line, n: usize) {
    while line.halts.load(Ordering::Acquire) < n {
        thread::yield_now();
    }
}

#[test]
fn a_halted_ap_needs_the_kick_and_park_spin_serves_a_waker_without_one() {
    let mb = WakeupMailbox::new();
    let line = Line::default();
    let kick = |_| {
        line.kicks.fetch_add(1, Ordering::Release);
    };
    thread::scope(|s| {
        let ap = s.spawn(|| halting_ap(&mb, 1, &line));
        until_halted(&line, 1);
        // A waker without IPI (Linux's) does not reach a halted AP.
        let r = wake(&mb, 1, 0x7000, |_| {}, wait_ms(50));
        assert_eq!(r, Err(WakeError::Timeout { apic_id: 1 }));
        // The firmware's waker kicks: woken.
        assert_eq!(wake(&mb, 1, 0x8000, kick, wait_ms(10_000)), Ok(()));
        assert_eq!(ap.join().unwrap(), Some(0x8000));
    });
    // With park_spin set, Linux's waker (no IPI) wakes a parked AP: after one kick that ends
    // the halt it was in (the firmware's job when it sets park_spin), it only spins.
    thread::scope(|s| {
        let ap = s.spawn(|| halting_ap(&mb, 2, &line));
        until_halted(&line, 2);
        mb.firmware.park_spin.store(1, Ordering::Relaxed);
        kick(2);
        assert_eq!(wake(&mb, 2, 0x9000, |_| {}, wait_ms(10_000)), Ok(()));
        assert_eq!(ap.join().unwrap(), Some(0x9000));
    });
}
