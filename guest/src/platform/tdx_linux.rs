//! The TDX hand-over to a Linux payload (not executed on this development machine: it has no
//! TDX). The measurements are the library's (`pupa_guest::linux::tdx_measure`, host-tested).
//!
//! 1. QEMU's ACPI tables (host input Linux will trust, AML included) are measured into
//!    RTMR[0], each as a tagged event carrying its name's label and SHA-384, as TDVF measures
//!    them; the kernel into RTMR[1] (its setup header with the loader's fields zeroed: QEMU
//!    patches them under TDX, `linux::LOADER_FIELDS`); the initrd and the command line into
//!    RTMR[2] (`tdx_measure`). A quote from the worker then covers what Linux runs and is configured
//!    by; a failed extension stops the boot.
//! 2. Every unaccepted page is accepted (what the heap had not taken yet, low RAM, RAM above
//!    4 GiB): Linux booted without UEFI cannot learn of unaccepted memory. The map Linux gets
//!    lists it all as RAM.
//! 3. The event log goes to Linux in a CCEL ACPI table (ACPI 6.5 §5.2.34) over a reserved
//!    copy of the log, so the worker can send it with its quotes and a verifier can replay the
//!    RTMRs. Without ACPI tables the boot stops: the log would be lost.

use alloc::format;
use alloc::vec::Vec;

use pupa_guest::banner::Hex;
use pupa_guest::linux::tdx_measure::{self, PayloadSha384};
use pupa_guest::linux::PayloadDigests;
use pupa_guest::memmap::{Region, RegionKind};
use pupa_guest::tdx::accept;
use pupa_guest::tdx::rtmr::EV_EVENT_TAG;
use sha2::{Digest, Sha384};

use super::linux_acpi::{ccel_table, LinuxAcpi};
use super::tdx::{page_accept, rtmr_extend, with_event_log};
use super::{heap, layout, BootError, Handover};
use crate::println;

/// The RTMR of the ACPI tables' events (the firmware's configuration, with the TD HOB).
const ACPI_RTMR: u8 = 0;

fn err(what: &str, e: impl core::fmt::Display) -> BootError {
    BootError::Linux(format!("{what}: {e}"))
}

/// [`super::Platform::linux_handover`] under TDX.
pub fn handover(
    map: &[Region],
    payload: &PayloadDigests,
    acpi: Option<&mut LinuxAcpi>,
) -> Result<Handover, BootError> {
    let acpi = acpi.ok_or_else(|| {
        BootError::Linux("no ACPI tables: the TDX event log (CCEL) could not reach Linux".into())
    })?;
    let p = PayloadSha384 {
        kernel: payload.kernel_neutral.sha384,
        initrd: payload.initrd.sha384,
        cmdline: payload.cmdline.sha384,
    };
    with_event_log(|log| {
        for (name, bytes) in acpi.files() {
            let label = format!("pupa/acpi/{name}/v1\0");
            let digest: [u8; 48] = Sha384::digest(bytes).into();
            let data = tdx_measure::event_data(label.as_bytes(), &digest);
            log.measure(ACPI_RTMR, EV_EVENT_TAG, &data, &mut rtmr_extend)?;
        }
        tdx_measure::measure_payload(log, &p, &mut rtmr_extend)
    })
    .map_err(|e| err("RTMR extend", e))?;
    with_event_log(|log| {
        for i in 0..3 {
            if let Some(r) = log.expected_rtmr(i) {
                println!("pupa: linux rtmr{i} {}", Hex(&r));
            }
        }
    });

    let accepted = accept_everything(map)?;
    println!("pupa: linux accepted the remaining {accepted} bytes of RAM");
    let linux_map: Vec<Region> = map
        .iter()
        .map(|r| match r.kind {
            RegionKind::Unaccepted => Region {
                kind: RegionKind::Ram,
                ..*r
            },
            _ => *r,
        })
        .collect();

    let log = with_event_log(|log| log.bytes().to_vec());
    let area = acpi.reserve(log.len() + 4096);
    area.fill(0xFF); // TCG: filler after the last event
    area[..log.len()].copy_from_slice(&log);
    let (lasa, laml) = (area.as_ptr() as u64, area.len() as u64);
    acpi.add_table(&ccel_table(lasa, laml))
        .map_err(|e| err("CCEL table", e))?;
    println!(
        "pupa: linux CCEL: event log of {} bytes at {lasa:#x}",
        log.len()
    );
    Ok(Handover {
        map: Some(linux_map),
        usable: None,
        setup_data: 0,
    })
}

/// Accepts every page still unaccepted: the heap's pending ranges (taken from it), then the
/// TD HOB's unaccepted RAM below 1 MiB and above 4 GiB (the boot accepted only inside
/// [1 MiB, 4 GiB)). Returns the bytes accepted.
fn accept_everything(map: &[Region]) -> Result<u64, BootError> {
    let mut total = 0;
    let pending = heap::take_pending();
    for &(s, e) in pending.pending() {
        let st = accept::accept_range(s, e, &mut page_accept).map_err(|e| err("accept", e))?;
        total += st.accepted;
    }
    let declared = layout::tdvf_sections();
    for (lo, hi) in [(0, 0x10_0000), (1 << 32, u64::MAX)] {
        let st = accept::accept_unaccepted(map, lo, hi, &declared, &mut page_accept)
            .map_err(|e| err("accept", e))?;
        total += st.accepted;
    }
    Ok(total)
}
