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
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 1 {
        // A job plaintext, as it would come out of a successful HPKE open.
        if let Ok((job, _)) = postcard::take_from_bytes::<Job>(rest) {
            let _ = job.validate();
            // The canonical check agrees with a re-encoding.
            let enc = postcard::to_allocvec(&job).expect("re-encode");
            let used = rest.len()
                - postcard::take_from_bytes::<Job>(rest)
                    .map(|(_, r)| r.len())
                    .unwrap_or(0);
            assert_eq!(
                pupa_protocol::canonical::is_canonical(&job, &rest[..used]),
                enc == rest[..used]
            );
        }
        return;
    }
    // The byte stream, fed in chunks whose size the mode byte picks (1..=128).
    let chunk = usize::from(mode >> 1) + 1;
    let guest = KeyPair::derive(&[7; 32]);
    let mut dec = FrameDecoder::new();
    // As the guest's session feeds it: never past the next frame boundary, growth through a
    // budget (here 1 MiB of buffer in all, so that huge announced frames are refused).
    let mut granted = 0usize;
    let mut input = rest.chunks(chunk).flat_map(|c| {
        let mut v = Vec::new();
        let mut c = c;
        while !c.is_empty() {
            let (a, b) = c.split_at(c.len().min(7));
            v.push(a);
            c = b;
        }
        v
    });
    while let Some(mut piece) = input.next() {
        while !piece.is_empty() {
            let want = dec.wanted().max(1).min(piece.len());
            let (now, later) = piece.split_at(want);
            piece = later;
            let before = dec.capacity();
            let fed = dec.try_feed(now, |more| {
                granted + more <= 1 << 20 && {
                    granted += more;
                    true
                }
            });
            if fed.is_err() {
                return; // refused by the budget: the session answers Busy and closes
            }
            assert!(dec.capacity() >= before);
            if let Some((kind, len)) = dec.announced() {
                assert!(len <= kind.max_len());
                assert!(dec.buffered() <= pupa_protocol::frame::HEADER_LEN + len as usize);
            }
            if dec.wanted() > 0 {
                continue;
            }
            if !drain(&mut dec, &guest) {
                return;
            }
        }
    }
    let _ = dec.finish();
});

/// Takes every complete frame; false once the decoder failed.
fn drain(dec: &mut FrameDecoder, guest: &KeyPair) -> bool {
    loop {
        match dec.next_frame() {
            Ok(Some(frame)) => {
                assert!(frame.body.len() <= frame.kind.max_len() as usize);
                if let Ok(msg) = Message::from_frame(&frame) {
                    // Whatever decodes is canonical: it re-encodes to the same bytes.
                    let re = msg.to_frame().expect("re-encode");
                    assert_eq!(&re[pupa_protocol::frame::HEADER_LEN..], &frame.body[..]);
                    if let Message::SealedJob(sj) = msg {
                        let _ = sj.open_owned(guest).map(|j| j.validate());
                    }
                }
            }
            Ok(None) => return true,
            Err(_) => {
                assert!(dec.next_frame().is_err(), "decoder errors are sticky");
                return false;
            }
        }
    }
}
