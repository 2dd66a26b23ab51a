// Round-trip copy through shared memory with TMA: each block loads one box of
// the source tensor (any swizzle mode) and stores it back at the same
// coordinates of the destination. Used to test tensor-map encoding end to end:
// a load and a store with the same swizzle restore the original bytes, and
// boxes hanging over the edge are clipped on store.
#include "ptx.cuh"

template <int kDims>
__global__ void __launch_bounds__(32, 1)
tma_copy(const __grid_constant__ TmaDescriptor src, const __grid_constant__ TmaDescriptor dst,
         i32 box0, i32 box1, i32 box2, u32 box_bytes) {
  extern __shared__ u8 smem_raw[];
  // Swizzled boxes need 1024-byte aligned shared memory; the host adds the slack.
  u8* tile = smem_raw + ((1024 - (ptx::smem_addr(smem_raw) & 1023)) & 1023);  // keeps the address space
  u64* bar = reinterpret_cast<u64*>(tile + ((box_bytes + 15) & ~15u));

  const i32 c0 = blockIdx.x * box0, c1 = blockIdx.y * box1, c2 = blockIdx.z * box2;
  if (threadIdx.x == 0) {
    ptx::mbar_init(bar, 1);
    ptx::fence_barrier_init();
    ptx::mbar_arrive_expect_tx(bar, box_bytes);
    if (kDims == 2) ptx::tma_load_2d(tile, &src, bar, c0, c1);
    else ptx::tma_load_3d(tile, &src, bar, c0, c1, c2);
    ptx::mbar_wait(bar, 0);
    ptx::fence_proxy_async_smem();
    if (kDims == 2) ptx::tma_store_2d(&dst, tile, c0, c1);
    else ptx::tma_store_3d(&dst, tile, c0, c1, c2);
    ptx::tma_store_commit();
    ptx::tma_store_wait<0>();
  }
}
