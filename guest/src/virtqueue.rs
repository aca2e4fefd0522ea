//! A virtio split virtqueue, driver side (virtio 1.2 spec §2.7 "Split Virtqueues").
//!
//! The three areas (descriptor table, available ring, used ring) live in memory the device can
//! read and write (under SNP/TDX: pages shared with the host). The queue only ever trusts the
//! device for two things, and checks both: the used ring's index may advance by at most the
//! number of buffers outstanding, and every used element must name a descriptor the driver
//! actually made available — a malicious or buggy device gets [`QueueError`], not memory
//! corruption.
//!
//! Addresses handed to the device are guest-physical; the caller guarantees that the memory
//! stays valid and identity-mapped while a buffer is in flight.
//!
//! The ring layouts are `pupa_spec::virtio`'s typed elements ([`VirtqDesc`],
//! [`VirtqAvailHeader`], [`VirtqUsedElem`], [`VirtqUsedHeader`]). The memory is shared with the
//! device, which may write it at any time, so it is only ever accessed through raw pointers
//! with one volatile access per element or index — never through a Rust reference.

use core::ptr::addr_of_mut;
use core::sync::atomic::{fence, Ordering};

use pupa_spec::virtio::{
    avail_ring_bytes, avail_ring_entry_offset, desc_table_bytes, used_ring_bytes,
    used_ring_elem_offset, VirtqAvailHeader, VirtqDesc, VirtqUsedElem, VirtqUsedHeader,
};
pub use pupa_spec::virtio::{VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};

/// Bytes of the descriptor table of a queue of `size` entries (§2.7; 16-byte aligned).
pub const fn desc_bytes(size: u16) -> usize {
    desc_table_bytes(size)
}
/// Bytes of the available ring (§2.7; 2-byte aligned).
pub const fn avail_bytes(size: u16) -> usize {
    avail_ring_bytes(size)
}
/// Bytes of the used ring (§2.7; 4-byte aligned).
pub const fn used_bytes(size: u16) -> usize {
    used_ring_bytes(size)
}

/// Copies `dst.len()` bytes out of device-shared memory at `src` with volatile reads: the
/// device (the host) may write the buffer at any time, so no Rust reference into it is ever
/// made; a concurrent write leaves some mix of old and new bytes in `dst`, which the caller
/// treats as untrusted input anyway. Aligned 8-byte words in the middle (one volatile read
/// each), single bytes at the unaligned ends: a per-byte loop made every received frame cost
/// ~1,500 emulated loads under TCG.
///
/// # Safety
/// `src .. src + dst.len()` must be mapped and readable.
pub unsafe fn copy_from_shared(src: *const u8, dst: &mut [u8]) {
    let n = dst.len();
    let head = src.align_offset(8).min(n);
    let words = (n - head) / 8;
    for (i, b) in dst[..head].iter_mut().enumerate() {
        // SAFETY: inside the readable range (the caller's contract).
        *b = unsafe { src.add(i).read_volatile() };
    }
    for w in 0..words {
        let at = head + 8 * w;
        // SAFETY: `src + at` is 8-byte aligned (past `head`) and `at + 8 <= n`: readable.
        let v = unsafe { (src.add(at) as *const u64).read_volatile() };
        dst[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in dst.iter_mut().enumerate().skip(head + 8 * words) {
        // SAFETY: inside the readable range (the caller's contract).
        *b = unsafe { src.add(i).read_volatile() };
    }
}

/// Copies `src` into device-shared memory at `dst` with volatile writes (aligned 8-byte words
/// in the middle, bytes at the ends; see [`copy_from_shared`]).
///
/// # Safety
/// `dst .. dst + src.len()` must be mapped, writable, and not memory the firmware itself uses.
pub unsafe fn copy_to_shared(src: &[u8], dst: *mut u8) {
    let n = src.len();
    let head = dst.align_offset(8).min(n);
    let words = (n - head) / 8;
    for (i, &b) in src[..head].iter().enumerate() {
        // SAFETY: inside the writable range (the caller's contract).
        unsafe { dst.add(i).write_volatile(b) };
    }
    for w in 0..words {
        let at = head + 8 * w;
        let mut v = [0u8; 8];
        v.copy_from_slice(&src[at..at + 8]);
        // SAFETY: `dst + at` is 8-byte aligned (past `head`) and `at + 8 <= n`: writable.
        unsafe { (dst.add(at) as *mut u64).write_volatile(u64::from_ne_bytes(v)) };
    }
    for (i, &b) in src.iter().enumerate().skip(head + 8 * words) {
        // SAFETY: inside the writable range (the caller's contract).
        unsafe { dst.add(i).write_volatile(b) };
    }
}

/// The device broke the queue protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The used index moved further than the number of outstanding buffers.
    UsedIndexJump { last: u16, now: u16 },
    /// A used element names a descriptor that was not in flight.
    BogusId(u32),
    /// A used element reports more bytes than the buffer holds.
    BogusLength { id: u16, len: u32, cap: u32 },
}

/// Driver side of one split virtqueue.
pub struct SplitQueue {
    size: u16,
    desc: *mut VirtqDesc,
    avail: *mut VirtqAvailHeader,
    used: *mut VirtqUsedHeader,
    /// Capacity of each in-flight descriptor (0 = free).
    in_flight: alloc::vec::Vec<u32>,
    free: alloc::vec::Vec<u16>,
    avail_idx: u16,
    last_used: u16,
}

// SAFETY: the queue owns its areas exclusively (the device aside); moving it between contexts
// is fine.
unsafe impl Send for SplitQueue {}

impl SplitQueue {
    /// Set up a queue over zeroed areas.
    ///
    /// # Safety
    /// `desc`, `avail` and `used` must point to zeroed memory, aligned to 16, 2 and 4 bytes
    /// (§2.7), of at least [`desc_bytes`], [`avail_bytes`], [`used_bytes`] for `size`, valid
    /// for the queue's lifetime and used by nothing but this queue and the device.
    pub unsafe fn new(size: u16, desc: *mut u8, avail: *mut u8, used: *mut u8) -> SplitQueue {
        assert!(
            size.is_power_of_two(),
            "virtqueue size must be a power of two"
        );
        SplitQueue {
            size,
            desc: desc.cast(),
            avail: avail.cast(),
            used: used.cast(),
            in_flight: alloc::vec![0; size as usize],
            free: (0..size).rev().collect(),
            avail_idx: 0,
            last_used: 0,
        }
    }

    /// Number of entries.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Free descriptors.
    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Make one buffer available: `writable` for device-written (receive) buffers.
    /// Returns the descriptor id, or `None` if the queue is full.
    pub fn push(&mut self, gpa: u64, len: u32, writable: bool) -> Option<u16> {
        let id = self.free.pop()?;
        let desc = VirtqDesc {
            addr: gpa.to_le(),
            len: len.to_le(),
            flags: if writable { VIRTQ_DESC_F_WRITE } else { 0 }.to_le(),
            next: 0,
        };
        // SAFETY: `id < size`, so the descriptor lies inside the table (new's contract).
        unsafe { self.desc.add(id as usize).write_volatile(desc) };
        self.in_flight[id as usize] = len.max(1);
        let slot = self.avail_idx % self.size;
        // SAFETY: ring entry `slot < size` of the available ring, which `new`'s contract makes
        // `avail_bytes(size)` long and 2-byte aligned.
        unsafe {
            let entry = self.avail.cast::<u8>().add(avail_ring_entry_offset(slot));
            entry.cast::<u16>().write_volatile(id.to_le());
        }
        // the device must see the descriptor and ring entry before the new index (§2.7.13)
        fence(Ordering::SeqCst);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        // SAFETY: the idx field of the available ring's header (no reference is created).
        unsafe { addr_of_mut!((*self.avail).idx).write_volatile(self.avail_idx.to_le()) };
        fence(Ordering::SeqCst);
        Some(id)
    }

    /// Take one used buffer: `(descriptor id, bytes written by the device)`.
    pub fn pop(&mut self) -> Result<Option<(u16, u32)>, QueueError> {
        // SAFETY: the idx field of the used ring's header (no reference is created).
        let now = u16::from_le(unsafe { addr_of_mut!((*self.used).idx).read_volatile() });
        if now == self.last_used {
            return Ok(None);
        }
        let outstanding = self.size as usize - self.free.len();
        if now.wrapping_sub(self.last_used) as usize > outstanding {
            return Err(QueueError::UsedIndexJump {
                last: self.last_used,
                now,
            });
        }
        fence(Ordering::SeqCst);
        let slot = self.last_used % self.size;
        // SAFETY: used element `slot < size` of the used ring, which `new`'s contract makes
        // `used_bytes(size)` long and 4-byte aligned.
        let elem = unsafe {
            let p = self.used.cast::<u8>().add(used_ring_elem_offset(slot));
            p.cast::<VirtqUsedElem>().read_volatile()
        };
        let (id, len) = (u32::from_le(elem.id), u32::from_le(elem.len));
        if id >= self.size as u32 || self.in_flight[id as usize] == 0 {
            return Err(QueueError::BogusId(id));
        }
        let cap = self.in_flight[id as usize];
        if len > cap {
            return Err(QueueError::BogusLength {
                id: id as u16,
                len,
                cap,
            });
        }
        self.in_flight[id as usize] = 0;
        self.free.push(id as u16);
        self.last_used = self.last_used.wrapping_add(1);
        Ok(Some((id as u16, len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_copies_move_every_byte_at_every_alignment_and_length() {
        let shared: std::vec::Vec<u8> = (0..96u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        for off in 0..9 {
            for len in 0..(96 - off) {
                let mut out = std::vec![0u8; len];
                // SAFETY: off + len <= 96: inside `shared`.
                unsafe { copy_from_shared(shared.as_ptr().add(off), &mut out) };
                assert_eq!(out, shared[off..off + len], "from: off {off} len {len}");
                let mut back = std::vec![0xeeu8; 96];
                // SAFETY: off + len <= 96: inside `back`.
                unsafe { copy_to_shared(&out, back.as_mut_ptr().add(off)) };
                assert_eq!(
                    back[off..off + len],
                    shared[off..off + len],
                    "to: off {off}"
                );
                assert!(back[..off]
                    .iter()
                    .chain(&back[off + len..])
                    .all(|&b| b == 0xee));
            }
        }
    }

    /// Queue memory plus a minimal device that consumes available buffers in order.
    struct Fixture {
        desc: std::vec::Vec<u64>,
        avail: std::vec::Vec<u16>,
        used: std::vec::Vec<u32>,
        dev_avail: u16,
        dev_used: u16,
    }

    impl Fixture {
        fn new(size: u16) -> Self {
            Fixture {
                desc: vec![0; desc_bytes(size) / 8],
                avail: vec![0; avail_bytes(size) / 2 + 1],
                used: vec![0; used_bytes(size) / 4 + 1],
                dev_avail: 0,
                dev_used: 0,
            }
        }
        fn queue(&mut self, size: u16) -> SplitQueue {
            // SAFETY: the vectors are zeroed, large enough and outlive the queue in each test.
            unsafe {
                SplitQueue::new(
                    size,
                    self.desc.as_mut_ptr() as *mut u8,
                    self.avail.as_mut_ptr() as *mut u8,
                    self.used.as_mut_ptr() as *mut u8,
                )
            }
        }
        /// The device takes the next available buffer and reports `written` bytes (or a forged
        /// id / length).
        fn complete(
            &mut self,
            size: u16,
            forge_id: Option<u32>,
            written: Option<u32>,
        ) -> (u64, u32, u16) {
            let avail_idx = self.avail[1];
            assert_ne!(avail_idx, self.dev_avail, "nothing available");
            let id = self.avail[2 + (self.dev_avail % size) as usize];
            self.dev_avail = self.dev_avail.wrapping_add(1);
            let (addr, len, flags) = (
                self.desc[id as usize * 2],
                self.desc[id as usize * 2 + 1] as u32,
                (self.desc[id as usize * 2 + 1] >> 32) as u16,
            );
            let slot = (self.dev_used % size) as usize;
            self.used[1 + 2 * slot] = forge_id.unwrap_or(id as u32);
            self.used[2 + 2 * slot] = written.unwrap_or(len);
            self.dev_used = self.dev_used.wrapping_add(1);
            self.used[0] = (self.dev_used as u32) << 16;
            (addr, len, flags)
        }
    }

    #[test]
    fn round_trip_and_wraparound() {
        let mut f = Fixture::new(4);
        let mut q = f.queue(4);
        for round in 0..20u64 {
            let id = q.push(0x1000 * round, 100, round % 2 == 0).unwrap();
            let (addr, len, flags) = f.complete(4, None, Some(60));
            assert_eq!((addr, len), (0x1000 * round, 100));
            assert_eq!(
                flags,
                if round % 2 == 0 {
                    VIRTQ_DESC_F_WRITE
                } else {
                    0
                }
            );
            assert_eq!(q.pop(), Ok(Some((id, 60))));
            assert_eq!(q.pop(), Ok(None));
        }
        assert_eq!(q.free_count(), 4);
    }

    #[test]
    fn shared_copies_move_exactly_the_bytes() {
        let mut shared = [0u8; 16];
        // SAFETY: both ranges lie inside `shared`.
        unsafe { copy_to_shared(b"pupa", shared.as_mut_ptr().add(3)) };
        assert_eq!(&shared[..8], b"\0\0\0pupa\0");
        let mut out = [0xFFu8; 5];
        // SAFETY: as above.
        unsafe { copy_from_shared(shared.as_ptr().add(2), &mut out) };
        assert_eq!(&out, b"\0pupa");
    }

    #[test]
    fn full_queue_refuses_more() {
        let mut f = Fixture::new(2);
        let mut q = f.queue(2);
        assert!(q.push(1, 1, true).is_some());
        assert!(q.push(2, 1, true).is_some());
        assert_eq!(q.push(3, 1, true), None);
    }

    #[test]
    fn hostile_device_is_detected() {
        let mut f = Fixture::new(4);
        let mut q = f.queue(4);
        q.push(0x1000, 64, true).unwrap();
        f.complete(4, Some(3), None); // descriptor 3 was never made available
        assert_eq!(q.pop(), Err(QueueError::BogusId(3)));

        let mut f = Fixture::new(4);
        let mut q = f.queue(4);
        q.push(0x1000, 64, true).unwrap();
        f.complete(4, None, Some(65)); // claims more bytes than the buffer holds
        assert!(matches!(
            q.pop(),
            Err(QueueError::BogusLength {
                len: 65,
                cap: 64,
                ..
            })
        ));

        let mut f = Fixture::new(4);
        let mut q = f.queue(4);
        q.push(0x1000, 64, true).unwrap();
        f.used[0] = 3 << 16; // used index jumps by 3 with one buffer outstanding
        assert!(matches!(
            q.pop(),
            Err(QueueError::UsedIndexJump { last: 0, now: 3 })
        ));
    }
}
