//! The runtime hands every validated job to its platform's `Compute` (the CPU kernels in the
//! firmware, CUDA in pupa-worker with a GPU): jobs reach the backend the worker was made with,
//! its results are what the client gets, and its errors become the specific error replies.

mod runtime_common;

use std::cell::Cell;
use std::rc::Rc;

use pupa_protocol::job::{DType, Job, JobShape, Layout};
use pupa_protocol::msg::{ErrorCode, Message};
use pupa_runtime::{Compute, ComputeError, Config, CpuKernels};
use runtime_common::*;

/// A backend that counts its jobs and either runs them on the CPU kernels or fails with `fail`.
struct Recording {
    jobs: Rc<Cell<u32>>,
    fail: Option<ComputeError>,
}

impl Compute for Recording {
    fn name(&self) -> &'static str {
        "recording"
    }
    fn execute(
        &mut self,
        job: &mut Job,
        shape: &JobShape,
        expired: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<f32>, ComputeError> {
        self.jobs.set(self.jobs.get() + 1);
        match &self.fail {
            Some(e) => Err(e.clone()),
            None => CpuKernels.execute(job, shape, expired),
        }
    }
}

#[test]
fn jobs_run_on_the_workers_compute_backend() {
    let jobs = Rc::new(Cell::new(0));
    let backend = Recording {
        jobs: jobs.clone(),
        fail: None,
    };
    let (mut w, _clock) = worker_computing(Config::default(), backend);
    let c = Client::connect(&mut w, 7);
    let (job, a, b) = matmul_job(&c, 1, 4, 3, 5, DType::F32, Layout::RowMajor);
    let sj = c.seal(&job, 0x31);
    let ex = exchange(&mut w, &frame(&Message::SealedJob(sj.clone())), 4096, false);
    let (res, _) = expect_result(&c, &sj, &ex);
    assert_eq!(jobs.get(), 1, "the job went to the worker's backend");
    let want: Vec<f64> = (0..4 * 3)
        .map(|ij| (0..5).map(|p| a[ij / 3 * 5 + p] * b[p * 3 + ij % 3]).sum())
        .collect();
    assert!(rel_l2(&floats(&res), &want) < 1e-6);
}

#[test]
fn backend_errors_become_specific_replies() {
    for (fail, code) in [
        (ComputeError::Deadline, ErrorCode::DeadlineExceeded),
        (
            ComputeError::OutOfMemory { bytes: 1 << 40 },
            ErrorCode::Busy,
        ),
        (ComputeError::Inconsistent, ErrorCode::InvalidJob),
    ] {
        let jobs = Rc::new(Cell::new(0));
        let backend = Recording {
            jobs: jobs.clone(),
            fail: Some(fail.clone()),
        };
        let (mut w, _clock) = worker_computing(Config::default(), backend);
        let c = Client::connect(&mut w, 8);
        let (job, _, _) = matmul_job(&c, 2, 4, 3, 5, DType::F32, Layout::RowMajor);
        let sj = c.seal(&job, 0x32);
        let ex = exchange(&mut w, &frame(&Message::SealedJob(sj)), 4096, false);
        let e = expect_error(&ex, code);
        assert_eq!(e.job_id, Some([2; 16]), "{fail:?}: the error names the job");
        assert!(
            e.detail.contains(&fail.to_string()),
            "{fail:?}: {}",
            e.detail
        );
        assert_eq!(jobs.get(), 1);
    }
}
