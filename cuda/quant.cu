// FP8 (E4M3) quantization with fine-grained scales: per token (1 x 128 of a row of
// activations) and per block (128 x 128 of weights). Memory-bound: every element is
// read once and written once as a byte; the arithmetic is exactly the numpy
// reference's (fp8gemm_core/reference.py), so results are bit-identical to it:
//   amax = max |x| over the group (fp32), amax = max(amax, 1e-4f),
//   sf = amax / 448 (IEEE division; with UE8M0 rounded up to a power of two),
//   q = e4m3_rne(clip(x / sf, -448, 448)) (IEEE division, not a multiply by 1/sf).
// Inputs fp32, bf16 or fp16 (kIn = 0, 1, 2); 2-D arrays are launched as G = 1.
#include "ptx.cuh"

namespace quant {

constexpr int kGroup = 128;
constexpr float kFp8Max = 448.0f;
constexpr float kAmaxFloor = 1e-4f;

// A 16-bit input element (kIn 1: bf16, 2: fp16) as fp32, exactly.
template <int kIn>
DEVICE float half_to_float(u16 h) {
  if constexpr (kIn == 1) {
    return ptx::bf16_to_float(h);
  } else {
    float f;
    asm("cvt.f32.f16 %0, %1;\n" : "=f"(f) : "h"(h));
    return f;
  }
}

template <int kIn>
DEVICE float to_float(const void* base, i64 i) {
  if constexpr (kIn == 0) return static_cast<const float*>(base)[i];
  else return half_to_float<kIn>(static_cast<const u16*>(base)[i]);
}

// Four consecutive elements starting at element i (i a multiple of 4, 4-element aligned).
template <int kIn>
DEVICE void load4(const void* base, i64 i, float (&v)[4]) {
  if constexpr (kIn == 0) {
    const float4 t = *reinterpret_cast<const float4*>(static_cast<const float*>(base) + i);
    v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
  } else {
    const uint2 t = *reinterpret_cast<const uint2*>(static_cast<const u16*>(base) + i);
    v[0] = half_to_float<kIn>(u16(t.x & 0xFFFF));
    v[1] = half_to_float<kIn>(u16(t.x >> 16));
    v[2] = half_to_float<kIn>(u16(t.y & 0xFFFF));
    v[3] = half_to_float<kIn>(u16(t.y >> 16));
  }
}

template <bool kUe8m0>
DEVICE float scale_from_amax(float amax) {
  float sf = __fdiv_rn(fmaxf(amax, kAmaxFloor), kFp8Max);
  if constexpr (kUe8m0) {
    // 2^ceil(log2(sf)), exactly: a normal float with a zero mantissa is a power of two
    // already; any other rounds up to the next one (sf >= 1e-4 / 448 is normal).
    u32 u = __float_as_uint(sf);
    if (u & 0x7FFFFFu) u = (u & 0xFF800000u) + 0x800000u;
    sf = __uint_as_float(u);
  }
  return sf;
}

// Division by one scale, many times: x / sf with IEEE rounding, from y = RN(1/sf) and
// one FMA correction (Markstein: with y the correctly rounded reciprocal and q within
// an ulp of x/sf, RN(q + (x - q sf) y) is the correctly rounded quotient). Three
// instructions instead of div.rn's dozen and branch. sf is finite and at least
// 1e-4 / 448, so y is normal (a group holding inf or NaN comes out NaN; inputs are
// assumed finite). The sign copy keeps -0 / sf = -0. tests/test_quant.py sweeps every
// bf16 value against numpy's division.
struct Divisor {
  float sf, y;
  DEVICE explicit Divisor(float s) : sf(s), y(__frcp_rn(s)) {}
  DEVICE float divide(float x) const {
    const float q = __fmul_rn(x, y);
    return copysignf(__fmaf_rn(__fmaf_rn(-q, sf, x), y, q), x);
  }
};

// x / sf rounded to E4M3 (nearest even, saturating at +-448), two at a time: the byte
// of `lo` at the lower address.
DEVICE u16 to_e4m3x2(float lo, float hi, const Divisor& d) {
  u16 r;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;\n" : "=h"(r) : "f"(d.divide(hi)), "f"(d.divide(lo)));
  return r;
}

DEVICE float warp_max(float v) {
#pragma unroll
  for (int d = 16; d > 0; d /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, d));
  return v;
}

}  // namespace quant

// Per-token cast of x [G, M, K] (row stride x_stride_m, group stride x_stride_g, K
// contiguous) into q (same shape, its own strides) and sf [G, M, ceil(K/128)] (any
// strides). One warp takes 8 consecutive 128-groups of one row (8 loads in
// flight per lane); lane l handles elements 4l..4l+3 of each group. kVec: rows are
// 4-element aligned (K, strides and bases), so loads and stores are vectors.
// kMasked: only rows m < masked_m[g] are quantized (others untouched).
template <int kIn, int kUe8m0, int kVec, int kMasked>
__global__ void __launch_bounds__(256) per_token_cast(
    const void* __restrict__ x, i64 x_stride_g, i64 x_stride_m, u8* __restrict__ q, i64 q_stride_g,
    i64 q_stride_m, float* __restrict__ sf, i64 sf_stride_g, i64 sf_stride_m, i64 sf_stride_k, i32 G,
    i32 M, i32 K, const i32* __restrict__ masked_m) {
  using namespace quant;
  constexpr int kGroupsPerWarp = 8;
  const i32 lane = threadIdx.x % 32;
  const i32 groups = (K + kGroup - 1) / kGroup;
  const i32 chunks = (groups + kGroupsPerWarp - 1) / kGroupsPerWarp;
  const i64 items = i64(G) * M * chunks;
  const i64 warps = i64(gridDim.x) * (blockDim.x / 32);
  for (i64 item = i64(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; item < items; item += warps) {
    const i32 chunk = i32(item % chunks);
    const i64 gm = item / chunks;
    const i32 m = i32(gm % M), g = i32(gm / M);
    if (kMasked && m >= masked_m[g]) continue;  // warp-uniform
    const void* xrow = static_cast<const u8*>(x) + (g * x_stride_g + m * x_stride_m) * (kIn == 0 ? 4 : 2);
    u8* qrow = q + g * q_stride_g + m * q_stride_m;
    float v[kGroupsPerWarp][4];
#pragma unroll
    for (int j = 0; j < kGroupsPerWarp; ++j) {
      const i32 k0 = (chunk * kGroupsPerWarp + j) * kGroup + lane * 4;
      if (kVec && k0 + 3 < K) {
        load4<kIn>(xrow, k0, v[j]);
      } else {
#pragma unroll
        for (int e = 0; e < 4; ++e) v[j][e] = k0 + e < K ? to_float<kIn>(xrow, k0 + e) : 0.f;
      }
    }
#pragma unroll
    for (int j = 0; j < kGroupsPerWarp; ++j) {
      const i32 group = chunk * kGroupsPerWarp + j;
      if (group >= groups) break;  // warp-uniform
      float amax = fmaxf(fmaxf(fabsf(v[j][0]), fabsf(v[j][1])), fmaxf(fabsf(v[j][2]), fabsf(v[j][3])));
      const float s = scale_from_amax<bool(kUe8m0)>(warp_max(amax));
      if (lane == 0) sf[g * sf_stride_g + m * sf_stride_m + group * sf_stride_k] = s;
      const i32 k0 = group * kGroup + lane * 4;
      const Divisor d(s);
      const u16 lo = to_e4m3x2(v[j][0], v[j][1], d), hi = to_e4m3x2(v[j][2], v[j][3], d);
      if (kVec && k0 + 3 < K) {
        *reinterpret_cast<u32*>(qrow + k0) = u32(lo) | (u32(hi) << 16);
      } else {
        const u8 b[4] = {u8(lo), u8(lo >> 8), u8(hi), u8(hi >> 8)};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          if (k0 + e < K) qrow[k0 + e] = b[e];
        }
      }
    }
  }
}

// Per-block cast of x [G, N, K] into q and sf [G, ceil(N/128), ceil(K/128)]: one CTA
// of 256 threads per 128 x 128 block; thread t takes columns 4(t % 32)..+3 of rows
// t / 32 + 8i (i < 16), all loads in flight before the block's amax is reduced.
template <int kIn, int kUe8m0, int kVec>
__global__ void __launch_bounds__(256) per_block_cast(
    const void* __restrict__ x, i64 x_stride_g, i64 x_stride_n, u8* __restrict__ q, i64 q_stride_g,
    i64 q_stride_n, float* __restrict__ sf, i64 sf_stride_g, i64 sf_stride_n, i64 sf_stride_k, i32 G,
    i32 N, i32 K) {
  using namespace quant;
  constexpr int kRowsPerThread = kGroup / 8;
  __shared__ float warp_amax[8];
  const i32 lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const i32 nb = (N + kGroup - 1) / kGroup, kb = (K + kGroup - 1) / kGroup;
  const i64 blocks = i64(G) * nb * kb;
  for (i64 b = blockIdx.x; b < blocks; b += gridDim.x) {
    const i32 bk = i32(b % kb), bn = i32((b / kb) % nb), g = i32(b / (i64(kb) * nb));
    const i32 k0 = bk * kGroup + lane * 4;
    float v[kRowsPerThread][4];
    float amax = 0.f;
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) {
      const i32 n = bn * kGroup + warp + 8 * i;
      const void* xrow = static_cast<const u8*>(x) + (g * x_stride_g + i64(n) * x_stride_n) * (kIn == 0 ? 4 : 2);
      if (n < N && kVec && k0 + 3 < K) {
        load4<kIn>(xrow, k0, v[i]);
      } else {
#pragma unroll
        for (int e = 0; e < 4; ++e) v[i][e] = n < N && k0 + e < K ? to_float<kIn>(xrow, k0 + e) : 0.f;
      }
#pragma unroll
      for (int e = 0; e < 4; ++e) amax = fmaxf(amax, fabsf(v[i][e]));
    }
    amax = warp_max(amax);
    if (lane == 0) warp_amax[warp] = amax;
    __syncthreads();
#pragma unroll
    for (int w = 0; w < 8; ++w) amax = fmaxf(amax, warp_amax[w]);
    const float s = scale_from_amax<bool(kUe8m0)>(amax);
    if (threadIdx.x == 0) sf[g * sf_stride_g + bn * sf_stride_n + bk * sf_stride_k] = s;
    const Divisor d(s);
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) {
      const i32 n = bn * kGroup + warp + 8 * i;
      if (n >= N) break;
      u8* qrow = q + g * q_stride_g + i64(n) * q_stride_n;
      const u16 lo = to_e4m3x2(v[i][0], v[i][1], d), hi = to_e4m3x2(v[i][2], v[i][3], d);
      if (kVec && k0 + 3 < K) {
        *reinterpret_cast<u32*>(qrow + k0) = u32(lo) | (u32(hi) << 16);
      } else {
        const u8 bytes[4] = {u8(lo), u8(lo >> 8), u8(hi), u8(hi >> 8)};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          if (k0 + e < K) qrow[k0 + e] = bytes[e];
        }
      }
    }
    __syncthreads();  // warp_amax is rewritten by the next block
  }
}
