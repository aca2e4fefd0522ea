//! The vCPU pool: the kernels' parallel split ([`pupa_kernels::Workers`]) on every vCPU.
//!
//! Any vCPU may broadcast (in the firmware an application processor, AP, running a job; the
//! boot CPU keeps the network). A broadcast publishes its closure and `threads()` call
//! indices; every vCPU that has nothing better to do *claims* indices (one CAS on the
//! [`Pool::claim`] word) and runs `f(index)`; the broadcaster claims too, so a broadcast
//! never waits for a vCPU that is busy or asleep, only for calls already running. One
//! broadcast is in flight at a time: a second broadcaster helps the first until it is over,
//! then publishes its own.
//!
//! The *helper* ([`Pool::help`], the boot CPU between two rounds of its network loop) joins in
//! time slices: when its slice is over, [`Workers::should_leave`] tells the kernels' split to
//! return between two tasks, and its index is *parked*; whoever claims next (an AP, the
//! broadcaster, or the helper's next slice) calls `f(index)` again, which resumes the shared
//! task queue. So the boot CPU adds its cycles to a long job yet answers the network within a
//! slice and one task.
//!
//! Idle APs sleep: [`ap_main`] halts when there is nothing to claim and no job to run, and
//! every broadcast and every queued job wakes the others (the pool's `wake` hook: an IPI to
//! all but self in the firmware). The check-then-halt race is closed by the caller's halt
//! (interrupts are off until `sti; hlt`, so an IPI sent in between ends the halt at once).
//!
//! No allocation: a `Pool` is a handful of atomics and one cell.
//!
//! Panics: the firmware is `panic = "abort"`. In a host (test) build a panic in a call of `f`
//! ends that thread without counting the call as done, so `broadcast` never returns (a hung
//! test, never a result computed with work missing).

use core::cell::UnsafeCell;
use core::hint::spin_loop;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use pupa_kernels::Workers;

/// The closure of the broadcast in flight, its lifetime erased (see [`Pool::broadcast`]).
type Job = &'static (dyn Fn(usize) + Sync + 'static);

/// [`Pool::claim`]: `generation << 32 | threads << 16 | next`.
const FIELD_BITS: u32 = 16;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
const GEN_SHIFT: u32 = 2 * FIELD_BITS;
/// At most this many vCPUs take part (the index fields are 16 bits wide).
pub const MAX_THREADS: usize = FIELD_MASK as usize;
/// [`Pool::parked`] and [`Pool::helper`] when empty.
const NONE: u64 = 0;

fn generation(claim: u64) -> u64 {
    claim >> GEN_SHIFT
}

/// `generation << 32 | index + 1` (never [`NONE`]): a call index tagged with its broadcast.
fn tagged(generation: u64, index: usize) -> u64 {
    generation << GEN_SHIFT | (index as u64 + 1)
}

/// A pool of vCPUs: the APs that have called [`ap_main`] (counted by [`Pool::online`]), the
/// boot CPU as broadcaster (one vCPU) or helper, and any thread that calls `broadcast`.
pub struct Pool {
    /// APs registered with [`ap_main`].
    online: AtomicUsize,
    /// vCPUs the platform started (or tried to), for the banner; 0 = not set.
    expected: AtomicUsize,
    /// Held by the broadcast in flight.
    busy: AtomicBool,
    /// `generation << 32 | threads << 16 | next`: the broadcast in flight and its next
    /// unclaimed index (`next == threads`: all claimed). One word, so that a claim (a CAS)
    /// cannot take an index of a newer broadcast than the one it read.
    claim: AtomicU64,
    /// Calls of the current broadcast that have returned for good (not parked).
    done: AtomicUsize,
    /// A call the helper left early ([`tagged`]), to be called again; [`NONE`] if none.
    parked: AtomicU64,
    /// The call the helper is running ([`tagged`]), [`NONE`] if none.
    helper: AtomicU64,
    /// When the helper's slice ends (`now()` units).
    helper_until: AtomicU64,
    /// Set when [`Workers::should_leave`] told the helper's call to leave.
    helper_left: AtomicBool,
    /// The closure of the current broadcast: written only by the holder of `busy` while no
    /// call may read it (before publishing a generation, after its last call returned), read
    /// only by vCPUs holding a claimed or parked index of the published generation.
    job: UnsafeCell<Option<Job>>,
    /// Wakes the sleeping vCPUs (an IPI to all but self).
    wake: fn(),
    /// A monotonic clock for the helper's slices (the TSC in the firmware).
    now: fn() -> u64,
}

// SAFETY: every field but `job` is atomic or immutable; `job` is accessed only under the
// protocol described at the field: the holder of `busy` writes it before the Release store
// of `claim` that publishes a generation and after observing (Acquire) `done == threads`; a
// reader holds an index of that generation (a successful AcqRel CAS on `claim` or `parked`),
// so the broadcast cannot reach `done == threads` before its call returns and counts itself
// (AcqRel) in `done`.
unsafe impl Sync for Pool {}

impl Pool {
    /// An empty pool: `wake` wakes sleeping vCPUs, `now` is a monotonic clock for the
    /// helper's slices.
    pub const fn new(wake: fn(), now: fn() -> u64) -> Self {
        Pool {
            online: AtomicUsize::new(0),
            expected: AtomicUsize::new(0),
            busy: AtomicBool::new(false),
            claim: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            parked: AtomicU64::new(NONE),
            helper: AtomicU64::new(NONE),
            helper_until: AtomicU64::new(0),
            helper_left: AtomicBool::new(false),
            job: UnsafeCell::new(None),
            wake,
            now,
        }
    }

    /// APs online (registered with [`ap_main`]).
    pub fn online(&self) -> usize {
        self.online.load(Ordering::Acquire)
    }

    /// Records how many vCPUs the platform has (boot CPU included), for [`Pool::expected`].
    pub fn set_expected(&self, vcpus: usize) {
        self.expected.store(vcpus, Ordering::Relaxed);
    }

    /// The vCPUs recorded by [`Pool::set_expected`] (0 if never set).
    pub fn expected(&self) -> usize {
        self.expected.load(Ordering::Relaxed)
    }

    /// Counts the calling AP in (see [`ap_main`]).
    pub fn register(&self) {
        self.online.fetch_add(1, Ordering::AcqRel);
    }

    /// Wakes the sleeping vCPUs (the `wake` hook).
    pub fn wake(&self) {
        (self.wake)()
    }

    /// Runs one call of the broadcast in flight, if one is left to start (a parked call
    /// first). Returns whether it ran one. For idle vCPUs.
    pub fn work(&self) -> bool {
        match self.take() {
            Some((generation, index)) => {
                self.run(generation, index, false);
                true
            }
            None => false,
        }
    }

    /// Whether a broadcast has a call left to start (what [`Pool::work`] would run).
    pub fn has_work(&self) -> bool {
        let c = self.claim.load(Ordering::Acquire);
        let parked = self.parked.load(Ordering::Acquire);
        (parked != NONE && generation(parked) == generation(c)) || Self::unclaimed(c).is_some()
    }

    /// The helper (the boot CPU between two network rounds) runs calls of the broadcast in
    /// flight until `now() >= until`, leaving its call between two tasks when the slice is
    /// over (the call is parked for anyone to resume). Returns whether it ran anything.
    pub fn help(&self, until: u64) -> bool {
        let mut ran = false;
        while (self.now)() < until {
            let Some((generation, index)) = self.take() else {
                break;
            };
            self.helper_until.store(until, Ordering::Relaxed);
            self.helper_left.store(false, Ordering::Relaxed);
            self.helper
                .store(tagged(generation, index), Ordering::Relaxed);
            self.run(generation, index, true);
            ran = true;
        }
        ran
    }

    /// The next index of `claim`'s broadcast, if any is unclaimed.
    fn unclaimed(claim: u64) -> Option<usize> {
        let threads = (claim >> FIELD_BITS) & FIELD_MASK;
        let next = claim & FIELD_MASK;
        (generation(claim) != 0 && next < threads).then_some(next as usize)
    }

    /// Takes a call to run: the parked one, else the next unclaimed index.
    fn take(&self) -> Option<(u64, usize)> {
        let parked = self.parked.load(Ordering::Acquire);
        if parked != NONE
            && self
                .parked
                .compare_exchange(parked, NONE, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let index = ((parked & 0xFFFF_FFFF) - 1) as usize;
            return Some((generation(parked), index));
        }
        let mut c = self.claim.load(Ordering::Acquire);
        while let Some(next) = Self::unclaimed(c) {
            match self
                .claim
                .compare_exchange_weak(c, c + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some((generation(c), next)),
                Err(now) => c = now,
            }
        }
        None
    }

    /// Runs call `index` of broadcast `generation`, which the caller took: counts it done,
    /// or parks it if the helper left it early.
    fn run(&self, generation: u64, index: usize, as_helper: bool) {
        // SAFETY: the caller holds `index` of `generation` (a claim or an unparked call), so
        // that broadcast does not return, nor touch `job`, before this call counts itself
        // below; `job` was written before the Release publication our Acquire read saw.
        let f = unsafe { *self.job.get() };
        if let Some(f) = f {
            f(index);
        }
        if as_helper {
            self.helper.store(NONE, Ordering::Relaxed);
            if self.helper_left.load(Ordering::Relaxed) {
                // Release: the call's writes happen-before whoever resumes it.
                self.parked
                    .store(tagged(generation, index), Ordering::Release);
                return;
            }
        }
        // Release: the call's writes happen-before the broadcaster's Acquire load of `done`.
        self.done.fetch_add(1, Ordering::AcqRel);
    }
}

/// The AP's life in the pool, for ever: counted in, it runs calls of broadcasts, else jobs
/// (`run_job`, returning whether it ran one), else sleeps in `halt` until woken (which must
/// return after any interrupt, including one that arrived since the last check).
pub fn ap_main(pool: &'static Pool, run_job: &dyn Fn() -> bool, halt: &dyn Fn()) -> ! {
    pool.register();
    loop {
        if !pool.work() && !run_job() {
            halt();
        }
    }
}

impl Workers for Pool {
    fn threads(&self) -> usize {
        // The broadcaster is an AP (or the only vCPU), the helper the boot CPU: one call per
        // vCPU.
        (1 + self.online()).min(MAX_THREADS)
    }

    fn broadcast(&self, f: &(dyn Fn(usize) + Sync)) {
        // One broadcast at a time; until ours can start, help the one in flight.
        while self
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            if !self.work() {
                spin_loop();
            }
        }
        let threads = self.threads();
        // SAFETY: only the lifetime is erased (same type otherwise). The erased reference is
        // read only by holders of an index of the generation published below, all of which
        // return and count themselves in `done` before the wait below ends; `job` is then
        // cleared, so the closure outlives every use, and `broadcast` does not return (so
        // `f`'s borrow does not end) before then.
        let job: Job = unsafe {
            core::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f)
        };
        // SAFETY: we hold `busy`, and the previous generation's calls have all returned (its
        // broadcast waited for them), so no vCPU reads `job` now.
        unsafe { *self.job.get() = Some(job) };
        self.done.store(0, Ordering::Relaxed);
        let generation = (generation(self.claim.load(Ordering::Relaxed)) + 1) & 0xFFFF_FFFF;
        let generation = generation.max(1); // 0 means "no broadcast yet"
                                            // Release: `job`, `done` and everything the caller wrote happen-before the calls.
        self.claim.store(
            generation << GEN_SHIFT | (threads as u64) << FIELD_BITS,
            Ordering::Release,
        );
        if threads > 1 {
            self.wake();
        }
        // Run calls until none is left to start, then wait for the others' (a parked call is
        // resumed here too: the helper may be busy with the network for a while).
        loop {
            if self.done.load(Ordering::Acquire) >= threads {
                break;
            }
            if !self.work() {
                spin_loop();
            }
        }
        // SAFETY: we hold `busy` and every call of this generation has returned for good, so
        // no vCPU reads `job` any more (a late claimer finds every index taken).
        unsafe { *self.job.get() = None };
        self.busy.store(false, Ordering::Release);
    }

    fn should_leave(&self, thread: usize) -> bool {
        let h = self.helper.load(Ordering::Relaxed);
        if h == NONE || ((h & 0xFFFF_FFFF) - 1) as usize != thread {
            return false;
        }
        // Only the helper runs this index of the broadcast in flight (indices are claimed
        // once; a parked one only after the helper's call returned), so the caller is it.
        if (self.now)() < self.helper_until.load(Ordering::Relaxed) {
            return false;
        }
        self.helper_left.store(true, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
