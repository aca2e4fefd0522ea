// pupa bf16 GEMM for Hopper (sm_90a): C[M,N] (f32, row-major) = A[M,K] * B[N,K]^T, with A and B
// bf16 row-major (B given as N x K, the "TN" layout of a weight matrix), f32 accumulation.
//
// Structure (warp-specialised, one CTA per 128x256 output tile, 384 threads):
//   warpgroup 0     producer: one thread issues TMA loads of 128x64 A and 256x64 B tiles
//                   (128-byte swizzle) into a 4-stage ring guarded by mbarriers;
//   warpgroups 1,2  consumers: each owns 64 rows of the tile and runs wgmma.mma_async m64n256k16
//                   (four per 64-wide K tile) with both operands read from shared memory through
//                   matrix descriptors, keeping one K tile of MMAs in flight and releasing a
//                   stage as soon as the MMAs that read it have completed.
// Ragged edges: TMA fills out-of-bounds rows/columns with zeros (so a K tail adds nothing) and the
// epilogue bounds-checks every store. K must be a multiple of 8 (TMA global strides are 16-byte
// multiples); the launcher checks it. The tiling is modelled on the CPU in
// kernels/src/cuda/model.rs (`gemm_tiled`), which the tests check against an f64 reference.
#include "hopper.cuh"
#include "wgmma_gen.cuh"

namespace gemm {
constexpr int BM = 128, BN = 256, BK = 64, STAGES = 4;
constexpr int THREADS = 384;
constexpr u32 A_BYTES = BM * BK * 2, B_BYTES = BN * BK * 2, STAGE_BYTES = A_BYTES + B_BYTES;
// Tiles first (each 1024-byte aligned, as the 128-byte swizzle pattern repeats every 1024 bytes),
// then the barriers. The launcher requests SMEM_BYTES of dynamic shared memory.
constexpr u32 SMEM_BYTES = 1024 + STAGES * STAGE_BYTES + 2 * STAGES * 8;
static_assert(SMEM_BYTES <= 227 * 1024, "over the sm_90 dynamic shared-memory limit");
}  // namespace gemm

extern "C" __global__ void __launch_bounds__(gemm::THREADS, 1)
    pupa_gemm_bf16_sm90a(const __grid_constant__ TmaDesc tma_a, const __grid_constant__ TmaDesc tma_b,
                         float* __restrict__ c, int M, int N, int K) {
  using namespace gemm;
  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem = smem_raw + ((1024 - (smem_u32(smem_raw) & 1023)) & 1023);
  unsigned char* s_a = smem;                          // STAGES x [BM][BK] bf16, swizzled
  unsigned char* s_b = smem + STAGES * A_BYTES;       // STAGES x [BN][BK] bf16, swizzled
  u64* full = reinterpret_cast<u64*>(smem + STAGES * STAGE_BYTES);
  u64* empty = full + STAGES;

  const int wg = threadIdx.x / 128;
  const int tid = threadIdx.x % 128;
  const int m0 = blockIdx.y * BM;
  const int n0 = blockIdx.x * BN;
  const int ktiles = (K + BK - 1) / BK;

  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(&full[s], 1);
      mbar_init(&empty[s], 2 * 128);
    }
    mbar_fence_init();
  }
  __syncthreads();

  if (wg == 0) {
    setmaxnreg_dec<40>();
    if (tid == 0) {
      tma_prefetch_desc(&tma_a);
      tma_prefetch_desc(&tma_b);
      for (int kt = 0; kt < ktiles; ++kt) {
        const int s = kt % STAGES;
        if (kt >= STAGES) mbar_wait(&empty[s], ((kt / STAGES) - 1) & 1);
        mbar_arrive_expect_tx(&full[s], STAGE_BYTES);
        tma_load_2d(s_a + s * A_BYTES, &tma_a, &full[s], kt * BK, m0);
        tma_load_2d(s_b + s * B_BYTES, &tma_b, &full[s], kt * BK, n0);
      }
    }
    return;
  }

  setmaxnreg_inc<232>();
  const int cw = wg - 1;  // consumer warpgroup: rows [64*cw, 64*cw + 64) of the tile
  float acc[128];
#pragma unroll
  for (int i = 0; i < 128; ++i) acc[i] = 0.0f;

  for (int kt = 0; kt < ktiles; ++kt) {
    const int s = kt % STAGES;
    mbar_wait(&full[s], (kt / STAGES) & 1);
    const u32 a_base = smem_u32(s_a + s * A_BYTES) + cw * 64 * 128;
    const u32 b_base = smem_u32(s_b + s * B_BYTES);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      // K-major, 128-byte swizzle: rows are 128 bytes, 8-row groups 1024 bytes apart (SBO); a
      // 16-wide K step is 32 bytes inside the swizzle atom (LBO unused for this layout).
      const u64 da = smem_desc_sw128(a_base + kk * 32, 16, 1024);
      const u64 db = smem_desc_sw128(b_base + kk * 32, 16, 1024);
      wgmma_ss_m64n256k16_tb0(acc, da, db, 1);
    }
    wgmma_commit();
    // Keep this tile's MMAs in flight while the next stage is waited for: wait only for the
    // previous group, then hand its stage back to the producer.
    wgmma_wait<1>();
    if (kt > 0) mbar_arrive(&empty[(kt - 1) % STAGES]);
  }
  wgmma_wait<0>();
  reg_fence(acc);

  // Epilogue. Accumulator fragment (PTX ISA 9.7.15.5.1.1.1 "Matrix Fragments for wgmma.mma_async.m64nNk16", D):
  // warp w, lane l, register i -> row 16w + l/4 + 8*((i/2)%2), column 8*(i/4) + 2*(l%4) + i%2.
  const int warp = tid / 32, lane = tid % 32;
  const int row_base = m0 + cw * 64 + warp * 16 + lane / 4;
  const int col_base = n0 + 2 * (lane % 4);
#pragma unroll
  for (int i = 0; i < 128; i += 2) {
    const int row = row_base + 8 * ((i / 2) % 2);
    const int col = col_base + 8 * (i / 4);
    if (row < M) {
      float* dst = c + static_cast<unsigned long long>(row) * N + col;
      if (col + 1 < N && (N % 2) == 0) {
        *reinterpret_cast<float2*>(dst) = make_float2(acc[i], acc[i + 1]);
      } else {
        if (col < N) dst[0] = acc[i];
        if (col + 1 < N) dst[1] = acc[i + 1];
      }
    }
  }
}
