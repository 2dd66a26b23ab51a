// Hopper (sm_90a) primitives written as inline PTX: mbarriers, TMA bulk tensor
// copies, wgmma, fences and register reallocation. Self-contained on purpose:
// NVRTC from the pip wheel has no CUDA toolkit headers to include.
#pragma once

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef int i32;
typedef unsigned long long u64;
typedef long long i64;

// The 128-byte tensor map built on the host by cuTensorMapEncodeTiled; only its
// address is used here, so its contents stay opaque.
struct alignas(64) TmaDescriptor {
  u64 opaque[16];
};

#define DEVICE __device__ __forceinline__

namespace ptx {

DEVICE u32 smem_addr(const void* p) {
  return static_cast<u32>(__cvta_generic_to_shared(p));
}

DEVICE u32 lane_id() { return threadIdx.x & 31; }

// Nanoseconds since an arbitrary origin, the same on every SM (timing experiments).
DEVICE u64 globaltimer() {
  u64 t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Same value in every lane, so the compiler can keep warp-uniform branches uniform.
DEVICE u32 warp_id_uniform() {
  return __shfl_sync(0xffffffffu, threadIdx.x / 32, 0);
}

// One lane of the warp returns true; cheaper than comparing lane ids and warp-uniform.
DEVICE bool elect_one() {
  u32 pred = 0;
  asm volatile(
      "{\n .reg .pred p;\n elect.sync _|p, 0xffffffff;\n selp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(pred));
  return pred != 0;
}

// ------------------------------------------------------------------ mbarrier

DEVICE void mbar_init(u64* bar, u32 count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count));
}

// Makes barrier initialisation visible to the async proxy (TMA) and the cluster.
DEVICE void fence_barrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

DEVICE void mbar_arrive(u64* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}

// Arrive and announce `bytes` of transaction that TMA will complete on this barrier.
DEVICE void mbar_arrive_expect_tx(u64* bar, u32 bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)),
               "r"(bytes)
               : "memory");
}

// Raise the bytes the barrier's current phase waits for (no arrival): for a copy
// issued by a thread other than the one that arrives with expect_tx.
DEVICE void mbar_expect_tx(u64* bar, u32 bytes) {
  asm volatile("mbarrier.expect_tx.relaxed.cta.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes)
               : "memory");
}

// Block until the barrier's phase with the given parity has completed.
DEVICE void mbar_wait(u64* bar, u32 parity) {
  asm volatile(
      "{\n"
      " .reg .pred done;\n"
      "WAIT_%=:\n"
      " mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      " @!done bra WAIT_%=;\n"
      "}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
}

// ------------------------------------------------------------------ named barriers

// Barrier `id` (1..15; 0 is __syncthreads) completes once `threads` threads have
// arrived; bar_sync waits for that, bar_arrive signals without waiting.
DEVICE void bar_sync(u32 id, u32 threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
DEVICE void bar_arrive(u32 id, u32 threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// ------------------------------------------------------------------ clusters

DEVICE u32 cluster_ctarank() {
  u32 r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return r;
}

// All non-exited threads of every CTA in the cluster; orders shared-memory work across CTAs.
DEVICE void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::
                   : "memory");
}

// The two halves of cluster_sync, for work between them: the arrival orders nothing (use it
// after fence_barrier_init, whose release covers the barriers' initialisation).
DEVICE void cluster_arrive_relaxed() { asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory"); }
DEVICE void cluster_wait() { asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory"); }

// Arrive on the barrier at the same shared-memory offset in CTA `cta` of this cluster.
// CTA-scope release on purpose: consumers only signal that their (already
// completed) wgmma reads are done; a cluster-scope release would add a costly
// memory fence to every stage for nothing.
DEVICE void mbar_arrive_cluster(u64* bar, u32 cta) {
  asm volatile(
      "{\n .reg .b32 remote;\n mapa.shared::cluster.u32 remote, %0, %1;\n"
      " mbarrier.arrive.shared::cluster.b64 _, [remote];\n}\n" ::"r"(smem_addr(bar)),
      "r"(cta)
      : "memory");
}

// Four floats from this thread's registers into CTA `cta`'s shared memory at offset `local`
// (an address of this CTA's window, mapped), counted as 16 bytes by that CTA's barrier at
// `bar`'s offset: the data is visible to whoever sees the barrier's phase complete.
DEVICE void st_async_f4(u32 local, const u64* bar, u32 cta, float a, float b, float c, float d) {
  asm volatile(
      "{\n .reg .b32 ra, rb;\n mapa.shared::cluster.u32 ra, %0, %6;\n mapa.shared::cluster.u32 rb, %1, %6;\n"
      " st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.f32 [ra], {%2, %3, %4, %5}, [rb];\n}\n" ::"r"(local),
      "r"(smem_addr(bar)), "f"(a), "f"(b), "f"(c), "f"(d), "r"(cta)
      : "memory");
}

// ------------------------------------------------------------------ cp.async

// 4-byte asynchronous global -> shared copy (no register round trip).
DEVICE void cp_async_4(void* dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(smem_addr(dst)), "l"(src) : "memory");
}

// Arrive on `bar` once this thread's earlier cp.async copies have landed; counts as
// one of the arrivals the barrier expects (.noinc).
DEVICE void cp_async_mbar_arrive(u64* bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}

// ------------------------------------------------------------------ TMA

// Contiguous global -> shared copy by the TMA unit, its bytes completing on `bar`
// (addresses 16-byte aligned, size a multiple of 16).
DEVICE void bulk_load(void* dst, const void* src, u32 bytes, u64* bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                   smem_addr(dst)),
               "l"(src), "r"(bytes), "r"(smem_addr(bar))
               : "memory");
}

DEVICE void tma_prefetch_descriptor(const TmaDescriptor* desc) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(desc) : "memory");
}

DEVICE void tma_load_2d(void* dst, const TmaDescriptor* desc, u64* bar, i32 c0, i32 c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4}], [%2];\n" ::"r"(smem_addr(dst)),
      "l"(desc), "r"(smem_addr(bar)), "r"(c0), "r"(c1)
      : "memory");
}

// Same box into the same shared-memory offset of every CTA in `mask`, each CTA's
// barrier at `bar`'s offset receiving the bytes.
DEVICE void tma_load_2d_multicast(void* dst, const TmaDescriptor* desc, u64* bar, i32 c0, i32 c1,
                                  u16 mask) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
      " [%0], [%1, {%3, %4}], [%2], %5;\n" ::"r"(smem_addr(dst)),
      "l"(desc), "r"(smem_addr(bar)), "r"(c0), "r"(c1), "h"(mask)
      : "memory");
}

DEVICE void tma_load_3d(void* dst, const TmaDescriptor* desc, u64* bar, i32 c0, i32 c1, i32 c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4, %5}], [%2];\n" ::"r"(smem_addr(dst)),
      "l"(desc), "r"(smem_addr(bar)), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}

DEVICE void tma_store_2d(const TmaDescriptor* desc, const void* src, i32 c0, i32 c1) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];\n" ::"l"(
                   desc),
               "r"(smem_addr(src)), "r"(c0), "r"(c1)
               : "memory");
}

DEVICE void tma_store_3d(const TmaDescriptor* desc, const void* src, i32 c0, i32 c1, i32 c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [%0, {%2, %3, %4}], [%1];\n" ::"l"(desc),
      "r"(smem_addr(src)), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}

DEVICE void tma_store_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }

// Wait until at most N committed store groups are still reading shared memory.
template <int N>
DEVICE void tma_store_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
}

// Wait until committed store groups have fully completed (writes visible).
template <int N>
DEVICE void tma_store_wait() {
  asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(N) : "memory");
}

// Stores four 8x8 b16 matrices, register i of each thread holding its two elements of
// matrix i in the mma fragment layout (row t / 4, columns 2 (t % 4) + {0, 1}); lane t
// gives the shared address of row t % 8 of matrix t / 8 (16-byte aligned).
DEVICE void stmatrix_x4(u32 addr, u32 r0, u32 r1, u32 r2, u32 r3) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n"
               ::"r"(addr), "r"(r0), "r"(r1), "r"(r2), "r"(r3) : "memory");
}

// Ordinary shared-memory writes must be fenced before TMA (async proxy) reads them.
DEVICE void fence_proxy_async_smem() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// ------------------------------------------------------------------ wgmma

DEVICE void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
DEVICE void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
DEVICE void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// Keeps the compiler from moving accumulator reads/writes across wgmma boundaries.
DEVICE void fence_operand(float& r) { asm volatile("" : "+f"(r)::"memory"); }

// Shared-memory matrix descriptor for a K-major tile stored with the 128-byte
// swizzle that TMA's CU_TENSOR_MAP_SWIZZLE_128B produces: rows of 128 bytes,
// 8-row atoms of 1024 bytes (stride byte offset), swizzle mode 1 in bits 62-63.
// Kept as its two 32-bit halves: the upper one is a constant, the lower one holds the
// start address in 16-byte units (bits 0-13: shared memory is below 256 KiB, so moving
// the address by adding to the lower half never carries into the other fields).
constexpr u32 kDescHiSw128 = (1024 >> 4) | (1u << 30);  // stride byte offset | 128-byte swizzle

DEVICE u32 smem_desc_lo_sw128(const void* tile) {
  return ((smem_addr(tile) & 0x3FFFFu) >> 4) | (1u << 16);  // start address | leading byte offset (unused)
}

DEVICE u64 smem_desc(u32 lo, u32 hi = kDescHiSw128) {
  u64 desc;
  asm("mov.b64 %0, {%1, %2};\n" : "=l"(desc) : "r"(lo), "r"(hi));
  return desc;
}

// ------------------------------------------------------------------ registers

template <u32 N>
DEVICE void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <u32 N>
DEVICE void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}

// ------------------------------------------------------------------ conversions

DEVICE u32 pack_bf16x2(float lo, float hi) {
  u32 r;
  // cvt packs its first source into the upper half.
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

DEVICE float bf16_to_float(u16 v) { return __uint_as_float(u32(v) << 16); }

}  // namespace ptx
