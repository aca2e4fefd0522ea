//! Every guest parser of bytes the host (VMM, hypervisor, quote service) controls, selected by the
//! first input byte: E820 and the TD HOB (memory map), the SNP CPUID page, an SNP guest-message
//! response page (AES-GCM under a fixed VMPCK), the TDX GetQuote shared buffer and the quote it
//! returns. None may panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pupa_guest::memmap;
use pupa_guest::snp::cpuid::{CpuState, CpuidTable};
use pupa_guest::snp::guest_msg::{GuestMessenger, MsgType, PAGE_LEN};
use pupa_guest::snp::messages;
use pupa_guest::tdx::{backend, quote};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel % 5 {
        0 => {
            let _ = memmap::parse_e820(rest);
        }
        1 => {
            let _ = memmap::parse_td_hob(rest);
        }
        2 => {
            let mut page = [0u8; 4096];
            let n = rest.len().min(4096);
            page[..n].copy_from_slice(&rest[..n]);
            if let Ok(t) = CpuidTable::parse(&page) {
                let _ = t.c_bit();
                let cpu = CpuState {
                    osxsave: true,
                    pke: false,
                    xcr0: 0xE7,
                    xss: 0,
                };
                for leaf in [0, 1, 7, 0xD, 0x8000_0000, 0x8000_001F, 0x4000_0000] {
                    for sub in 0..3 {
                        let _ = t.lookup(leaf, sub, &cpu);
                    }
                }
            }
        }
        3 => {
            // A response page from the hypervisor/PSP after a real request.
            let mut m = GuestMessenger::new([7; 32], 0, 0);
            let mut req = [0u8; PAGE_LEN];
            if m
                .seal_request(MsgType::ReportReq, 1, &messages::report_request(&[1; 64], 0), &mut req)
                .is_ok()
            {
                let mut page = [0u8; PAGE_LEN];
                let n = rest.len().min(PAGE_LEN);
                page[..n].copy_from_slice(&rest[..n]);
                if let Ok(len) = m.open_response(&mut page) {
                    let body = &page[pupa_guest::snp::guest_msg::HEADER_LEN..];
                    let _ = messages::report_response(&body[..len.min(body.len())]);
                }
            }
        }
        _ => {
            if let Ok(q) = quote::read_response(rest) {
                let _ = backend::check_quote(q, &[0; 64], &[0; 48]);
            }
            let _ = backend::check_quote(rest, &[0; 64], &[0; 48]);
        }
    }
});
