// pupa attention forward for Hopper (sm_90a), FlashAttention-2/3 style: bf16 Q, K, V, f32
// accumulation and f32 output O = softmax(scale * Q K^T [+ causal mask]) V, head dims 64 and 128,
// multi-head and grouped-query (H query heads share H/Hkv key/value heads).
//
// Layouts (row-major, innermost last), those of pupa_kernels::attention and FlashAttention's
// (seqlen, nheads, headdim): Q, O [Sq][H][D]; K, V [Sk][Hkv][D]; query head h reads key/value
// head h / (H / Hkv). TMA sees each as a 3-D tensor (D, heads, seq) and loads (64, 1, 128) boxes.
// Causal masking is bottom-right aligned (query i sees keys j <= i + Sk - Sq, FlashAttention
// >= 2.1); a query row that sees no key gets zeros. Scale: softmax(scale * S) with scale_log2 =
// scale * log2(e) passed in.
//
// Structure (one CTA per 128 query rows of one head, 384 threads):
//   warpgroup 0     producer: one thread loads the Q tile once, then K and V tiles of BKV = 128
//                   keys through TMA (128-byte swizzle, 64-column boxes) into a 2-stage ring;
//   warpgroups 1,2  consumers: each owns 64 query rows. Per KV tile:
//                   S = Q K^T       wgmma m64n128k16, A and B from shared memory (K-major);
//                   mask, online softmax in registers (base-2 exponent, running max m, partial
//                   row sums l kept per thread and reduced across the quad only at the end);
//                   O = O * alpha + P V  wgmma m64nDk16 with P taken straight from the S
//                   accumulator registers as the A operand (RS form; the accumulator and
//                   A-fragment layouts line up, see kernels/src/cuda/model/fragments.rs) and V
//                   read MN-major (trans-b = 1).
//                   The two consumer warpgroups take turns on the tensor cores (FlashAttention-3
//                   "ping-pong" scheduling, Shah et al. 2024, section 3.1): named barrier 1 + w
//                   is warpgroup w's turn; each issues its GEMM, hands the turn over and does its
//                   softmax while the other's GEMM runs.
// The tiling and softmax bookkeeping are modelled on the CPU in kernels/src/cuda/model/attention.rs
// (`attention_tiled`), the synchronisation in model/pipeline.rs (`attention_programs`).
#include "hopper.cuh"
#include "wgmma_gen.cuh"

// -inf without <math.h> (NVRTC compiles this file without system headers).
#define NEG_INF __int_as_float(0xff800000u)

namespace attn {
constexpr int BM = 128, BKV = 128, STAGES = 2;
constexpr int THREADS = 384;
template <int D>
struct Cfg {
  static constexpr int CHUNKS = D / 64;                  // 64-column (128-byte) TMA boxes per row
  static constexpr u32 Q_BYTES = BM * D * 2;
  static constexpr u32 KV_BYTES = BKV * D * 2;           // one K or one V tile
  static constexpr u32 SMEM_BYTES = 1024 + Q_BYTES + STAGES * 2 * KV_BYTES + (1 + 3 * STAGES) * 8;
  static_assert(SMEM_BYTES <= 227 * 1024, "over the sm_90 dynamic shared-memory limit");
};
}  // namespace attn

// Rows of one warpgroup's accumulator a thread owns: r = 0 -> row l/4, r = 1 -> row l/4 + 8 (within
// its warp's 16 rows); register i belongs to row (i/2)%2 and column 8*(i/4) + 2*(l%4) + i%2.
template <int R>
static __device__ __forceinline__ void scale_rows(float (&o)[R], float a0, float a1) {
#pragma unroll
  for (int i = 0; i < R; ++i) o[i] *= ((i / 2) % 2) ? a1 : a0;
}

template <int D>
static __device__ __forceinline__ void attention_body(const TmaDesc* tq, const TmaDesc* tk, const TmaDesc* tv,
                                                      float* __restrict__ out, int H, int Hkv, int Sq, int Sk,
                                                      float scale_log2, int causal) {
  using namespace attn;
  using C = Cfg<D>;
  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem = smem_raw + ((1024 - (smem_u32(smem_raw) & 1023)) & 1023);
  unsigned char* s_q = smem;                                 // [CHUNKS][BM][64] bf16, swizzled
  unsigned char* s_k = smem + C::Q_BYTES;                    // STAGES x [CHUNKS][BKV][64]
  unsigned char* s_v = s_k + STAGES * C::KV_BYTES;           // STAGES x [CHUNKS][BKV][64]
  u64* q_full = reinterpret_cast<u64*>(s_v + STAGES * C::KV_BYTES);
  u64* k_full = q_full + 1;
  u64* v_full = k_full + STAGES;
  u64* kv_empty = v_full + STAGES;

  const int wg = threadIdx.x / 128;
  const int tid = threadIdx.x % 128;
  const int h = blockIdx.y;
  const int h_kv = h / (H / Hkv);
  const int m0 = blockIdx.x * BM;
  // KV tiles this CTA needs: all of them, or (causal) up to the last key its last row sees.
  int n_tiles = (Sk + BKV - 1) / BKV;
  if (causal) {
    const int last_key = min(m0 + BM - 1, Sq - 1) + Sk - Sq;  // may be negative: no key at all
    n_tiles = last_key < 0 ? 0 : min(n_tiles, last_key / BKV + 1);
  }

  if (threadIdx.x == 0) {
    mbar_init(q_full, 1);
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(&k_full[s], 1);
      mbar_init(&v_full[s], 1);
      mbar_init(&kv_empty[s], 2 * 128);
    }
    mbar_fence_init();
  }
  __syncthreads();

  if (wg == 0) {
    setmaxnreg_dec<24>();
    if (tid == 0) {
      mbar_arrive_expect_tx(q_full, C::Q_BYTES);
      for (int c = 0; c < C::CHUNKS; ++c) tma_load_3d(s_q + c * BM * 128, tq, q_full, 64 * c, h, m0);
      for (int j = 0; j < n_tiles; ++j) {
        const int s = j % STAGES;
        if (j >= STAGES) mbar_wait(&kv_empty[s], ((j / STAGES) - 1) & 1);
        mbar_arrive_expect_tx(&k_full[s], C::KV_BYTES);
        for (int c = 0; c < C::CHUNKS; ++c)
          tma_load_3d(s_k + s * C::KV_BYTES + c * BKV * 128, tk, &k_full[s], 64 * c, h_kv, j * BKV);
        mbar_arrive_expect_tx(&v_full[s], C::KV_BYTES);
        for (int c = 0; c < C::CHUNKS; ++c)
          tma_load_3d(s_v + s * C::KV_BYTES + c * BKV * 128, tv, &v_full[s], 64 * c, h_kv, j * BKV);
      }
    }
    return;
  }

  setmaxnreg_inc<240>();
  const int cw = wg - 1;
  const int my_turn = 1 + cw, other_turn = 2 - cw;  // named barrier ids (0 is __syncthreads')
  if (cw == 1) named_bar_arrive(1, 256);          // warpgroup 0 goes first
  const int warp = tid / 32, lane = tid % 32;
  const int row0 = m0 + cw * 64 + warp * 16 + lane / 4;  // query row of r = 0; r = 1 is row0 + 8
  const int diag = Sk - Sq;                              // causal: key j visible iff j <= row + diag

  float o[D / 2];
#pragma unroll
  for (int i = 0; i < D / 2; ++i) o[i] = 0.0f;
  float m_run[2] = {NEG_INF, NEG_INF};  // running max of scale_log2 * s, per owned row
  float l_run[2] = {0.0f, 0.0f};            // this thread's partial row sums of p

  mbar_wait(q_full, 0);
  const u32 q_base = smem_u32(s_q) + cw * 64 * 128;
  for (int j = 0; j < n_tiles; ++j) {
    const int s = j % STAGES;
    const u32 parity = (j / STAGES) & 1;
    float sc[BKV / 2];
    mbar_wait(&k_full[s], parity);
    const u32 k_base = smem_u32(s_k + s * C::KV_BYTES);
    named_bar_sync(my_turn, 256);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const int c = kk / 4, off = (kk % 4) * 32;
      const u64 dq = smem_desc_sw128(q_base + c * BM * 128 + off, 16, 1024);
      const u64 dk = smem_desc_sw128(k_base + c * BKV * 128 + off, 16, 1024);
      wgmma_ss_m64n128k16_tb0(sc, dq, dk, kk > 0 ? 1 : 0);
    }
    wgmma_commit();
    named_bar_arrive(other_turn, 256);
    wgmma_wait<0>();
    reg_fence(sc);

    // Mask: keys past Sk (TMA zero-filled them) and, if causal, keys after the diagonal. Only the
    // tiles that can hold such keys for this warpgroup's rows pay for it.
    const int key0 = j * BKV + 2 * (lane % 4);
    const bool edge = (j + 1) * BKV > Sk || (causal && (j + 1) * BKV - 1 > m0 + cw * 64 + diag);
    if (edge) {
#pragma unroll
      for (int i = 0; i < BKV / 2; ++i) {
        const int key = key0 + 8 * (i / 4) + (i % 2);
        const int row = row0 + 8 * ((i / 2) % 2);
        if (key >= Sk || (causal && key > row + diag)) sc[i] = NEG_INF;
      }
    }

    // Online softmax (FlashAttention-2 Algorithm 1, base 2): m' = max(m, rowmax(scale*s)),
    // p = 2^(scale*s - m'), alpha = 2^(m - m'), l = alpha*l + rowsum(p), O = alpha*O.
    float alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = NEG_INF;
#pragma unroll
      for (int i = 0; i < BKV / 2; ++i)
        if ((i / 2) % 2 == r) mx = fmaxf(mx, sc[i]);
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m_run[r], mx * scale_log2);
      const float m_use = m_new == NEG_INF ? 0.0f : m_new;  // a fully masked row so far
      alpha[r] = exp2f(m_run[r] - m_use);
      m_run[r] = m_new;
      float sum = 0.0f;
#pragma unroll
      for (int i = 0; i < BKV / 2; ++i)
        if ((i / 2) % 2 == r) {
          sc[i] = exp2f(sc[i] * scale_log2 - m_use);
          sum += sc[i];
        }
      l_run[r] = l_run[r] * alpha[r] + sum;
    }
    scale_rows(o, alpha[0], alpha[1]);

    // O += P V. P's A fragment for K slice ks (keys 16ks..16ks+15) is accumulator registers
    // 8ks..8ks+7 packed in pairs (PTX ISA 9.7.15.5.1.1.1: the m64nNk16 D layout of two adjacent
    // 8-column groups equals the m64k16 A register layout).
    mbar_wait(&v_full[s], parity);
    const u32 v_base = smem_u32(s_v + s * C::KV_BYTES);
    named_bar_sync(my_turn, 256);
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < BKV / 16; ++ks) {
      const u32 a[4] = {pack_bf16x2(sc[8 * ks + 0], sc[8 * ks + 1]), pack_bf16x2(sc[8 * ks + 2], sc[8 * ks + 3]),
                        pack_bf16x2(sc[8 * ks + 4], sc[8 * ks + 5]), pack_bf16x2(sc[8 * ks + 6], sc[8 * ks + 7])};
      // V tile, MN-major (D contiguous), 128-byte swizzle: 16 keys = 16 rows of 128 bytes;
      // SBO = 1024 (next 8 keys), LBO = the next 64-column chunk of D.
      const u64 dv = smem_desc_sw128(v_base + ks * 16 * 128, BKV * 128, 1024);
      if constexpr (D == 128) {
        wgmma_rs_m64n128k16_tb1(o, a, dv, 1);
      } else {
        wgmma_rs_m64n64k16_tb1(o, a, dv, 1);
      }
    }
    wgmma_commit();
    named_bar_arrive(other_turn, 256);
    wgmma_wait<0>();
    reg_fence(o);
    mbar_arrive(&kv_empty[s]);
  }
  if (cw == 0) named_bar_sync(1, 256);  // consume warpgroup 1's last hand-over: barriers balanced

  // Finish: the four threads of a quad share two rows; sum their partial l, then O / l.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 1);
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 2);
  }
  const float inv0 = l_run[0] > 0.0f ? 1.0f / l_run[0] : 0.0f;
  const float inv1 = l_run[1] > 0.0f ? 1.0f / l_run[1] : 0.0f;
#pragma unroll
  for (int i = 0; i < D / 2; i += 2) {
    const int r = (i / 2) % 2;
    const int row = row0 + 8 * r;
    const int col = 8 * (i / 4) + 2 * (lane % 4);
    if (row < Sq) {
      const float inv = r ? inv1 : inv0;
      float* dst = out + (static_cast<unsigned long long>(row) * H + h) * D + col;
      *reinterpret_cast<float2*>(dst) = make_float2(o[i] * inv, o[i + 1] * inv);
    }
  }
}

extern "C" __global__ void __launch_bounds__(attn::THREADS, 1)
    pupa_attention_fwd_d64_sm90a(const __grid_constant__ TmaDesc tq, const __grid_constant__ TmaDesc tk,
                                 const __grid_constant__ TmaDesc tv, float* __restrict__ out, int H, int Hkv,
                                 int Sq, int Sk, float scale_log2, int causal) {
  attention_body<64>(&tq, &tk, &tv, out, H, Hkv, Sq, Sk, scale_log2, causal);
}

extern "C" __global__ void __launch_bounds__(attn::THREADS, 1)
    pupa_attention_fwd_d128_sm90a(const __grid_constant__ TmaDesc tq, const __grid_constant__ TmaDesc tk,
                                  const __grid_constant__ TmaDesc tv, float* __restrict__ out, int H, int Hkv,
                                  int Sq, int Sk, float scale_log2, int causal) {
  attention_body<128>(&tq, &tk, &tv, out, H, Hkv, Sq, Sk, scale_log2, causal);
}
