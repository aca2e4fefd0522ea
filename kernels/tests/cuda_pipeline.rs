//! The synchronisation of the CUDA kernels under random interleavings (model in
//! kernels/src/cuda/model/pipeline.rs): the kernels' mbarrier parities, wgmma group waits and
//! named-barrier ping-pong must never deadlock, overwrite a stage still being read, let a
//! consumer read a stale tile or leave a named barrier unbalanced; broken variants must be caught.

#[path = "../src/cuda/model/mod.rs"]
#[allow(dead_code)]
mod model;

use model::pipeline::{
    attention_programs, gemm_programs, run, MBarrier, PipeConfig, PipeError, Programs,
    ATTENTION_PIPE, GEMM_PIPE,
};

const SEEDS: u64 = 200;

/// Runs the programs for 0..=20 tiles under SEEDS interleavings each; the first failure.
fn explore(make: impl Fn(usize) -> Programs) -> Result<(), (usize, u64, PipeError)> {
    for tiles in 0..=20 {
        let prog = make(tiles);
        for seed in 0..SEEDS {
            run(&prog, seed * 1000 + tiles as u64).map_err(|e| (tiles, seed, e))?;
        }
    }
    Ok(())
}

#[test]
fn mbarrier_phase_semantics() {
    // PTX ISA, mbarrier: a fresh barrier is in phase 0; waiting on parity 1 (the phase before)
    // returns at once, parity 0 once `count` arrivals and all transaction bytes are in.
    let mut b = MBarrier::new(2);
    assert!(b.try_wait_parity(1) && !b.try_wait_parity(0));
    assert!(b.arrive_expect_tx(64));
    assert!(b.arrive(1));
    assert!(!b.try_wait_parity(0), "bytes still outstanding");
    b.complete_tx(64);
    assert!(
        b.try_wait_parity(0) && !b.try_wait_parity(1),
        "phase 0 complete, phase 1 running"
    );
    let mut full = MBarrier::new(1);
    assert!(full.arrive_expect_tx(64));
    assert!(
        !full.arrive_expect_tx(64),
        "a second arrival while bytes are outstanding overflows"
    );
}

#[test]
fn gemm_pipeline_is_hazard_free() {
    explore(|t| gemm_programs(&GEMM_PIPE, t))
        .unwrap_or_else(|(t, s, e)| panic!("{t} tiles, seed {s}: {e:?}"));
}

#[test]
fn attention_pipeline_is_hazard_free() {
    explore(|t| attention_programs(&ATTENTION_PIPE, t))
        .unwrap_or_else(|(t, s, e)| panic!("{t} tiles, seed {s}: {e:?}"));
}

fn wrong_producer(t: usize, s: usize) -> Option<u32> {
    (t >= s).then(|| ((t / s) & 1) as u32)
}
fn wrong_consumer(t: usize, s: usize) -> u32 {
    (((t / s) + 1) & 1) as u32
}
fn no_wait(_: usize, _: usize) -> Option<u32> {
    None
}

#[test]
fn broken_gemm_bookkeeping_is_caught() {
    let broken = [
        (
            "producer waits on the wrong parity",
            PipeConfig {
                producer_parity: wrong_producer,
                ..GEMM_PIPE
            },
        ),
        (
            "producer never waits",
            PipeConfig {
                producer_parity: no_wait,
                ..GEMM_PIPE
            },
        ),
        (
            "consumer waits on the wrong parity",
            PipeConfig {
                consumer_parity: wrong_consumer,
                ..GEMM_PIPE
            },
        ),
        (
            "empty barrier counts one warpgroup only",
            PipeConfig {
                empty_count: 128,
                ..GEMM_PIPE
            },
        ),
        (
            "stage released while its wgmma is in flight",
            PipeConfig {
                release_lag: 0,
                ..GEMM_PIPE
            },
        ),
    ];
    for (what, cfg) in broken {
        assert!(
            explore(|t| gemm_programs(&cfg, t)).is_err(),
            "not caught: {what}"
        );
    }
}

#[test]
fn broken_attention_bookkeeping_is_caught() {
    let broken = [
        (
            "producer waits on the wrong parity",
            PipeConfig {
                producer_parity: wrong_producer,
                ..ATTENTION_PIPE
            },
        ),
        (
            "producer never waits",
            PipeConfig {
                producer_parity: no_wait,
                ..ATTENTION_PIPE
            },
        ),
        (
            "consumer waits on the wrong parity",
            PipeConfig {
                consumer_parity: wrong_consumer,
                ..ATTENTION_PIPE
            },
        ),
        (
            "empty barrier counts one warpgroup only",
            PipeConfig {
                empty_count: 128,
                ..ATTENTION_PIPE
            },
        ),
        (
            "ping-pong never opened",
            PipeConfig {
                pingpong_open: false,
                ..ATTENTION_PIPE
            },
        ),
        (
            "ping-pong never closed",
            PipeConfig {
                pingpong_close: false,
                ..ATTENTION_PIPE
            },
        ),
    ];
    for (what, cfg) in broken {
        assert!(
            explore(|t| attention_programs(&cfg, t)).is_err(),
            "not caught: {what}"
        );
    }
}

/// The CUDA sources still perform the synchronisation modelled above (a change there must be
/// made here too, and checked by the exploration tests).
#[test]
fn model_matches_the_cuda_sources() {
    let gemm = include_str!("../cuda/gemm_bf16_sm90a.cu");
    for needle in [
        "mbar_init(&full[s], 1);",
        "mbar_init(&empty[s], 2 * 128);",
        "if (kt >= STAGES) mbar_wait(&empty[s], ((kt / STAGES) - 1) & 1);",
        "mbar_wait(&full[s], (kt / STAGES) & 1);",
        "wgmma_wait<1>();",
        "if (kt > 0) mbar_arrive(&empty[(kt - 1) % STAGES]);",
    ] {
        assert!(
            gemm.contains(needle),
            "gemm_bf16_sm90a.cu no longer has `{needle}`"
        );
    }
    let attn = include_str!("../cuda/attention_fwd_sm90a.cu");
    for needle in [
        "mbar_init(&kv_empty[s], 2 * 128);",
        "if (j >= STAGES) mbar_wait(&kv_empty[s], ((j / STAGES) - 1) & 1);",
        "const u32 parity = (j / STAGES) & 1;",
        "mbar_wait(&k_full[s], parity);",
        "mbar_wait(&v_full[s], parity);",
        "if (cw == 1) named_bar_arrive(1, 256);",
        "if (cw == 0) named_bar_sync(1, 256);",
        "mbar_arrive(&kv_empty[s]);",
    ] {
        assert!(
            attn.contains(needle),
            "attention_fwd_sm90a.cu no longer has `{needle}`"
        );
    }
    assert_eq!(
        attn.matches("named_bar_sync(my_turn, 256);").count(),
        2,
        "one turn per GEMM"
    );
    assert_eq!(
        attn.matches("named_bar_arrive(other_turn, 256);").count(),
        2,
        "one hand-over per GEMM"
    );
}
