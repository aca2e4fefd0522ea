#!/usr/bin/env bash
# For the first person with an H100/H200: every GPU check in one command.
#
#   1. the CUDA kernels against the CPU f64 reference (and the CPU model) over the job shapes the
#      guest accepts: `cargo test --features cuda --test cuda_gpu` with PUPA_REQUIRE_GPU=1, so a
#      test that cannot reach the GPU fails instead of skipping;
#   2. the benchmark: pupa's bf16 GEMM beside cuBLAS (cublasGemmEx, same run) and attention
#      against its FLOP count (pupa-bench --backend cuda; tables and JSON under $OUT);
#   3. pupa-worker --compute cuda serving sealed bf16 matmul and attention jobs end to end
#      (pupa-client run checks each result against the f64 reference and verifies the receipt).
#
# Without an NVIDIA GPU and driver it says so and exits 0: nothing was executed, and it does not
# claim otherwise. It is not part of tests/all.sh (this machine class has no GPU).
#
# Environment: OUT (default target/gpu-check).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-target/gpu-check}"

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU or driver on this machine (nvidia-smi absent or lists no GPU): nothing executed"
  exit 0
fi
gpus="$(nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader)"
echo "gpu-check: $gpus"
if ! grep -q ", 9\.0," <<<"$gpus"; then
  echo "gpu-check: pupa's CUDA kernels need a Hopper GPU (compute capability 9.0, sm_90a); none found: nothing executed"
  exit 0
fi
mkdir -p "$OUT"

echo "== 0. compile gates; the CUDA 12 cubins for the R535 driver (target/cuda-gates/cu12)"
bash kernels/cuda/check.sh | tee "$OUT/gates.txt"

echo "== 1. kernels vs the f64 reference, the CUDA 12 cubins vs NVRTC (cuda_gpu, GPU required)"
PUPA_REQUIRE_GPU=1 cargo test --locked --release -p pupa-kernels --features cuda --test cuda_gpu \
  -- --nocapture 2>&1 | tee "$OUT/cuda_gpu.log"

echo "== 2. benchmark: GEMM beside cuBLAS, attention (bf16)"
cargo build --locked --release -q -p pupa-kernels --features cuda --bin pupa-bench
bench=target/release/pupa-bench
"$bench" matmul --backend cuda --dtype bf16 --m 1024,2048,4096,8192 --n 4096 --k 4096 \
  | tee "$OUT/gemm.txt"
"$bench" matmul --backend cuda --dtype bf16 --m 1024,2048,4096,8192 --n 4096 --k 4096 --json \
  >"$OUT/gemm.json"
for d in 64 128; do
  "$bench" attention --backend cuda --dtype bf16 --seq 1024,4096,16384 --heads 16 --dim "$d" \
    | tee "$OUT/attention_d$d.txt"
done

echo "== 3. pupa-worker --compute cuda, sealed jobs end to end"
cargo build --locked --release -q -p pupa-worker --features cuda
cargo build --locked --release -q -p pupa-host --bin pupa-client
port=$((20000 + RANDOM % 20000))
target/release/pupa-worker --listen "127.0.0.1:$port" --tee dev --compute cuda \
  >"$OUT/worker.out" 2>"$OUT/worker.log" &
worker=$!
trap 'kill $worker 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  grep -q "listening on" "$OUT/worker.out" 2>/dev/null && break
  kill -0 "$worker" 2>/dev/null || { cat "$OUT/worker.log"; exit 1; }
  sleep 0.1
done
jobs=(
  '{"op":"matmul","m":512,"n":1024,"k":768,"dtype":"bf16","seed":1}'
  '{"op":"attention","seq_q":1024,"seq_k":1024,"heads":8,"kv_heads":2,"dim":128,"causal":true,"dtype":"bf16","seed":2}'
  '{"op":"attention","seq_q":512,"seq_k":2048,"heads":4,"dim":64,"causal":false,"dtype":"bf16","seed":3}'
)
i=0
for j in "${jobs[@]}"; do
  i=$((i + 1))
  echo "$j" >"$OUT/job$i.json"
  target/release/pupa-client run --worker "127.0.0.1:$port" --allow-insecure-dev "$OUT/job$i.json"
done
if ! grep -q "CUDA: pupa's Hopper kernels compiled" "$OUT/worker.log" \
  || grep -q "CUDA job failed" "$OUT/worker.log"; then
  echo "gpu-check: the jobs did not all run on the GPU (worker log):"; cat "$OUT/worker.log"; exit 1
fi
echo "gpu-check: all GPU checks passed (logs under $OUT)"
