#!/usr/bin/env python3
"""Reference timings for pupa-bench: numpy (OpenBLAS) GEMM and numpy attention.

With PUPA_BENCH_CLOCK=thread-cpu the calling thread's CPU time is measured (one thread).
Invoked by `pupa-bench` (it sets OPENBLAS_NUM_THREADS and unsets OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE), under the interpreter of its venv (numpy pinned in requirements.txt) or --python. Prints one JSON object: {"seconds": [...], "config": "..."}.

  ref_numpy.py matmul  DTYPE M N K WARMUP REPEATS
  ref_numpy.py attention DTYPE SEQ HEADS KV_HEADS DIM CAUSAL WARMUP REPEATS

numpy has no bf16/f16 GEMM kernels: for those dtypes the inputs are rounded and the product is
timed in f32 (what a user of numpy would get).
"""
import json
import os
import sys
import time

import numpy as np


def matmul(m, n, k):
    rng = np.random.default_rng()
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    c = np.empty((m, n), dtype=np.float32)
    return lambda: np.matmul(a, b, out=c)


def attention(seq, heads, kv_heads, dim, causal):
    rng = np.random.default_rng()
    q = rng.standard_normal((heads, seq, dim), dtype=np.float32)
    k = rng.standard_normal((kv_heads, seq, dim), dtype=np.float32)
    v = rng.standard_normal((kv_heads, seq, dim), dtype=np.float32)
    scale = np.float32(1.0 / np.sqrt(dim))
    mask = np.triu(np.full((seq, seq), -np.inf, dtype=np.float32), 1) if causal else None
    group = heads // kv_heads
    out = np.empty((heads, seq, dim), dtype=np.float32)

    def run():
        for h in range(heads):
            s = (q[h] @ k[h // group].T) * scale
            if mask is not None:
                s += mask
            s -= s.max(axis=1, keepdims=True)
            np.exp(s, out=s)
            s /= s.sum(axis=1, keepdims=True)
            np.matmul(s, v[h // group], out=out[h])

    return run


def main(argv):
    kind = argv[1]
    if kind == "matmul":
        _, _, _dtype, m, n, k, warm, reps = argv
        fn = matmul(int(m), int(n), int(k))
    elif kind == "attention":
        _, _, _dtype, seq, heads, kvh, dim, causal, warm, reps = argv
        fn = attention(int(seq), int(heads), int(kvh), int(dim), causal == "1")
    else:
        raise SystemExit(f"unknown benchmark {kind!r}")
    for _ in range(int(warm)):
        fn()
    clock = time.thread_time if os.environ.get("PUPA_BENCH_CLOCK") == "thread-cpu" else time.perf_counter
    secs = []
    for _ in range(int(reps)):
        t = clock()
        fn()
        secs.append(clock() - t)
    cfg = np.__version__
    try:
        cfg += " " + np.show_config(mode="dicts")["Build Dependencies"]["blas"].get("openblas configuration", "")
    except Exception:  # older numpy
        pass
    print(json.dumps({"seconds": secs, "config": cfg}))


if __name__ == "__main__":
    main(sys.argv)
