//! Jobs run elsewhere (`Worker::defer_jobs_above`, what the firmware does with its APs): the
//! session hands the admitted job out, reads nothing further until the job is back, and the
//! replies come in request order; a small job still runs at once; a job handed back without
//! running is answered `Internal`; a session whose peer left waits for its job.

mod runtime_common;

use pupa_protocol::job::{DType, Layout};
use pupa_protocol::msg::{ErrorCode, Hello, Message};
use pupa_runtime::{CpuKernels, Session};
use runtime_common::*;

#[test]
fn a_deferred_job_runs_on_another_thread_and_replies_stay_in_order() {
    let (mut w, clock) = worker();
    let c = Client::connect(&mut w, 31);
    w.defer_jobs_above(0);
    let (job, a, b) = matmul_job(&c, 1, 9, 7, 5, DType::F32, Layout::RowMajor);
    let sj = c.seal(&job, 71);
    let job_frame = frame(&Message::SealedJob(sj.clone()));
    let mut bytes = job_frame.clone();
    bytes.extend(frame(&Message::Hello(Hello {})));

    let mut s = Session::new(&w);
    assert_eq!(
        s.receive(&mut w, &bytes),
        job_frame.len(),
        "stops after the job"
    );
    assert!(s.pending().is_empty() && !s.wants_read() && s.has_job());
    assert_eq!(s.receive(&mut w, &bytes[job_frame.len()..]), 0);
    let mut admitted = s.take_job().expect("the admitted job");
    assert!(s.take_job().is_none(), "handed out once");
    s.poll(&mut w);
    assert!(!s.should_close() && s.idle_since_ns().is_none());

    let done = std::thread::spawn(move || {
        admitted.execute(&mut CpuKernels, &clock);
        admitted
    })
    .join()
    .unwrap();
    s.complete_job(&mut w, done);
    assert!(s.wants_read());
    assert_eq!(
        s.receive(&mut w, &bytes[job_frame.len()..]),
        bytes.len() - job_frame.len()
    );
    let ex = finish(&mut s);
    let [Message::SealedResult(_), Message::Receipt(_), Message::Evidence(_)] = &ex.replies[..]
    else {
        panic!("{:?}", ex.replies)
    };
    let (res, receipt) = expect_result(
        &c,
        &sj,
        &Exchange {
            replies: ex.replies[..2].to_vec(),
            closed: false,
        },
    );
    let want = matmul_ref(&a, &b, 9, 7, 5);
    let got: Vec<f32> = res
        .data
        .chunks_exact(4)
        .map(|x| f32::from_le_bytes(x.try_into().unwrap()))
        .collect();
    for (g, w) in got.iter().zip(&want) {
        assert!((f64::from(*g) - w).abs() < 1e-4, "{g} vs {w}");
    }
    assert_eq!(receipt.receipt.seq, 1);
    assert_eq!(w.jobs_run(), 1);
}

#[test]
fn a_job_at_or_under_the_threshold_runs_at_once() {
    let (mut w, _) = worker();
    let c = Client::connect(&mut w, 32);
    let (job, _, _) = matmul_job(&c, 2, 4, 4, 4, DType::F32, Layout::RowMajor);
    w.defer_jobs_above(job.validate().unwrap().units);
    let sj = c.seal(&job, 72);
    let ex = exchange(&mut w, &frame(&Message::SealedJob(sj.clone())), 4096, false);
    expect_result(&c, &sj, &ex);
}

#[test]
fn a_job_handed_back_unrun_is_internal_and_a_departed_peer_waits_for_it() {
    let (mut w, _) = worker();
    let c = Client::connect(&mut w, 33);
    w.defer_jobs_above(0);
    let (job, _, _) = matmul_job(&c, 3, 4, 4, 4, DType::F32, Layout::RowMajor);
    let mut s = Session::new(&w);
    s.receive(&mut w, &frame(&Message::SealedJob(c.seal(&job, 73))));
    let admitted = s.take_job().expect("the admitted job");
    s.peer_closed(&mut w);
    s.poll(&mut w);
    assert!(!s.should_close(), "its job holds the session");
    s.complete_job(&mut w, admitted);
    let ex = finish(&mut s);
    let e = expect_error(&ex, ErrorCode::Internal);
    assert!(e.detail.contains("never ran"), "{}", e.detail);
    assert_eq!(e.job_id, Some([3; 16]));
    assert!(ex.closed, "then the session closes");
    assert_eq!(w.jobs_run(), 0);
}

fn matmul_ref(a: &[f64], b: &[f64], m: usize, n: usize, k: usize) -> Vec<f64> {
    (0..m * n)
        .map(|ij| (0..k).map(|p| a[ij / n * k + p] * b[p * n + ij % n]).sum())
        .collect()
}
