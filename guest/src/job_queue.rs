//! Jobs handed from the boot CPU to the application processors (APs): the boot CPU keeps the
//! network and the sessions, an AP runs each job's kernels (splitting them over the other
//! vCPUs through [`crate::pool`]) and hands the job back.
//!
//! A fixed array of slots, no allocation: the boot CPU (the only producer and consumer)
//! [`submit`](JobQueue::submit)s into a free slot and [`take_done`](JobQueue::take_done)s
//! finished ones; APs [`run_one`](JobQueue::run_one) queued ones. Each slot's state word
//! says who owns its value: FREE and DONE the boot CPU, QUEUED nobody (the next AP to win
//! the QUEUED → RUNNING CAS), RUNNING that AP.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU8, Ordering};

const FREE: u8 = 0;
const QUEUED: u8 = 1;
const RUNNING: u8 = 2;
const DONE: u8 = 3;

struct Slot<J> {
    state: AtomicU8,
    val: UnsafeCell<Option<J>>,
}

/// Up to `N` jobs in flight; `run` is what an AP does with one.
pub struct JobQueue<J, const N: usize> {
    slots: [Slot<J>; N],
    run: fn(&mut J),
    /// Wakes the other vCPUs (the APs when a job is queued, the boot CPU when one is done).
    wake: fn(),
}

// SAFETY: a slot's `val` is only accessed by its owner as the state word says (module docs);
// ownership passes with a Release store or AcqRel CAS of `state` that the next owner reads
// with Acquire. `J: Send` moves the value between vCPUs.
unsafe impl<J: Send, const N: usize> Sync for JobQueue<J, N> {}

impl<J, const N: usize> JobQueue<J, N> {
    /// An empty queue.
    pub const fn new(run: fn(&mut J), wake: fn()) -> Self {
        JobQueue {
            slots: [const {
                Slot {
                    state: AtomicU8::new(FREE),
                    val: UnsafeCell::new(None),
                }
            }; N],
            run,
            wake,
        }
    }

    /// Queues `job` for an AP; returns its slot, or the job back when all `N` are in use.
    /// Boot CPU only.
    pub fn submit(&self, job: J) -> Result<usize, J> {
        let Some(i) = self
            .slots
            .iter()
            .position(|s| s.state.load(Ordering::Acquire) == FREE)
        else {
            return Err(job);
        };
        let s = &self.slots[i];
        // SAFETY: FREE: the boot CPU (the caller) owns the value.
        unsafe { *s.val.get() = Some(job) };
        s.state.store(QUEUED, Ordering::Release);
        (self.wake)();
        Ok(i)
    }

    /// A finished job and its slot, if any. Boot CPU only.
    pub fn take_done(&self) -> Option<(usize, J)> {
        self.slots.iter().enumerate().find_map(|(i, s)| {
            if s.state.load(Ordering::Acquire) != DONE {
                return None;
            }
            // SAFETY: DONE: the boot CPU owns the value (the AP's Release store, our Acquire).
            let job = unsafe { (*s.val.get()).take() };
            s.state.store(FREE, Ordering::Release);
            job.map(|j| (i, j))
        })
    }

    /// Whether a slot is free for [`JobQueue::submit`].
    pub fn has_free(&self) -> bool {
        self.slots
            .iter()
            .any(|s| s.state.load(Ordering::Acquire) == FREE)
    }

    /// Jobs queued or running (for the tests: the firmware asks [`JobQueue::has_free`]).
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        let busy = |s: &&Slot<J>| matches!(s.state.load(Ordering::Relaxed), QUEUED | RUNNING);
        self.slots.iter().filter(busy).count()
    }

    /// Runs one queued job, if any, and marks it done. Returns whether it ran one. For APs.
    pub fn run_one(&self) -> bool {
        for s in &self.slots {
            if s.state
                .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            // SAFETY: RUNNING after our CAS: this AP owns the value until it stores DONE.
            if let Some(job) = unsafe { (*s.val.get()).as_mut() } {
                (self.run)(job);
            }
            s.state.store(DONE, Ordering::Release);
            (self.wake)();
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread;

    use super::JobQueue;

    fn square(j: &mut (u64, u64)) {
        j.1 = j.0 * j.0;
    }
    fn no_wake() {}

    #[test]
    fn jobs_go_round_trip_through_the_aps_and_a_full_queue_refuses() {
        static Q: JobQueue<(u64, u64), 4> = JobQueue::new(square, no_wake);
        let stop = AtomicBool::new(false);
        thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    while !stop.load(Ordering::Acquire) {
                        if !Q.run_one() {
                            thread::yield_now();
                        }
                    }
                });
            }
            let mut results = Vec::new();
            let mut next = 0u64;
            while results.len() < 1000 {
                while next < 1000 {
                    match Q.submit((next, 0)) {
                        Ok(_) => next += 1,
                        Err(j) => {
                            assert_eq!(j, (next, 0), "a refused job comes back whole");
                            break;
                        }
                    }
                }
                assert!(Q.in_flight() <= 4);
                while let Some((_, j)) = Q.take_done() {
                    results.push(j);
                }
            }
            stop.store(true, Ordering::Release);
            results.sort();
            let want: Vec<(u64, u64)> = (0..1000).map(|i| (i, i * i)).collect();
            assert_eq!(results, want, "every job ran exactly once");
        });
    }

    #[test]
    fn without_aps_nothing_runs_and_the_slots_run_out() {
        static Q: JobQueue<(u64, u64), 2> = JobQueue::new(square, no_wake);
        assert_eq!(Q.submit((2, 0)), Ok(0));
        assert_eq!(Q.submit((3, 0)), Ok(1));
        assert_eq!(Q.submit((4, 0)), Err((4, 0)));
        assert_eq!(Q.take_done(), None);
        assert_eq!(Q.in_flight(), 2);
        assert!(Q.run_one());
        assert_eq!(Q.take_done(), Some((0, (2, 4))));
        assert_eq!(Q.submit((5, 0)), Ok(0), "the slot is free again");
    }
}
