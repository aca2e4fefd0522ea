//! Fuzzes what the guest does with bytes from the network: the streaming frame decoder fed
//! in arbitrary splits, message decoding of every frame, opening of sealed jobs under a fixed
//! guest key, and postcard decoding + validation of job plaintexts (which a fuzzer cannot
//! reach through HPKE). Any panic, overflow or unbounded allocation is a bug.
//!
//! Run (from protocol/fuzz, nightly): `cargo fuzz run frame_decoder -- -max_total_time=600`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pupa_protocol::frame::FrameDecoder;
use pupa_protocol::job::Job;
use pupa_protocol::msg::Message;
use pupa_protocol::seal::KeyPair;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 1 {
        // A job plaintext, as it would come out of a successful HPKE open.
        if let Ok((job, _)) = postcard::take_from_bytes::<Job>(rest) {
            let _ = job.validate();
        }
        return;
    }
    // The byte stream, fed in chunks whose size the mode byte picks (1..=128).
    let chunk = usize::from(mode >> 1) + 1;
    let guest = KeyPair::derive(&[7; 32]);
    let mut dec = FrameDecoder::new();
    for piece in rest.chunks(chunk) {
        dec.feed(piece);
        loop {
            match dec.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.body.len() <= frame.kind.max_len() as usize);
                    if let Ok(msg) = Message::from_frame(&frame) {
                        // Whatever decodes must re-encode and decode to the same message.
                        // (Not byte-identical: postcard accepts non-minimal varints; nothing
                        // hashes or signs the outer encoding, so that malleability is harmless.)
                        let re = msg.to_frame().expect("re-encode");
                        let mut d2 = FrameDecoder::new();
                        d2.feed(&re);
                        let f2 = d2.next_frame().expect("re-decode").expect("whole frame");
                        assert_eq!(Message::from_frame(&f2).expect("re-decode message"), msg);
                        if let Message::SealedJob(sj) = msg {
                            let _ = sj.open_owned(&guest).map(|j| j.validate());
                        }
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    assert!(dec.next_frame().is_err(), "decoder errors are sticky");
                    return;
                }
            }
        }
    }
    let _ = dec.finish();
});
