//! Benchmark operands on transparent huge pages, as numpy puts its arrays of 4 MiB and more
//! (`numpy/_core/src/multiarray/alloc.c`: `madvise(MADV_HUGEPAGE)`), so that pupa and the numpy
//! reference see the same page size in a side-by-side run. (faer allocates its own matrices.)
//!
//! The memory is a fresh anonymous mapping, advised before its first touch: memory recycled by
//! malloc would already be backed by 4 KiB pages.

use core::ops::{Deref, DerefMut};

const HUGE: usize = 2 << 20;

/// A fixed-length buffer of `T` in its own mapping.
pub struct HugeBuf<T: Copy> {
    raw: *mut libc::c_void,
    map_len: usize,
    ptr: *mut T,
    len: usize,
}

impl<T: Copy> HugeBuf<T> {
    /// `len` copies of `fill`.
    pub fn new(len: usize, fill: T) -> Self {
        let bytes = (len * core::mem::size_of::<T>()).max(1);
        let map_len = bytes.next_multiple_of(HUGE) + HUGE;
        // SAFETY: an anonymous private mapping; checked for failure below.
        let raw = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(raw != libc::MAP_FAILED, "mmap of {map_len} bytes failed");
        // Start at a 2 MiB boundary inside the mapping so every 2 MiB of the buffer can be one
        // huge page.
        let start = (raw as usize).next_multiple_of(HUGE);
        // SAFETY: [start, start + bytes) lies inside the fresh mapping (map_len has a spare
        // 2 MiB for the alignment); the advice only chooses the page size.
        unsafe { libc::madvise(start as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE) };
        let ptr = start as *mut T;
        for i in 0..len {
            // SAFETY: inside the mapping, aligned (2 MiB-aligned start, T-sized steps).
            unsafe { ptr.add(i).write(fill) };
        }
        HugeBuf {
            raw,
            map_len,
            ptr,
            len,
        }
    }
}

impl<T: Copy> Deref for HugeBuf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` initialised elements at `ptr`, owned by self.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl<T: Copy> DerefMut for HugeBuf<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as above, uniquely borrowed.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl<T: Copy> Drop for HugeBuf<T> {
    fn drop(&mut self) {
        // SAFETY: the whole mapping made in `new`; nothing refers to it any more.
        unsafe { libc::munmap(self.raw, self.map_len) };
    }
}

// SAFETY: HugeBuf owns its mapping exclusively, like a Vec<T>: sending it or sharing `&HugeBuf`
// is as safe as for the `[T]` it derefs to.
unsafe impl<T: Copy + Send> Send for HugeBuf<T> {}
// SAFETY: as above.
unsafe impl<T: Copy + Sync> Sync for HugeBuf<T> {}
