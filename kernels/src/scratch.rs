//! Scratch memory and the cooperative deadline shared by the drivers.
//!
//! Every scratch buffer whose size depends on a call's dimensions is allocated fallibly
//! ([`AlignedBuf::try_new`], [`try_vec`]): a caller that runs untrusted shapes (the guest) gets
//! [`KernelError::OutOfMemory`] instead of an allocation-failure abort.

extern crate alloc;
use alloc::vec::Vec;

use crate::KernelError;

/// Polls the caller's deadline: `Err(DeadlineExceeded)` once `expired()` returns true. The
/// drivers call it once per outer block (240 rows of A against one B block in GEMM, an attention key
/// block), never per element.
#[inline]
pub(crate) fn check(expired: &dyn Fn() -> bool) -> Result<(), KernelError> {
    if expired() {
        Err(KernelError::DeadlineExceeded)
    } else {
        Ok(())
    }
}

/// `n` copies of `x` in a fallibly allocated vector.
pub(crate) fn try_vec<T: Clone>(n: usize, x: T) -> Result<Vec<T>, KernelError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| KernelError::OutOfMemory {
            bytes: n.saturating_mul(core::mem::size_of::<T>()),
        })?;
    v.resize(n, x);
    Ok(v)
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line([u32; 16]);

/// Plain 4-byte element types that scratch buffers may be viewed as.
pub(crate) trait Pod4: Copy + Default + Send + Sync + 'static {}
impl Pod4 for f32 {}
impl Pod4 for u32 {}

/// A 64-byte aligned scratch buffer of 4-byte elements (a `Vec` of 64-byte lines), allocated
/// once per call, outside the hot loops. With `std`, freed buffers are kept in a small
/// per-thread pool, so repeated calls do not fault in fresh pages every time.
pub(crate) struct AlignedBuf(Vec<Line>);

#[cfg(feature = "std")]
std::thread_local! {
    static POOL: core::cell::RefCell<Vec<Vec<Line>>> = const { core::cell::RefCell::new(Vec::new()) };
}

impl AlignedBuf {
    /// A buffer of at least `len` 4-byte elements (zeroed when freshly allocated), or
    /// `OutOfMemory` with the bytes asked for.
    pub(crate) fn try_new(len: usize) -> Result<Self, KernelError> {
        let lines = len.div_ceil(16).max(1);
        #[cfg(feature = "std")]
        {
            let reused = POOL.with(|p| {
                let mut p = p.borrow_mut();
                let i = p.iter().position(|v| v.len() >= lines)?;
                Some(p.swap_remove(i))
            });
            if let Some(v) = reused {
                return Ok(AlignedBuf(v));
            }
        }
        try_vec(lines, Line([0; 16])).map(AlignedBuf)
    }
    /// The buffer as `len` elements of `P`.
    pub(crate) fn view<P: Pod4>(&mut self, len: usize) -> &mut [P] {
        assert!(len <= self.0.len() * 16, "scratch too small");
        // SAFETY: Line is 64 bytes of initialised u32, P is a 4-byte plain type (f32 or u32)
        // for which every bit pattern is valid; the length is within the allocation.
        unsafe { core::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<P>(), len) }
    }
}

#[cfg(feature = "std")]
impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let v = core::mem::take(&mut self.0);
        // Keep at most 8 buffers per thread; `try_with` because a thread-local may already be
        // gone during thread exit.
        let _ = POOL.try_with(|p| {
            if let Ok(mut p) = p.try_borrow_mut() {
                if p.len() < 8 {
                    p.push(v);
                }
            }
        });
    }
}

/// Bytes of an [`AlignedBuf`] of `len` elements (what [`AlignedBuf::try_new`] allocates).
pub(crate) const fn aligned_bytes(len: usize) -> usize {
    let lines = len.div_ceil(16);
    (if lines == 0 { 1 } else { lines }) * 64
}
