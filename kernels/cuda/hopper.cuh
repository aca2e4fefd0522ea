// Hopper (sm_90a) building blocks written by hand as inline PTX: mbarriers, TMA, wgmma fences
// and shared-memory matrix descriptors. CUTLASS/CuTe would provide these but are not part of the
// pinned CUDA wheels (cccl has no CuTe), so pupa writes the few it needs. Each wrapper names the
// PTX ISA section it implements (by title; numbers as in PTX ISA 9.x). Self-contained on purpose: the Rust
// launcher feeds this text to NVRTC (no system headers there).
#pragma once

typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned short bf16_bits;

// Opaque 128-byte CUtensorMap, passed by value as a __grid_constant__ kernel parameter.
struct __align__(64) TmaDesc {
  u64 opaque[16];
};

static __device__ __forceinline__ u32 smem_u32(const void* p) {
  return static_cast<u32>(__cvta_generic_to_shared(p));
}

// ---- mbarrier (PTX ISA "Parallel Synchronization and Communication Instructions: mbarrier") ----
static __device__ __forceinline__ void mbar_init(u64* bar, u32 count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(count));
}
// Makes barrier initialisation visible to the async proxy (TMA) (PTX ISA "membar/fence": fence.mbarrier_init).
static __device__ __forceinline__ void mbar_fence_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
// One arrival that also announces `bytes` of TMA traffic ("mbarrier.expect_tx", "mbarrier.arrive").
static __device__ __forceinline__ void mbar_arrive_expect_tx(u64* bar, u32 bytes) {
  asm volatile("mbarrier.arrive.expect_tx.release.cta.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(bar)),
               "r"(bytes)
               : "memory");
}
static __device__ __forceinline__ void mbar_arrive(u64* bar) {
  asm volatile("mbarrier.arrive.release.cta.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32(bar)) : "memory");
}
// Spins until the phase with parity `parity` has completed ("mbarrier.test_wait/mbarrier.try_wait").
static __device__ __forceinline__ void mbar_wait(u64* bar, u32 parity) {
  asm volatile(
      "{\n.reg .pred done;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.acquire.cta.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_%=;\n}\n" ::"r"(smem_u32(bar)),
      "r"(parity)
      : "memory");
}

// ---- TMA (PTX ISA "Data Movement and Conversion Instructions: cp.async.bulk.tensor") ----
static __device__ __forceinline__ void tma_prefetch_desc(const TmaDesc* d) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<u64>(d)) : "memory");
}
// Loads a 2-D box at coordinates (c0 = innermost, c1) into shared memory; completion is signalled
// as transaction bytes on `bar`. Out-of-bounds elements are filled with zeros by the hardware.
static __device__ __forceinline__ void tma_load_2d(void* dst, const TmaDesc* d, u64* bar, int c0, int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4}], [%2];\n" ::"r"(smem_u32(dst)),
      "l"(reinterpret_cast<u64>(d)), "r"(smem_u32(bar)), "r"(c0), "r"(c1)
      : "memory");
}
static __device__ __forceinline__ void tma_load_3d(void* dst, const TmaDesc* d, u64* bar, int c0, int c1,
                                                   int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4, %5}], [%2];\n" ::"r"(smem_u32(dst)),
      "l"(reinterpret_cast<u64>(d)), "r"(smem_u32(bar)), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}

// ---- warpgroup MMA bookkeeping (PTX ISA "wgmma.fence", "wgmma.commit_group", "wgmma.wait_group") ----
static __device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
static __device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
static __device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Keeps the compiler from moving accumulator reads/writes across an in-flight wgmma.
template <int R>
static __device__ __forceinline__ void reg_fence(float (&d)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// ---- named barriers (PTX ISA "bar, barrier": bar.sync / bar.arrive); id 0 is __syncthreads' ----
static __device__ __forceinline__ void named_bar_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
static __device__ __forceinline__ void named_bar_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// ---- register reallocation between warpgroups (PTX ISA "setmaxnreg") ----
template <int N>
static __device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
static __device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}

// ---- shared-memory matrix descriptor (PTX ISA 9.7.15.5.1.2.2 "Matrix Descriptor Format") ----
// bits 0-13 start address >> 4, 16-29 leading-dimension byte offset >> 4, 32-45 stride-dimension
// byte offset >> 4, 49-51 base offset (0: every tile here is 1024-byte aligned), 62-63 swizzle
// (1 = 128-byte swizzle). The Rust model (kernels/src/cuda/model.rs) decodes the same bits.
static __device__ __forceinline__ u64 smem_desc_sw128(u32 smem_addr, u32 lbo_bytes, u32 sbo_bytes) {
  u64 d = 0;
  d |= static_cast<u64>((smem_addr & 0x3FFFF) >> 4);
  d |= static_cast<u64>((lbo_bytes & 0x3FFFF) >> 4) << 16;
  d |= static_cast<u64>((sbo_bytes & 0x3FFFF) >> 4) << 32;
  d |= 1ull << 62;
  return d;
}

// Packs two f32 into a bf16x2 register, round-to-nearest-even (PTX ISA "cvt"): `lo` goes
// to the low half, as the mma/wgmma register fragments expect the lower column there.
static __device__ __forceinline__ u32 pack_bf16x2(float lo, float hi) {
  u32 r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
