#!/usr/bin/env python3
"""Compile gates for pupa's CUDA kernels; run through check.sh (which sets up the pinned toolchain).

For each kernel: nvcc -arch=sm_90a -cubin -Xptxas -v, then cuobjdump -sass. Fails on spills,
registers over the per-kernel budget, missing HGMMA in a tensor-core kernel, any ptxas C7511/C7515
("wgmma ... serialized") warning, or a stale wgmma_gen.cuh. Prints one table row per kernel.
"""
import argparse
import re
import subprocess
import sys
from pathlib import Path

# Register budget: 384 threads with __launch_bounds__(384, 1) cap ptxas at 65536/384 -> 168;
# setmaxnreg then moves registers from the producer to the consumer warpgroups at run time.
# dyn_smem mirrors the SMEM_BYTES constants in the .cu files and kernels/src/cuda/launch.rs.
KERNELS = {
    "gemm_bf16_sm90a.cu": {
        "pupa_gemm_bf16_sm90a": {"reg_budget": 168, "hgmma": True, "dyn_smem": 197696},
    },
    "attention_fwd_sm90a.cu": {
        "pupa_attention_fwd_d64_sm90a": {"reg_budget": 168, "hgmma": True, "dyn_smem": 83000},
        "pupa_attention_fwd_d128_sm90a": {"reg_budget": 168, "hgmma": True, "dyn_smem": 164920},
    },
}
SERIALIZED = re.compile(r"C7511|C7515|wgmma.*serializ", re.IGNORECASE)


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def parse_ptxas(log):
    """Returns {function: {regs, spill_st, spill_ld, stack, smem}} from `ptxas -v` output."""
    funcs, cur = {}, None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            cur = funcs.setdefault(m.group(1), {"regs": None, "spill_st": None, "spill_ld": None, "stack": None, "smem": 0})
            continue
        if cur is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            cur["stack"], cur["spill_st"], cur["spill_ld"] = map(int, m.groups())
        m = re.search(r"Used (\d+) registers", line)
        if m:
            cur["regs"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            cur["smem"] = int(s.group(1)) if s else 0
    return funcs


def hgmma_counts(sass):
    counts, cur = {}, None
    for line in sass.splitlines():
        m = re.search(r"Function : (\w+)", line)
        if m:
            cur = m.group(1)
            counts[cur] = 0
        elif cur and "HGMMA" in line:
            counts[cur] += 1
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    failures = []

    gen = subprocess.run([sys.executable, str(args.src / "gen_wgmma.py")], capture_output=True, text=True, check=True).stdout
    if gen != (args.src / "wgmma_gen.cuh").read_text():
        failures.append("wgmma_gen.cuh is stale: run `python3 kernels/cuda/gen_wgmma.py > kernels/cuda/wgmma_gen.cuh`")

    rows = []
    for src, kernels in KERNELS.items():
        cubin = args.out / (Path(src).stem + ".cubin")
        rc, log = run(["nvcc", "-arch=sm_90a", "-cubin", "-O3", "-Xptxas", "-v", "-o", str(cubin), str(args.src / src)])
        (args.out / (Path(src).stem + ".ptxas.log")).write_text(log)
        if rc != 0:
            failures.append(f"{src}: nvcc failed (exit {rc}):\n{log}")
            continue
        for line in log.splitlines():
            if SERIALIZED.search(line):
                failures.append(f"{src}: wgmma serialised: {line.strip()}")
        funcs = parse_ptxas(log)
        rc, sass = run(["cuobjdump", "-sass", str(cubin)])
        (args.out / (Path(src).stem + ".sass")).write_text(sass)
        if rc != 0:
            failures.append(f"{src}: cuobjdump failed (exit {rc}):\n{sass}")
            continue
        hg = hgmma_counts(sass)
        for name, want in kernels.items():
            f = funcs.get(name)
            if f is None or f["regs"] is None:
                failures.append(f"{name}: no ptxas report (kernel missing from {src}?)")
                continue
            spills = (f["spill_st"] or 0) + (f["spill_ld"] or 0)
            n_hg = hg.get(name, 0)
            rows.append((name, f["regs"], want["reg_budget"], f["smem"], want["dyn_smem"], f["spill_st"], f["spill_ld"], f["stack"], n_hg))
            if spills:
                failures.append(f"{name}: spills ({f['spill_st']} B stored, {f['spill_ld']} B loaded)")
            if f["regs"] > want["reg_budget"]:
                failures.append(f"{name}: {f['regs']} registers > budget {want['reg_budget']}")
            if want["hgmma"] and n_hg == 0:
                failures.append(f"{name}: no HGMMA in SASS (tensor cores not used)")

    hdr = ("kernel", "regs", "budget", "static smem", "dynamic smem", "spill st", "spill ld", "stack", "HGMMA")
    w = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
    print("  ".join(h.ljust(w[i]) for i, h in enumerate(hdr)))
    for r in rows:
        print("  ".join(str(v).ljust(w[i]) for i, v in enumerate(r)))
    if failures:
        print("\nCUDA gates FAILED:", file=sys.stderr)
        for f in failures:
            print(f"  - {f}", file=sys.stderr)
        return 1
    print(f"\nCUDA gates passed: {len(rows)} kernels for sm_90a, no spills, within register budgets, HGMMA present, no C7511/C7515.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
