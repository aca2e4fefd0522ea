//! The vCPU pool: the application processors (APs) serve the kernels' parallel split
//! ([`pupa_kernels::Workers`]) for the bootstrap processor (BSP).
//!
//! Each AP, once it runs 64-bit Rust on its own stack, calls [`ap_main`] and never returns: it
//! registers (taking the next free *slot*, 1, 2, ... in the order APs arrive, so the slots in use
//! are always `1..=online` whatever order the APs start in), then spins on the pool's sequence
//! word waiting for work. [`Pool::broadcast`] publishes a closure, bumps the generation, runs
//! `f(0)` itself and waits until every AP included in that generation has acknowledged it.
//!
//! No allocation anywhere: a `Pool` is a handful of atomics and one cell, usable as
//! `static POOL: Pool = Pool::new();`.
//!
//! Panics: the firmware is `panic = "abort"`, so a panic in `f` anywhere stops the machine. In
//! a host (test) build, a panic in `f(0)` on the broadcasting thread still waits for the other
//! threads before it unwinds out of `broadcast` (they borrow the caller's closure); a panic in
//! `f` on a thread serving as an AP ends that thread without acknowledging, so that
//! `broadcast` never returns (a hung test, never a result computed with work missing).

use core::cell::UnsafeCell;
use core::hint::spin_loop;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use pupa_kernels::Workers;

/// The closure of the broadcast in flight, its lifetime erased (see [`Pool::broadcast`]).
type Job = &'static (dyn Fn(usize) + Sync + 'static);

/// Bits of [`Pool::seq`] that hold the number of threads of the generation.
const THREADS_BITS: u32 = 16;
const THREADS_MASK: u64 = (1 << THREADS_BITS) - 1;
/// At most this many APs serve (more wait forever, never included in a broadcast).
pub const MAX_APS: usize = (THREADS_MASK - 1) as usize;

/// A pool of vCPUs: the BSP (thread 0) and the APs that have called [`ap_main`].
pub struct Pool {
    /// APs registered (each serves slot 1..=online).
    online: AtomicUsize,
    /// vCPUs the platform started (or tried to), for the banner; 0 = not set.
    expected: AtomicUsize,
    /// Held by the broadcast in flight (a try-lock: a second broadcast runs serially).
    busy: AtomicBool,
    /// `generation << 16 | threads`: one word, so that an AP reads a generation and how many
    /// threads it includes at once, and an AP not included never touches `job`.
    seq: AtomicU64,
    /// Acknowledgements of the current generation by the APs it includes.
    done: AtomicUsize,
    /// The closure of the current generation: written only by the holder of `busy` while no
    /// AP may read it (before publishing a generation, after all its APs acknowledged), read
    /// only by the APs a published generation includes, before they acknowledge it.
    job: UnsafeCell<Option<Job>>,
}

// SAFETY: every field but `job` is atomic; `job` is accessed only under the generation
// protocol described at the field (writes by the `busy` holder strictly outside the window
// between publishing a generation and the last acknowledgement of it, reads by included APs
// strictly inside it), with the happens-before edges given by `seq` (Release store, Acquire
// load) and `done` (AcqRel increments, Acquire load).
unsafe impl Sync for Pool {}

impl Default for Pool {
    fn default() -> Self {
        Self::new()
    }
}

impl Pool {
    /// An empty pool: only the caller (thread 0) until APs call [`ap_main`].
    pub const fn new() -> Self {
        Pool {
            online: AtomicUsize::new(0),
            expected: AtomicUsize::new(0),
            busy: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
        }
    }

    /// APs online (serving broadcasts).
    pub fn online(&self) -> usize {
        self.online.load(Ordering::Acquire)
    }

    /// Records how many vCPUs the platform has (BSP included), for [`Pool::expected`].
    pub fn set_expected(&self, vcpus: usize) {
        self.expected.store(vcpus, Ordering::Relaxed);
    }

    /// The vCPUs recorded by [`Pool::set_expected`] (0 if never set): the banner prints
    /// "`threads()` of `expected()` vCPUs online".
    pub fn expected(&self) -> usize {
        self.expected.load(Ordering::Relaxed)
    }

    /// Registers the calling AP: returns its handle, whose slot is the next free one (1, 2, ...).
    /// The caller must then call [`Ap::poll`] until the end of time (or of the test): once
    /// registered, it is counted by [`Workers::threads`] and every broadcast that includes it
    /// waits for it.
    pub fn register(&self) -> Ap<'_> {
        // Read the generation *before* becoming visible: a broadcast that counts this AP
        // (reads `online` after the increment) publishes its generation after that read, so
        // this AP sees it as new; one that does not count it publishes a `threads` this AP's
        // slot is outside of. SeqCst here and in `broadcast` (the `online` load and the `seq`
        // store) orders the four accesses in one total order, which is this argument.
        let seen = self.seq.load(Ordering::SeqCst) >> THREADS_BITS;
        let slot = self.online.fetch_add(1, Ordering::SeqCst) + 1;
        Ap {
            pool: self,
            slot,
            seen,
        }
    }

    /// Runs `f(0..threads)` one after another on the caller (the pool is busy).
    fn serial(&self, f: &(dyn Fn(usize) + Sync)) {
        for i in 0..self.threads() {
            f(i);
        }
    }
}

/// One AP's side of the pool (from [`Pool::register`]).
pub struct Ap<'a> {
    pool: &'a Pool,
    slot: usize,
    /// The last generation this AP has handled (run, or skipped as not included).
    seen: u64,
}

impl Ap<'_> {
    /// This AP's thread index in the broadcasts that include it.
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// Handles the newest generation if it is new to this AP: runs `f(slot)` and acknowledges
    /// it if the generation includes this AP. Returns whether it ran `f`.
    pub fn poll(&mut self) -> bool {
        let seq = self.pool.seq.load(Ordering::Acquire);
        let (generation, threads) = (seq >> THREADS_BITS, (seq & THREADS_MASK) as usize);
        if generation == self.seen {
            return false;
        }
        self.seen = generation;
        if self.slot >= threads {
            // Registered after this generation was published: not ours, and its `job` may be
            // replaced at any time (its broadcast does not wait for us), so do not read it.
            return false;
        }
        // SAFETY: this generation includes our slot, so its broadcast does not return, nor
        // touch `job`, until we acknowledge below; `job` was written before the Release store
        // of `seq` that our Acquire load read.
        let f = unsafe { *self.pool.job.get() };
        if let Some(f) = f {
            f(self.slot);
        }
        // Release: our calls of `f` happen-before the broadcast's Acquire load of `done`.
        self.pool.done.fetch_add(1, Ordering::AcqRel);
        true
    }
}

/// The AP's entry into the pool, for ever: registers, then serves every broadcast that
/// includes it. `index` is the vCPU's number (1.. for the APs; the BSP is 0), for the
/// platform's bookkeeping; the thread index the AP serves is its arrival order
/// ([`Ap::slot`]), so that the pool's threads are always `0..=online()`.
pub fn ap_main(pool: &'static Pool, index: usize) -> ! {
    let _ = index;
    let mut ap = pool.register();
    loop {
        if !ap.poll() {
            spin_loop();
        }
    }
}

/// Releases the pool once the broadcast is over: waits for the APs it included (also when
/// `f(0)` unwinds, in a host build: they still borrow the caller's closure), forgets the
/// closure and frees `busy`.
struct InFlight<'a> {
    pool: &'a Pool,
    aps: usize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // Acquire: every included AP's calls of `f` happen-before this returns.
        while self.pool.done.load(Ordering::Acquire) < self.aps {
            spin_loop();
        }
        // SAFETY: we hold `busy` and every AP included in the generation has acknowledged, so
        // none reads `job` any more (the others never read it for this generation).
        unsafe { *self.pool.job.get() = None };
        self.pool.busy.store(false, Ordering::Release);
    }
}

impl Workers for Pool {
    fn threads(&self) -> usize {
        1 + self.online().min(MAX_APS)
    }

    fn broadcast(&self, f: &(dyn Fn(usize) + Sync)) {
        if self
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            // Another broadcast is in flight (nested in its `f`, or from an AP): run here.
            return self.serial(f);
        }
        let aps = self.online.load(Ordering::SeqCst).min(MAX_APS);
        if aps == 0 {
            f(0);
            self.busy.store(false, Ordering::Release);
            return;
        }
        // SAFETY: only the lifetime is erased (same type otherwise). The erased reference is
        // read only by the APs this generation includes, and only before they acknowledge it;
        // `InFlight`'s drop (on return, or on unwinding out of `f(0)`) waits for all of those
        // acknowledgements and then clears `job`, so the closure outlives every use of it,
        // and `broadcast` does not return (so `f`'s borrow does not end) before then.
        let job: Job = unsafe {
            core::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f)
        };
        // SAFETY: we hold `busy`, and the previous generation's included APs have all
        // acknowledged (its broadcast waited for them), so no AP reads `job` now.
        unsafe { *self.job.get() = Some(job) };
        self.done.store(0, Ordering::Relaxed);
        let generation = (self.seq.load(Ordering::Relaxed) >> THREADS_BITS) + 1;
        // Release (SeqCst): `job`, `done` and everything the caller wrote happen-before the
        // APs' calls of `f`. See `register` for why SeqCst.
        self.seq.store(
            generation << THREADS_BITS | (aps as u64 + 1),
            Ordering::SeqCst,
        );
        let _in_flight = InFlight { pool: self, aps };
        f(0);
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
