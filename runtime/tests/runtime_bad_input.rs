//! Every kind of bad input gets a specific error reply (or a closed connection where no reply
//! is possible), and a normal job on another connection succeeds right after each.

mod runtime_common;

use pupa_protocol::frame::{encode_frame, Kind, MAX_JOB_FRAME};
use pupa_protocol::job::{DType, Layout};
use pupa_protocol::msg::{ErrorCode, Hello, Message, SealedJob};
use pupa_protocol::seal::{Aead, KeyPair};
use pupa_protocol::serde_bytes::ByteBuf;
use pupa_runtime::{Config, Session};
use runtime_common::*;

#[test]
fn truncated_frame_at_eof() {
    let (mut w, _) = worker();
    let c = Client::connect(&mut w, 1);
    let (job, _, _) = matmul_job(&c, 1, 3, 3, 3, DType::F32, Layout::RowMajor);
    let f = frame(&Message::SealedJob(c.seal(&job, 1)));
    for cut in [1, 5, 6, 40, f.len() - 1] {
        let ex = exchange(&mut w, &f[..cut], 16, true);
        let e = expect_error(&ex, ErrorCode::TruncatedFrame);
        assert!(e.detail.contains(&format!("{cut} of")), "{}", e.detail);
        assert!(ex.closed);
        normal_job_succeeds(&mut w, &c, 100);
    }
}

#[test]
fn oversized_length_is_refused_before_buffering() {
    let (mut w, _) = worker();
    let c = Client::connect(&mut w, 2);
    for (kind, len) in [
        (Kind::SealedJob, MAX_JOB_FRAME + 1),
        (Kind::Hello, 1 << 20),
        (Kind::SealedJob, u32::MAX),
    ] {
        let mut bytes = len.to_le_bytes().to_vec();
        bytes.extend([1, kind as u8]);
        bytes.extend([0u8; 100]);
        let ex = exchange(&mut w, &bytes, 3, false);
        let e = expect_error(&ex, ErrorCode::FrameTooLarge);
        assert!(e.detail.contains("exceeds the limit"), "{}", e.detail);
        assert!(ex.closed);
        normal_job_succeeds(&mut w, &c, 1);
    }
}

#[test]
fn wrong_protocol_version_and_unknown_kind() {
    let (mut w, _) = worker();
    let c = Client::connect(&mut w, 3);
    let mut f = frame(&Message::Hello(Hello {}));
    f[4] = 2;
    let ex = exchange(&mut w, &f, 64, false);
    let e = expect_error(&ex, ErrorCode::UnsupportedVersion);
    assert!(e.detail.contains("version 2"), "{}", e.detail);
    assert!(ex.closed);
    normal_job_succeeds(&mut w, &c, 1);

    let ex = exchange(&mut w, &[0, 0, 0, 0, 1, 0xee], 64, false);
    expect_error(&ex, ErrorCode::UnknownKind);
    assert!(ex.closed);
    normal_job_succeeds(&mut w, &c, 2);
}

#[test]
fn garbage_bytes() {
    let (mut w, _) = worker();
    let c = Client::connect(&mut w, 4);
    let ex = exchange(&mut w, b"GET / HTTP/1.1\r\nHost: pupa\r\n\r\n", 5, false);
    // "GET " is the length, '/' (0x2f) the version byte.
    expect_error(&ex, ErrorCode::UnsupportedVersion);
    assert!(ex.closed);
    normal_job_succeeds(&mut w, &c, 1);

    // A well-framed job whose body is garbage: a message-level error, connection stays open.
    let bytes = encode_frame(Kind::SealedJob, &[0xff; 80]).unwrap();
    let mut s = Session::new(&w);
    s.receive(&mut w, &bytes);
    let ex = finish(&mut s);
    expect_error(&ex, ErrorCode::MalformedMessage);
    assert!(!ex.closed);
    // ...and the same connection still serves a job.
    let (job, _, _) = matmul_job(&c, 9, 2, 2, 2, DType::F32, Layout::RowMajor);
    let sj = c.seal(&job, 9);
    s.receive(&mut w, &frame(&Message::SealedJob(sj.clone())));
    expect_result(&c, &sj, &finish(&mut s));
    normal_job_succeeds(&mut w, &c, 2);
}

#[test]
fn random_garbage_never_panics_and_never_wedges() {
    let (mut w, _) = worker();
    let c = Client::connect(&mut w, 5);
    let mut rng = Rng(0xdead_beef);
    for round in 0..300u32 {
        let len = (rng.next() % 300) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if round % 3 == 0 && bytes.len() >= 6 {
            // Make the header plausible so bodies reach the message decoders.
            let body = (bytes.len() - 6) as u32;
            bytes[..4].copy_from_slice(&body.to_le_bytes());
            bytes[4] = 1;
            bytes[5] = 1 + (rng.next() % 7) as u8;
        }
        let ex = exchange(
            &mut w,
            &bytes,
            1 + (rng.next() % 17) as usize,
            round % 2 == 0,
        );
        for m in &ex.replies {
            assert!(
                matches!(m, Message::Error(_) | Message::Evidence(_)),
                "{m:?}"
            );
        }
    }
    normal_job_succeeds(&mut w, &c, 1);
}

#[test]
fn job_sealed_to_another_key() {
    let (mut w, _) = worker();
    let c = Client::connect(&mut w, 6);
    let (job, _, _) = matmul_job(&c, 1, 2, 2, 2, DType::F32, Layout::RowMajor);
    let other = KeyPair::derive(&[0x77; 32]);
    let sj = SealedJob::seal(&job, &other.pk, Aead::Aes256Gcm, &[1; 32]).unwrap();
    let ex = exchange(&mut w, &frame(&Message::SealedJob(sj.clone())), 4096, false);
    expect_error(&ex, ErrorCode::WrongRecipient);
    assert!(!ex.closed);
    normal_job_succeeds(&mut w, &c, 2);

    // Claiming our key as recipient does not help: HPKE `info` binds the real one.
    let mut lie = sj;
    lie.recipient = c.evidence.hpke_pk;
    let ex = exchange(&mut w, &frame(&Message::SealedJob(lie)), 4096, false);
    expect_error(&ex, ErrorCode::OpenFailed);
    normal_job_succeeds(&mut w, &c, 3);
}

#[test]
fn tampered_job() {
    let (mut w, _) = worker();
    let c = Client::connect(&mut w, 7);
    let (job, _, _) = matmul_job(&c, 1, 2, 2, 2, DType::F32, Layout::RowMajor);
    let mut sj = c.seal(&job, 1);
    sj.ciphertext[10] ^= 0x80;
    let ex = exchange(&mut w, &frame(&Message::SealedJob(sj)), 4096, false);
    expect_error(&ex, ErrorCode::OpenFailed);
    // A tampered copy must not poison the replay set for the genuine job.
    let sj = c.seal(&job, 1);
    expect_result(
        &c,
        &sj,
        &exchange(&mut w, &frame(&Message::SealedJob(sj.clone())), 4096, false),
    );
}

#[test]
fn replayed_job() {
    let (mut w, _) = worker();
    let c = Client::connect(&mut w, 8);
    let (job, _, _) = matmul_job(&c, 1, 2, 2, 2, DType::F32, Layout::RowMajor);
    let sj = c.seal(&job, 1);
    let f = frame(&Message::SealedJob(sj.clone()));
    let (_, r1) = expect_result(&c, &sj, &exchange(&mut w, &f, 4096, false));
    let ex = exchange(&mut w, &f, 4096, false);
    expect_error(&ex, ErrorCode::Replay);
    assert!(!ex.closed);
    // Twice more on one connection.
    let mut both = f.clone();
    both.extend(&f);
    let ex = exchange(&mut w, &both, 4096, false);
    assert_eq!(ex.replies.len(), 2);
    for m in &ex.replies {
        assert!(
            matches!(m, Message::Error(e) if e.code == ErrorCode::Replay),
            "{m:?}"
        );
    }
    assert_eq!(w.jobs_run(), 1, "the replay did not run");
    normal_job_succeeds(&mut w, &c, 2);
    let (job3, _, _) = matmul_job(&c, 3, 2, 2, 2, DType::F32, Layout::RowMajor);
    let sj3 = c.seal(&job3, 3);
    let (_, r3) = expect_result(
        &c,
        &sj3,
        &exchange(
            &mut w,
            &frame(&Message::SealedJob(sj3.clone())),
            4096,
            false,
        ),
    );
    assert_eq!(
        (r1.receipt.seq, r3.receipt.seq),
        (1, 3),
        "no receipt for the replays"
    );
}

#[test]
fn invalid_jobs_get_specific_errors_with_their_id() {
    let (mut w, _) = worker();
    let c = Client::connect(&mut w, 9);
    let (good, _, _) = matmul_job(&c, 1, 2, 3, 4, DType::F32, Layout::RowMajor);
    let mut cases = Vec::new();
    let mut j = good.clone();
    j.tensors[1] = ByteBuf::from(vec![0u8; 7]);
    cases.push((j, "tensor 1 has 7 bytes"));
    let mut j = good.clone();
    j.tensors.push(ByteBuf::new());
    cases.push((j, "expected 2 tensors, got 3"));
    let mut j = good.clone();
    j.dtype = DType::F16;
    cases.push((j, "tensor 0 has 32 bytes, its shape needs 16"));
    let mut j = good.clone();
    j.reply_key = [0; 32];
    cases.push((j, "reply key"));
    for (i, (mut job, needle)) in cases.into_iter().enumerate() {
        job.client_seq = next_seq();
        let ex = exchange(
            &mut w,
            &frame(&Message::SealedJob(c.seal(&job, 10 + i as u8))),
            4096,
            false,
        );
        let e = expect_error(&ex, ErrorCode::InvalidJob);
        assert_eq!(e.job_id, Some(job.job_id));
        assert!(e.detail.contains(needle), "{} !~ {needle}", e.detail);
        assert!(!ex.closed);
        normal_job_succeeds(&mut w, &c, 50 + i as u8);
    }
}

#[test]
fn guest_to_client_kinds_are_unexpected() {
    let (mut w, _) = worker();
    let c = Client::connect(&mut w, 10);
    let ex = exchange(
        &mut w,
        &frame(&Message::Evidence(c.evidence.clone())),
        4096,
        false,
    );
    expect_error(&ex, ErrorCode::UnexpectedMessage);
    assert!(!ex.closed);
    normal_job_succeeds(&mut w, &c, 1);
}

#[test]
fn a_stalled_client_times_out_without_blocking_others() {
    let (mut w, clock) = worker();
    let c = Client::connect(&mut w, 11);
    let (job, _, _) = matmul_job(&c, 1, 2, 2, 2, DType::F32, Layout::RowMajor);
    let f = frame(&Message::SealedJob(c.seal(&job, 1)));
    let mut staller = Session::new(&w);
    staller.receive(&mut w, &f[..20]);
    // The frame's deadline is absolute (10 s + its length at 1 MiB/s, from its first byte):
    // trickling a byte every 3 s does not extend it.
    for i in 0..3 {
        clock.advance_s(3);
        staller.receive(&mut w, &f[20 + i..21 + i]);
        staller.poll(&mut w);
        assert!(staller.pending().is_empty() && !staller.should_close());
        // Others are served while it stalls.
        normal_job_succeeds(&mut w, &c, 2 + i as u8);
    }
    clock.advance_s(2);
    staller.poll(&mut w);
    let ex = finish(&mut staller);
    let e = expect_error(&ex, ErrorCode::TruncatedFrame);
    assert!(e.detail.contains("deadline"), "{}", e.detail);
    assert!(ex.closed);
    normal_job_succeeds(&mut w, &c, 9);

    // An idle connection (no partial frame) is closed silently after the idle timeout.
    let mut idle = Session::new(&w);
    clock.advance_s(59);
    idle.poll(&mut w);
    assert!(!idle.should_close());
    clock.advance_s(2);
    idle.poll(&mut w);
    assert!(idle.should_close() && idle.pending().is_empty());
}

#[test]
fn a_client_that_does_not_read_is_backpressured() {
    let (mut w, _) = worker_with(Config {
        max_output_backlog: 4096,
        ..Config::default()
    });
    let c = Client::connect(&mut w, 12);
    let hello = frame(&Message::Hello(Hello {}));
    let mut s = Session::new(&w);
    let mut accepted = 0;
    for _ in 0..1000 {
        accepted += usize::from(s.receive(&mut w, &hello) > 0);
    }
    assert!(!s.wants_read());
    assert!(accepted < 1000);
    let held = s.pending().len();
    assert!(held <= 4096 + 2 * 1024, "backlog bounded, got {held}");
    normal_job_succeeds(&mut w, &c, 1);
    // Once drained, it reads again and every accepted Hello got its evidence.
    let mut replies = 0;
    loop {
        let ex = finish(&mut s);
        replies += ex.replies.len();
        s.poll(&mut w);
        if s.pending().is_empty() {
            break;
        }
    }
    assert!(s.wants_read());
    assert_eq!(replies, accepted);
}
