// FP8 (E4M3) quantization with fine-grained scales: per token (1 x 128 of a row of
// activations) and per block (128 x 128 of weights). Memory-bound: every element is
// read once and written once as a byte; the arithmetic is exactly the numpy
// reference's (fp8gemm_core/reference.py), so results are bit-identical to it:
//   amax = max |x| over the group (fp32), amax = max(amax, 1e-4f),
//   sf = amax / 448 (IEEE division; with UE8M0 rounded up to a power of two),
//   q = e4m3_rne(clip(x / sf, -448, 448)) (the IEEE quotient, see Divisor; not x * (1/sf)).
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

// The kernels move 16 bytes of input per lane per load: a packet of kPerLane elements
// (8 of bf16/fp16, 4 of fp32), kept packed in registers until they are used.
template <int kIn>
struct Packet {
  static constexpr int kPerLane = kIn == 0 ? 4 : 8;
  uint4 raw;

  DEVICE float operator[](int e) const {
    const u32 w = (&raw.x)[kIn == 0 ? e : e / 2];
    if constexpr (kIn == 0) return __uint_as_float(w);
    else return half_to_float<kIn>(u16(e % 2 ? w >> 16 : w & 0xFFFF));
  }
  // Elements k0 .. k0 + kPerLane - 1 of a row; kVec: one 16-byte load when all are
  // inside the row (k0 16-byte aligned), else one by one, zeros past K.
  template <bool kVec>
  DEVICE void load(const void* row, i32 k0, i32 K) {
    if (kVec && k0 + kPerLane <= K) {
      raw = *reinterpret_cast<const uint4*>(static_cast<const u8*>(row) + i64(k0) * (kIn == 0 ? 4 : 2));
      return;
    }
    u32 w[4] = {0, 0, 0, 0};
#pragma unroll
    for (int e = 0; e < kPerLane; ++e) {
      if (k0 + e >= K) break;
      if constexpr (kIn == 0) w[e] = static_cast<const u32*>(row)[k0 + e];
      else w[e / 2] |= u32(static_cast<const u16*>(row)[k0 + e]) << (16 * (e % 2));
    }
    raw = make_uint4(w[0], w[1], w[2], w[3]);
  }
  DEVICE float amax() const {
    float m = 0.f;
#pragma unroll
    for (int e = 0; e < kPerLane; ++e) m = fmaxf(m, fabsf((*this)[e]));
    return m;
  }
};

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

// Quantize a packet by d and store its kPerLane bytes at row[k0..]: one 4- or 8-byte
// store when all are inside the row (kVec: aligned), else byte by byte up to K.
template <int kIn, bool kVec>
DEVICE void store_packet(const Packet<kIn>& p, const Divisor& d, u8* row, i32 k0, i32 K) {
  constexpr int kPerLane = Packet<kIn>::kPerLane;
  u32 w[2] = {0, 0};
#pragma unroll
  for (int e = 0; e < kPerLane; e += 2) w[e / 4] |= u32(to_e4m3x2(p[e], p[e + 1], d)) << (8 * (e % 4));
  if (kVec && k0 + kPerLane <= K) {
    if constexpr (kPerLane == 8) *reinterpret_cast<uint2*>(row + k0) = make_uint2(w[0], w[1]);
    else *reinterpret_cast<u32*>(row + k0) = w[0];
    return;
  }
#pragma unroll
  for (int e = 0; e < kPerLane; ++e) {
    if (k0 + e < K) row[k0 + e] = u8(w[e / 4] >> (8 * (e % 4)));
  }
}

}  // namespace quant

// Per-token cast of x [G, M, K] (row stride x_stride_m, group stride x_stride_g, K
// contiguous) into q (same shape, its own strides) and sf [G, M, ceil(K/128)] (any
// strides). One warp takes kLoads packets per lane of one row (16 groups of bf16/fp16,
// 8 of fp32: 4 KiB in flight per warp); a 128-group spans kLanesPerGroup lanes, whose
// amax is reduced with shuffles inside them. kVec: rows are 16-byte aligned in x (and
// kPerLane-byte aligned in q). kMasked: only rows m < masked_m[g] (others untouched).
template <int kIn, int kUe8m0, int kVec, int kMasked>
__global__ void __launch_bounds__(256) per_token_cast(
    const void* __restrict__ x, i64 x_stride_g, i64 x_stride_m, u8* __restrict__ q, i64 q_stride_g,
    i64 q_stride_m, float* __restrict__ sf, i64 sf_stride_g, i64 sf_stride_m, i64 sf_stride_k, i32 G,
    i32 M, i32 K, const i32* __restrict__ masked_m) {
  using namespace quant;
  constexpr int kPerLane = Packet<kIn>::kPerLane;
  constexpr int kLanesPerGroup = kGroup / kPerLane;
  constexpr int kGroupsPerLoad = 32 / kLanesPerGroup;
  constexpr int kLoads = 8;
  constexpr int kGroupsPerItem = kLoads * kGroupsPerLoad;
  const i32 lane = threadIdx.x % 32;
  const i32 sub = lane / kLanesPerGroup, pos = lane % kLanesPerGroup;
  const i32 groups = (K + kGroup - 1) / kGroup;
  const i32 chunks = (groups + kGroupsPerItem - 1) / kGroupsPerItem;
  const i64 items = i64(G) * M * chunks;
  const i64 warps = i64(gridDim.x) * (blockDim.x / 32);
  for (i64 item = i64(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; item < items; item += warps) {
    const i32 chunk = i32(item % chunks);
    const i64 gm = item / chunks;
    const i32 m = i32(gm % M), g = i32(gm / M);
    if (kMasked && m >= masked_m[g]) continue;  // warp-uniform
    const void* xrow = static_cast<const u8*>(x) + (g * x_stride_g + m * x_stride_m) * (kIn == 0 ? 4 : 2);
    u8* qrow = q + g * q_stride_g + m * q_stride_m;
    Packet<kIn> v[kLoads];
#pragma unroll
    for (int j = 0; j < kLoads; ++j) {
      const i32 group = chunk * kGroupsPerItem + j * kGroupsPerLoad + sub;
      v[j].template load<bool(kVec)>(xrow, group * kGroup + pos * kPerLane, K);  // zeros past K
    }
#pragma unroll
    for (int j = 0; j < kLoads; ++j) {
      if (chunk * kGroupsPerItem + j * kGroupsPerLoad >= groups) break;  // warp-uniform
      float amax = v[j].amax();
#pragma unroll
      for (int d = kLanesPerGroup / 2; d > 0; d /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, d));
      const i32 group = chunk * kGroupsPerItem + j * kGroupsPerLoad + sub;
      if (group >= groups) continue;  // the second half-warp past the last group
      const float s = scale_from_amax<bool(kUe8m0)>(amax);
      if (pos == 0) sf[g * sf_stride_g + m * sf_stride_m + group * sf_stride_k] = s;
      store_packet<kIn, bool(kVec)>(v[j], Divisor(s), qrow, group * kGroup + pos * kPerLane, K);
    }
  }
}

// Per-block cast of x [G, N, K] into q and sf [G, ceil(N/128), ceil(K/128)]: one CTA
// of 256 threads per 128 x 128 block; a row of the block spans kLanesPerRow lanes, so one
// load of the CTA covers kRowsPerLoad rows and each thread holds kLoads packets, all in
// flight before the block's amax is reduced.
template <int kIn, int kUe8m0, int kVec>
__global__ void __launch_bounds__(256) per_block_cast(
    const void* __restrict__ x, i64 x_stride_g, i64 x_stride_n, u8* __restrict__ q, i64 q_stride_g,
    i64 q_stride_n, float* __restrict__ sf, i64 sf_stride_g, i64 sf_stride_n, i64 sf_stride_k, i32 G,
    i32 N, i32 K) {
  using namespace quant;
  constexpr int kPerLane = Packet<kIn>::kPerLane;
  constexpr int kLanesPerRow = kGroup / kPerLane;
  constexpr int kRowsPerLoad = 256 / kLanesPerRow;
  constexpr int kLoads = kGroup / kRowsPerLoad;
  __shared__ float warp_amax[8];
  const i32 lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const i32 row0 = threadIdx.x / kLanesPerRow, pos = threadIdx.x % kLanesPerRow;
  const i32 nb = (N + kGroup - 1) / kGroup, kb = (K + kGroup - 1) / kGroup;
  const i64 blocks = i64(G) * nb * kb;
  for (i64 b = blockIdx.x; b < blocks; b += gridDim.x) {
    const i32 bk = i32(b % kb), bn = i32((b / kb) % nb), g = i32(b / (i64(kb) * nb));
    const i32 k0 = bk * kGroup + pos * kPerLane;
    Packet<kIn> v[kLoads];
    float amax = 0.f;
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      const i32 n = bn * kGroup + row0 + kRowsPerLoad * i;
      const void* xrow = static_cast<const u8*>(x) + (g * x_stride_g + i64(n) * x_stride_n) * (kIn == 0 ? 4 : 2);
      v[i].template load<bool(kVec)>(xrow, k0, n < N ? K : 0);  // zeros past N and K
    }
#pragma unroll
    for (int i = 0; i < kLoads; ++i) amax = fmaxf(amax, v[i].amax());
    amax = warp_max(amax);
    if (lane == 0) warp_amax[warp] = amax;
    __syncthreads();
#pragma unroll
    for (int w = 0; w < 8; ++w) amax = fmaxf(amax, warp_amax[w]);
    const float s = scale_from_amax<bool(kUe8m0)>(amax);
    if (threadIdx.x == 0) sf[g * sf_stride_g + bn * sf_stride_n + bk * sf_stride_k] = s;
    const Divisor d(s);
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      const i32 n = bn * kGroup + row0 + kRowsPerLoad * i;
      if (n >= N) break;
      store_packet<kIn, bool(kVec)>(v[i], d, q + g * q_stride_g + i64(n) * q_stride_n, k0, K);
    }
    __syncthreads();  // warp_amax is rewritten by the next block
  }
}
