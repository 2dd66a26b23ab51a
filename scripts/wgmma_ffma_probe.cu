// Probe (scripts/wgmma_ffma_probe.py): do FFMAs on some warps slow the wgmma of others?
//
// One CTA per SM, no loads: A (64x128) and B (128x128) E4M3 tiles sit in shared memory.
// Warpgroups [0, kMmaWgs) run `iters` rounds of the GEMM kernel's consumer step: four
// m64n128k32 wgmma into a partial, wait, then kPromote FFMAs per thread folding the
// partial into an accumulator. Warpgroups [kMmaWgs, kMmaWgs + kFfmaWgs) only run FFMAs
// (64 independent chains) until the MMA warpgroups are done. Each warpgroup's leader
// writes (SM cycles, globaltimer ns, FFMA rounds) of its run. kPingPong: the MMA warpgroups
// issue their wgmma in turn (named barriers 2.. pass the turn on once a group has issued).
// WgmmaFp8<128> comes from the prelude (fp8gemm_core.codegen).
#include "ptx.cuh"

DEVICE u32 probe_hash(u32 x) {
  x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15; x *= 0x846ca68bu; x ^= x >> 16;
  return x;
}

DEVICE u64 probe_clock() {
  u64 c;
  asm volatile("mov.u64 %0, %%clock64;" : "=l"(c));
  return c;
}

template <int kMmaWgs, int kFfmaWgs, int kPromote, int kPingPong = 0>
__global__ void __launch_bounds__((kMmaWgs + kFfmaWgs) * 128, 1)
wgmma_ffma_probe(int iters, u64* out, float* sink) {
  extern __shared__ __align__(1024) u8 smem_raw[];
  u8* smem = reinterpret_cast<u8*>((reinterpret_cast<u64>(smem_raw) + 1023) & ~u64(1023));
  u8* tile_a = smem;          // 64 x 128 bytes
  u8* tile_b = smem + 8192;   // 128 x 128 bytes
  __shared__ volatile int mma_done;
  // Finite E4M3 bytes of every exponent but the top one (no NaN), so the tensor cores
  // switch like on real data.
  for (u32 i = threadIdx.x; i < 24576 / 4; i += blockDim.x)
    reinterpret_cast<u32*>(smem)[i] = probe_hash(i * 2654435761u + blockIdx.x) & 0xF7F7F7F7u;
  if (threadIdx.x == 0) mma_done = 0;
  ptx::fence_proxy_async_smem();  // generic-proxy writes, read by wgmma (async proxy)
  __syncthreads();

  const u32 wg = threadIdx.x / 128;
  float acc[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] = 0.f;
  u64 cycles = 0, ns = 0, rounds = 0;
  if (wg < kMmaWgs) {
    float part[64];
    const u32 da = ptx::smem_desc_lo_sw128(tile_a), db = ptx::smem_desc_lo_sw128(tile_b);
    const float s = 1.0f / 1024 + float(threadIdx.x) * 1e-9f;
    const u64 c0 = probe_clock(), t0 = ptx::globaltimer();
    for (int it = 0; it < iters; ++it) {
#pragma unroll
      for (int i = 0; i < 64; ++i) ptx::fence_operand(part[i]);
      if (kPingPong && (it > 0 || wg > 0)) ptx::bar_sync(2 + wg, 2 * 128);
      ptx::wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
        WgmmaFp8<128>::mma(part, ptx::smem_desc(da + 2 * kk), ptx::smem_desc(db + 2 * kk),
                           kk > 0 || (kPromote == 0 && it > 0));  // (no promotion: chained, so kept)
      ptx::wgmma_commit();
      if (kPingPong) {
        const u32 next = (wg + 1) % kMmaWgs;  // its turn: the next group, or ours next round
        if (it + 1 < iters || next > 0) ptx::bar_arrive(2 + next, 2 * 128);
      }
      ptx::wgmma_wait<0>();
#pragma unroll
      for (int i = 0; i < 64; ++i) ptx::fence_operand(part[i]);
#pragma unroll
      for (int i = 0; i < kPromote; ++i) acc[i] = fmaf(part[i], s, acc[i]);
    }
    cycles = probe_clock() - c0;
    ns = ptx::globaltimer() - t0;
    rounds = u64(iters);
#pragma unroll
    for (int i = kPromote; i < 64; ++i) acc[i] = part[i];  // ptxas drops wgmma whose results go unread
    ptx::bar_sync(1, kMmaWgs * 128);
    if (threadIdx.x == 0) mma_done = 1;
  } else {
    const float s = 0.999f, x = 1e-3f + float(threadIdx.x) * 1e-9f;
    const u64 c0 = probe_clock(), t0 = ptx::globaltimer();
    while (!mma_done) {
#pragma unroll 1
      for (int r = 0; r < 16; ++r) {
#pragma unroll
        for (int i = 0; i < 64; ++i) acc[i] = fmaf(acc[i], s, x);
      }
      rounds += 16;
    }
    cycles = probe_clock() - c0;
    ns = ptx::globaltimer() - t0;
  }
  float sum = 0.f;
#pragma unroll
  for (int i = 0; i < 64; ++i) sum += acc[i];
  if (sum == 1234.5f) sink[threadIdx.x] = sum;  // keeps the FFMAs
  if (threadIdx.x % 128 == 0) {
    u64* o = out + (blockIdx.x * 4 + wg) * 3;
    o[0] = cycles;
    o[1] = ns;
    o[2] = rounds;
  }
}
