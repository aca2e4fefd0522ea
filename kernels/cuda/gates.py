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
SERIALIZED = re.compile(r"C7511|C7513|C7515|wgmma.*serializ", re.IGNORECASE)


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


def nvrtc_ptx(lib, src_dir, src, options):
    """PTX of `src` from NVRTC (the launcher's run-time path), headers passed in memory as the
    launcher inlines them. Returns (ok, ptx_or_log)."""
    import ctypes

    def check(rc, what):
        if rc != 0:
            raise RuntimeError(f"{what}: NVRTC error {rc}: {lib.nvrtcGetErrorString(rc).decode()}")

    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    prog = ctypes.c_void_p()
    names = ["hopper.cuh", "wgmma_gen.cuh"]
    hdrs = (ctypes.c_char_p * 2)(*[(src_dir / n).read_bytes() for n in names])
    incs = (ctypes.c_char_p * 2)(*[n.encode() for n in names])
    check(lib.nvrtcCreateProgram(ctypes.byref(prog), (src_dir / src).read_bytes(), src.encode(), 2, hdrs, incs), "create")
    try:
        opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        rc = lib.nvrtcCompileProgram(prog, len(options), opts)
        size = ctypes.c_size_t()
        check(lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size)), "log size")
        log = ctypes.create_string_buffer(size.value)
        check(lib.nvrtcGetProgramLog(prog, log), "log")
        if rc != 0:
            return False, log.value.decode(errors="replace")
        check(lib.nvrtcGetPTXSize(prog, ctypes.byref(size)), "ptx size")
        ptx = ctypes.create_string_buffer(size.value)
        check(lib.nvrtcGetPTX(prog, ptx), "ptx")
        return True, ptx.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def ctypes_lib(path):
    import ctypes

    return ctypes.CDLL(str(path))


def cu12_path(lib12, args, src, stem, kernels, rows, failures):
    """The cubins for NVIDIA's R535 driver (the Linux payload's, CUDA 12.2): PTX from CUDA 12's
    NVRTC, assembled by CUDA 12's ptxas for sm_90a. The driver loads a cubin of any CUDA 12
    release (CUDA minor version compatibility) but JIT-compiles PTX only up to ISA 8.2 (CUDA
    12.2), whose ptxas serialises these kernels' wgmma (C7513/C7515): so the cubins come from
    a later CUDA 12 (pinned in requirements-cu12.txt) and are gated like the others."""
    ok, ptx = nvrtc_ptx(lib12, args.src, src, nvrtc_options(args.src))
    if not ok:
        failures.append(f"cu12 {src}: NVRTC failed:\n{ptx}")
        return
    # out/cu12/<stem>.cubin: the names `pupa_kernels::cuda::Cubins::read_dir` reads.
    out12 = args.out / "cu12"
    out12.mkdir(exist_ok=True)
    ptx_file = out12 / (stem + ".ptx")
    ptx_file.write_text(ptx)
    cubin = out12 / (stem + ".cubin")
    rc, log = run([str(args.cu12_ptxas), "-arch=sm_90a", "-O3", "-v", "-o", str(cubin), str(ptx_file)])
    (out12 / (stem + ".ptxas.log")).write_text(log)
    if rc != 0:
        failures.append(f"cu12 {src}: ptxas failed (exit {rc}):\n{log}")
    else:
        gate("cu12", src, kernels, log, cubin, args.out, rows, failures)


def nvrtc_options(src_dir):
    """The NVRTC options of kernels/src/cuda/source.rs, so both paths compile alike."""
    text = (src_dir.parent / "src" / "cuda" / "source.rs").read_text()
    m = re.search(r"NVRTC_OPTIONS: \[&str; \d+\] = \[(.*?)\];", text, re.S)
    if not m:
        raise RuntimeError("NVRTC_OPTIONS not found in kernels/src/cuda/source.rs")
    return re.findall(r'"([^"]*)"', m.group(1))


def gate(path, src, kernels, log, cubin, out, rows, failures):
    """Applies the gates to one compiled source; appends table rows and failures."""
    for line in log.splitlines():
        if SERIALIZED.search(line):
            failures.append(f"{path} {src}: wgmma serialised: {line.strip()}")
    funcs = parse_ptxas(log)
    rc, sass = run(["cuobjdump", "-sass", str(cubin)])
    (out / (cubin.stem + ".sass")).write_text(sass)
    if rc != 0:
        failures.append(f"{path} {src}: cuobjdump failed (exit {rc}):\n{sass}")
        return
    hg = hgmma_counts(sass)
    for name, want in kernels.items():
        f = funcs.get(name)
        if f is None or f["regs"] is None:
            failures.append(f"{path} {name}: no ptxas report (kernel missing from {src}?)")
            continue
        spills = (f["spill_st"] or 0) + (f["spill_ld"] or 0)
        n_hg = hg.get(name, 0)
        rows.append((name, path, f["regs"], want["reg_budget"], f["smem"], want["dyn_smem"], f["spill_st"], f["spill_ld"], f["stack"], n_hg))
        if spills:
            failures.append(f"{path} {name}: spills ({f['spill_st']} B stored, {f['spill_ld']} B loaded)")
        if f["regs"] > want["reg_budget"]:
            failures.append(f"{path} {name}: {f['regs']} registers > budget {want['reg_budget']}")
        if want["hgmma"] and n_hg == 0:
            failures.append(f"{path} {name}: no HGMMA in SASS (tensor cores not used)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--nvrtc", type=Path, help="libnvrtc.so to also gate the run-time (NVRTC) path")
    ap.add_argument("--cu12-nvrtc", type=Path, help="CUDA 12 libnvrtc.so.12 for the R535 cubins")
    ap.add_argument("--cu12-ptxas", type=Path, help="the ptxas of the same CUDA 12 release")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    failures = []

    gen = subprocess.run([sys.executable, str(args.src / "gen_wgmma.py")], capture_output=True, text=True, check=True).stdout
    if gen != (args.src / "wgmma_gen.cuh").read_text():
        failures.append("wgmma_gen.cuh is stale: run `python3 kernels/cuda/gen_wgmma.py > kernels/cuda/wgmma_gen.cuh`")

    rows = []
    lib = None
    lib12 = ctypes_lib(args.cu12_nvrtc) if args.cu12_nvrtc else None
    if args.nvrtc:
        import ctypes

        lib = ctypes.CDLL(str(args.nvrtc))
        options = nvrtc_options(args.src)
    for src, kernels in KERNELS.items():
        stem = Path(src).stem
        # Build-time path: nvcc -> cubin, with ptxas -v.
        cubin = args.out / (stem + ".nvcc.cubin")
        rc, log = run(["nvcc", "-arch=sm_90a", "-cubin", "-O3", "-Xptxas", "-v", "-o", str(cubin), str(args.src / src)])
        (args.out / (stem + ".nvcc.ptxas.log")).write_text(log)
        if rc != 0:
            failures.append(f"nvcc {src}: compile failed (exit {rc}):\n{log}")
        else:
            gate("nvcc", src, kernels, log, cubin, args.out, rows, failures)
        if lib12 is not None:
            cu12_path(lib12, args, src, stem, kernels, rows, failures)
        if lib is None:
            continue
        # Run-time path: NVRTC -> PTX, then ptxas as the driver's JIT would assemble it.
        ok, ptx = nvrtc_ptx(lib, args.src, src, options)
        if not ok:
            failures.append(f"nvrtc {src}: compile failed:\n{ptx}")
            continue
        ptx_file = args.out / (stem + ".nvrtc.ptx")
        ptx_file.write_text(ptx)
        cubin = args.out / (stem + ".nvrtc.cubin")
        rc, log = run(["ptxas", "-arch=sm_90a", "-O3", "-v", "-o", str(cubin), str(ptx_file)])
        (args.out / (stem + ".nvrtc.ptxas.log")).write_text(log)
        if rc != 0:
            failures.append(f"nvrtc {src}: ptxas failed (exit {rc}):\n{log}")
        else:
            gate("nvrtc", src, kernels, log, cubin, args.out, rows, failures)

    hdr = ("kernel", "path", "regs", "budget", "static smem", "dynamic smem", "spill st", "spill ld", "stack", "HGMMA")
    w = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
    print("  ".join(h.ljust(w[i]) for i, h in enumerate(hdr)))
    for r in rows:
        print("  ".join(str(v).ljust(w[i]) for i, v in enumerate(r)))
    if failures:
        print("\nCUDA gates FAILED:", file=sys.stderr)
        for f in failures:
            print(f"  - {f}", file=sys.stderr)
        return 1
    paths = "nvcc, NVRTC" if lib else "nvcc"
    paths += " and CUDA 12 cubins" if lib12 else ""
    print(f"\nCUDA gates passed ({paths}): {len(rows)} kernel builds for sm_90a, no spills, within register budgets, HGMMA present, no C7511/C7513/C7515.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
