// Dense FP8 (E4M3) GEMM, "NT": D[M, N] = (C +) A[M, K] @ B[N, K]^T with
// DeepSeek-style fine-grained scales (sfa per 1x128 of A, sfb per 128x128 of B).
//
// Persistent and warp-specialized: warpgroup 0 is the producer (one thread
// issues TMA loads of A and B tiles into a ring of shared-memory stages, each
// guarded by a "full" and an "empty" mbarrier, and warp 1 copies the stage's
// scales in, with one bulk copy or per-row cp.async); warpgroups 1.. are
// consumers, each owning 64 rows of the BLOCK_M x BLOCK_N tile (256-row tiles:
// two warpgroups of two 64-row m-waves each). Per 128-wide K block and m-wave a
// consumer runs four m64nNk32 wgmma into a partial accumulator, waits, and
// promotes it into the fp32 result with the product of the two scales
// (Hopper's FP8 tensor-core accumulation is too narrow to run over all of K).
// Where the output is staged for TMA stores (no C, plain loop), a finished tile is
// staged in shared memory during the next tile's first K block, and warp 2 of the
// producer warpgroup (the "storer") stores it, so the tensor pipe never waits for an
// epilogue but the last one's (see kShadowStore). Where a CTA is expected to take one tile
// (kTmaStore == 2), the output is staged in the ring itself once its last K block is
// consumed, which frees a dedicated staging buffer's room for one more stage.
//
// kResidentA > 0 (dense, K <= kResidentA * 128): a CTA keeps its M-block's whole A block in
// shared memory and walks a contiguous run of tiles along N (TileWalker's chunked walk), so A
// is loaded once per run instead of once per tile; only B streams through the ring. Short K
// is bound by L2 throughput, where A's re-reads were most of the bytes (docs/perf-log.md).
//
// kSplitK = 2 (dense, small M, narrow tiles): the two CTAs of a cluster take the same tiles,
// each half of the K blocks, and add their partial tiles through distributed shared memory
// (see reduce_tile): twice the CTAs for few tiles, or half of A's bytes per CTA.
//
// With CLUSTER_M = 2, two CTAs of a cluster take vertically adjacent tiles
// (same B columns) and each loads half of the B tile with TMA multicast into
// both, halving B's L2->SM traffic; their consumers release a stage in both.
//
// The host generates WgmmaFp8<N> for the wgmma width N (the tile's; 128 for 256-wide
// tiles) and puts it in front of this file (the asm operand list grows with N); see
// fp8gemm_core/gemm.py. For the configurations
// where it was measured to help, the prelude also asks the JIT to rewrite the
// promotion FFMAs' control bits after NVRTC (fp8gemm_core/sass.py).
#include "ptx.cuh"

template <int N>
struct WgmmaFp8;

namespace fp8gemm {

constexpr int kBlockK = 128;        // one scale group of A and B per K block
constexpr int kWarpgroup = 128;

// Walks output tiles in bands of `group_n` N-blocks, M-blocks inside a band, so
// that the CTAs running at the same time share B tiles (and A tiles) in L2.
// Works in units of cluster tiles (kClusterM tiles stacked along M); a CTA
// takes the one of rank `rank`. M-blocks are padded to a multiple of kClusterM:
// a padding tile reads only TMA zero fill and stores nothing.
template <int kClusterM>
struct TileScheduler {
  i32 num_m_groups, num_n_blocks, group_n, num_tiles;

  DEVICE TileScheduler(i32 m_blocks, i32 n_blocks, i32 group)
      : num_m_groups((m_blocks + kClusterM - 1) / kClusterM), num_n_blocks(n_blocks),
        group_n(group), num_tiles(num_m_groups * n_blocks) {}

  DEVICE void tile(i32 t, u32 rank, i32& m_block, i32& n_block) const {
    const i32 per_band = num_m_groups * group_n;
    const i32 band = t / per_band;
    const i32 first_n = band * group_n;
    const i32 width = min(group_n, num_n_blocks - first_n);
    const i32 r = t - band * per_band;
    m_block = (r / width) * kClusterM + rank;
    n_block = first_n + r % width;
  }
};

// Row ranges of the groups of a grouped GEMM, in the 2-D [rows, K] view of A and
// [rows, N] of D. Masked layout: group g owns rows [g * stride, g * stride + counts[g]).
// Contiguous layout: [starts[g], ends[g]), or [ends[g - 1], ends[g]) without starts
// (cumulative ends). Values are clamped into [0, total_rows] so that bad offsets
// cannot reach outside the arrays.
struct GroupRows {
  const i32* starts;
  const i32* ends;
  const i32* counts;
  i32 stride, total_rows, num_groups;

  DEVICE void bounds(i32 g, i32& start, i32& end) const {
    if (counts != nullptr) {
      start = g * stride;
      end = start + min(max(__ldg(counts + g), 0), stride);
      return;
    }
    start = starts != nullptr ? __ldg(starts + g) : (g > 0 ? __ldg(ends + g - 1) : 0);
    end = __ldg(ends + g);
    start = min(max(start, 0), total_rows);
    end = min(max(end, start), total_rows);
  }
};

// One output tile: group, first row (2-D view), end of the group's rows, first column.
struct Tile {
  i32 group, m0, m_end, n0;
};

// The tiles of one CTA, in order. Dense: TileScheduler's banded order over [M, N].
// Grouped: group after group, each group's rows tiled like a small dense problem.
// Every role (producer, scale loader, each consumer warp) walks the same sequence.
// The grouped walk is warp-cooperative (all 32 lanes call next()): the lanes hold a
// window of 32 groups' cumulative tile counts, so finding a tile's group costs one
// load round trip per 32 groups, not one per group. (Only the counts stay in
// registers: the 192-row consumers have none to spare.)
// kChunked (dense): cluster c takes the contiguous run [c * chunk, (c + 1) * chunk) of the
// scheduler's order instead of every num_clusters-th tile (with group_n = the N-block count,
// a run stays on one M-block for up to a row of tiles).
template <int BLOCK_M, int BLOCK_N, int kClusterM, bool kGrouped, bool kChunked = false>
struct TileWalker {
  TileScheduler<kClusterM> dense;
  GroupRows rows;
  i32 n_blocks, group_n, M;
  i32 t, step;
  i32 t_first = 0, t_end = 0;  // kChunked: this cluster's run
  u32 rank;
  i32 g0 = 0;         // the window: groups [g0, g0 + 32)
  i32 lane_incl = 0;  // tiles of all groups up to this lane's, inclusive
  // Grouped pairs: the tile next() returned last sits beside its partner along N (each CTA
  // loads its own B tile). Not in Tile: a field there made a dense kernel spill (NVRTC 13.5).
  bool pairs_n = false;

  DEVICE TileWalker(const GroupRows& groups, i32 m, i32 n, i32 group, i32 first, i32 stride, u32 r)
      : dense((m + BLOCK_M - 1) / BLOCK_M, (n + BLOCK_N - 1) / BLOCK_N, group), rows(groups),
        n_blocks((n + BLOCK_N - 1) / BLOCK_N), group_n(group), M(m), t(first), step(stride), rank(r) {
    if constexpr (kGrouped) load_window(0);
    if constexpr (kChunked) {
      const i32 chunk = (dense.num_tiles + stride - 1) / stride;
      t_first = t = first * chunk;
      t_end = min(t_first + chunk, dense.num_tiles);
      step = 1;
    }
  }

  // Cluster tiles a group of `num_rows` rows takes. Pairs stay inside a group: its M-blocks two by
  // two (stacked along M, sharing B), and an odd last M-block's tiles two by two along N (each
  // loads its own B); an odd N-block count there leaves a padding tile that stores nothing.
  DEVICE i32 cluster_tiles(i32 num_rows) const {
    const i32 m_blocks = (num_rows + BLOCK_M - 1) / BLOCK_M;
    if constexpr (kClusterM == 1) return m_blocks * n_blocks;
    return m_blocks / 2 * n_blocks + (m_blocks & 1) * ((n_blocks + 1) / 2);
  }

  // The window at g0; `before` cluster tiles come before its first group.
  DEVICE void load_window(i32 before) {
    const i32 g = g0 + i32(ptx::lane_id());
    lane_incl = 0;
    if (g < rows.num_groups) {
      i32 start, end;
      rows.bounds(g, start, end);
      lane_incl = cluster_tiles(end - start);
    }
#pragma unroll
    for (int d = 1; d < 32; d *= 2) {
      const i32 v = __shfl_up_sync(0xffffffffu, lane_incl, d);
      if (i32(ptx::lane_id()) >= d) lane_incl += v;
    }
    lane_incl += before;
  }

  // Whether this walk had a tile `back` places before its position (1: the one next()
  // returned last). (Positions are first + k * step with first < step.)
  DEVICE bool tile_before(i32 back) const {
    if constexpr (kChunked) return t - back >= t_first;
    return t - back * step >= 0;
  }

  DEVICE bool next(Tile& tile) {
    i32 mb, nb;
    if constexpr (!kGrouped) {
      if (t >= (kChunked ? t_end : dense.num_tiles)) return false;
      dense.tile(t, rank, mb, nb);
      tile = Tile{0, mb * BLOCK_M, M, nb * BLOCK_N};
    } else {
      for (i32 total; t >= (total = __shfl_sync(0xffffffffu, lane_incl, 31));) {
        if (g0 + 32 >= rows.num_groups) return false;
        g0 += 32;
        load_window(total);
      }
      const u32 hit = __ffs(__ballot_sync(0xffffffffu, lane_incl > t)) - 1;
      const i32 incl = __shfl_sync(0xffffffffu, lane_incl, hit);
      i32 start, end;
      rows.bounds(g0 + i32(hit), start, end);  // same address in every lane: one load
      const i32 m_blocks = (end - start + BLOCK_M - 1) / BLOCK_M;
      const i32 local = t - (incl - cluster_tiles(end - start));
      if constexpr (kClusterM == 1) {
        const TileScheduler<1> group_sched(m_blocks, n_blocks, min(group_n, n_blocks));
        group_sched.tile(local, 0, mb, nb);
      } else {
        const i32 paired_tiles = m_blocks / 2 * n_blocks;
        pairs_n = local >= paired_tiles;
        if (!pairs_n) {
          const TileScheduler<2> group_sched(m_blocks & ~1, n_blocks, min(group_n, n_blocks));
          group_sched.tile(local, rank, mb, nb);
        } else {  // the odd last M-block, two tiles along N per pair
          mb = m_blocks - 1;
          nb = (local - paired_tiles) * 2 + i32(rank);
          if (nb >= n_blocks) mb = m_blocks, nb = n_blocks - 1;  // padding: rows past the group's end
        }
      }
      tile = Tile{g0 + i32(hit), start + mb * BLOCK_M, end, nb * BLOCK_N};
    }
    t += step;
    return true;
  }
};

// acc += part * scale, where the scale is sa * sb with sb the B scale of the
// column's 128-wide block. Columns [0, 8 * SPLIT_J) of the tile use sb0, the rest
// sb1; SPLIT_J is a template parameter so no per-column select is executed.
// kFirst: acc = part * scale (the tile's first K block; acc was not zeroed). The part may
// cover kOff / 4 chunks into a wider tile's acc (n-waves; kAccN columns).
template <int N, int SPLIT_J, bool kFirst = false, int kAccN = N, int kOff = 0>
DEVICE void promote(float (&acc)[kAccN / 2], const float (&part)[N / 2], float sa0, float sa1,
                    float sb0, float sb1) {
  const float s00 = sa0 * sb0, s10 = sa1 * sb0, s01 = sa0 * sb1, s11 = sa1 * sb1;
#pragma unroll
  for (int j = 0; j < N / 8; ++j) {
    const float lo = j < SPLIT_J ? s00 : s01, hi = j < SPLIT_J ? s10 : s11;
    if constexpr (kFirst) {
      acc[kOff + 4 * j + 0] = part[4 * j + 0] * lo;
      acc[kOff + 4 * j + 1] = part[4 * j + 1] * lo;
      acc[kOff + 4 * j + 2] = part[4 * j + 2] * hi;
      acc[kOff + 4 * j + 3] = part[4 * j + 3] * hi;
    } else {
      acc[kOff + 4 * j + 0] = fmaf(part[4 * j + 0], lo, acc[kOff + 4 * j + 0]);
      acc[kOff + 4 * j + 1] = fmaf(part[4 * j + 1], lo, acc[kOff + 4 * j + 1]);
      acc[kOff + 4 * j + 2] = fmaf(part[4 * j + 2], hi, acc[kOff + 4 * j + 2]);
      acc[kOff + 4 * j + 3] = fmaf(part[4 * j + 3], hi, acc[kOff + 4 * j + 3]);
    }
  }
}

template <bool B>
struct Flag {
  static constexpr bool value = B;
};

// Picks the promote<> instance for a run-time split. Tiles start at multiples of
// N, so the split is a multiple of gcd(N, 128): only those instances exist.
template <int N, int STEP_J, bool kFirst = false, int J = STEP_J>
DEVICE void promote_split(i32 split_j, float (&acc)[N / 2], const float (&part)[N / 2], float sa0,
                          float sa1, float sb0, float sb1) {
  if constexpr (J >= N / 8) {
    promote<N, N / 8, kFirst>(acc, part, sa0, sa1, sb0, sb1);
  } else {
    if (split_j == J) promote<N, J, kFirst>(acc, part, sa0, sa1, sb0, sb1);
    else promote_split<N, STEP_J, kFirst, J + STEP_J>(split_j, acc, part, sa0, sa1, sb0, sb1);
  }
}

constexpr int gcd(int a, int b) { return b == 0 ? a : gcd(b, a % b); }

// Consumer warpgroups of a BLOCK_M-row tile: one per 64 rows, except 256-row tiles,
// where each of two warpgroups runs its 128 rows as two 64-row "m-waves" (three or four
// warpgroups would leave too few registers for their accumulators).
constexpr int math_warpgroups(int block_m) { return block_m == 256 ? 2 : block_m / 64; }

// The wgmma width of a BLOCK_N-wide tile: 256-wide tiles run as two 128-wide "n-waves" (a
// 256-wide partial accumulator would not fit in registers beside the result).
constexpr int wave_n(int block_n) { return block_n == 256 ? 128 : block_n; }

}  // namespace fp8gemm

// kCMode: 0 = no C, 1 = C is fp32, 2 = C is bf16. kOutFp32: D is fp32 (else bf16).
// kOverlap: promote K block kb while block kb + 1's wgmma run (needs a second partial
// accumulator, so only for narrower tiles). kTmaStore: the epilogue stages the tile in
// shared memory and writes it with TMA (needs 16-byte aligned D rows): 1 in a buffer of its
// own, 2 in the ring of stages once drained (see kOutInRing); 0 stores straight from
// registers. kGrouped: M-grouped GEMM (see GroupRows): B is [G * N, K] (group g's rows at
// g * N), sfa / sfb advance by sfa_stride_g / sfb_stride_g per group, and sfa's row index
// restarts at g * group_stride (masked layout). kResidentA: K blocks of A kept resident (0:
// A streams with B; else the launch guarantees K <= kResidentA * 128; see the top).
// kSplitK > 1: split-K across a cluster of kSplitK CTAs, which take the same tiles, each a
// contiguous share of the K blocks, and add their fp32 partial tiles through distributed
// shared memory (each sums 1/kSplitK of the tile, in rank order, and stores it): small M,
// where few tiles leave SMs idle or every tile re-reads all of A (see reduce_tile).
template <int BLOCK_M, int BLOCK_N, int STAGES, int CLUSTER_M, int kOverlap, int kOutFp32, int kCMode,
          int kTmaStore, int kGrouped, int kResidentA, int kSplitK>
// The cluster shape is compiled in, so a plain cuLaunchKernel launches it.
__global__ void __launch_bounds__((fp8gemm::math_warpgroups(BLOCK_M) + 1) * 128, 1)
__cluster_dims__(CLUSTER_M * kSplitK, 1, 1)
fp8_gemm_nt(const __grid_constant__ TmaDescriptor tmap_a,
            const __grid_constant__ TmaDescriptor tmap_b,
            const __grid_constant__ TmaDescriptor tmap_d,
            const float* __restrict__ sfa, i64 sfa_stride_m, i64 sfa_stride_k,
            const float* __restrict__ sfb, i64 sfb_stride_n, i64 sfb_stride_k,
            void* d, i64 ldd, const void* c, i64 ldc,
            i32 M, i32 N, i32 K, i32 group_n,
            const i32* group_starts, const i32* group_ends, const i32* group_counts,
            i32 group_stride, i32 num_groups, i64 sfa_stride_g, i64 sfb_stride_g) {
  using namespace fp8gemm;
  constexpr int kMathWarpgroups = math_warpgroups(BLOCK_M);
  constexpr int kMWaves = BLOCK_M / 64 / kMathWarpgroups;  // 64-row slices per consumer warpgroup
  constexpr int kWaveN = wave_n(BLOCK_N);  // see wave_n
  constexpr int kNWaves = BLOCK_N / kWaveN;
  constexpr u32 kTileBytesA = BLOCK_M * kBlockK;
  constexpr u32 kTileBytesB = BLOCK_N * kBlockK;
  // A tile that straddles a 128-column scale block of B needs two B scales.
  constexpr bool kTwoScaleBlocks = (128 % BLOCK_N) != 0;
  static_assert(BLOCK_M == 64 || BLOCK_M == 128 || BLOCK_M == 192 || BLOCK_M == 256,
                "BLOCK_M must be 64, 128, 192 or 256");
  static_assert(kMWaves == 1 || !kOverlap, "m-waves leave no registers for a second partial");
  static_assert(kNWaves == 1 || (kMWaves == 1 && !kOverlap), "n-waves: 128-row tiles, plain loop");
  static_assert(BLOCK_N % 8 == 0 && BLOCK_N >= 8 && BLOCK_N <= 256, "bad BLOCK_N");
  // Each CTA of a cluster loads BLOCK_N / CLUSTER_M rows of B; the slices must keep
  // the 1024-byte alignment of the 128-byte swizzle pattern.
  constexpr u32 kSliceRowsB = BLOCK_N / CLUSTER_M;
  static_assert(CLUSTER_M == 1 || CLUSTER_M == 2, "CLUSTER_M must be 1 or 2");  // (TileWalker's pairs too)
  static_assert(!kGrouped || kCMode == 0, "grouped: no C");
  static_assert((kSliceRowsB * kBlockK) % 1024 == 0, "B slices must stay 1024-byte aligned");
  static_assert(kSplitK >= 1 && kSplitK <= 8, "split-K over 1 to 8 CTAs (portable cluster sizes)");
  static_assert(kSplitK == 1 || (CLUSTER_M == 1 && !kGrouped && kResidentA == 0 && kTmaStore == 0 && kMWaves == 1),
                "split-K: dense and one m-wave only; without CTA pairs, resident A or a staged output");
  // kOutInRing: a tile's output is staged over the ring of stages (A's, then B's), after
  // every consumer is done with its last K block; the producer starts a CTA's next tile
  // only once those stores have read it (ring_free). Chosen where a CTA is expected to
  // take one tile, so that nothing waits (grouped, no clusters: a peer would multicast
  // into the ring).
  constexpr bool kOutInRing = kTmaStore == 2;
  static_assert(!kOutInRing || CLUSTER_M == 1, "output in the ring: no clusters");

  extern __shared__ u8 smem_raw[];
  // Aligned to 1024 bytes (the 128-byte swizzle atom) by offsetting the __shared__ array
  // itself: going through an integer would hide the address space, and every access would
  // compile to a generic LD/ST instead of LDS/STS.
  u8* smem = smem_raw + ((1024 - (ptx::smem_addr(smem_raw) & 1023)) & 1023);
  static_assert(kResidentA == 0 || (!kGrouped && !kOutInRing), "resident A: dense, output not in the ring");
  constexpr u32 kBytesA = (kResidentA ? kResidentA : STAGES) * kTileBytesA;
  u8* smem_a = smem;  // resident A: K block kb at kb * kTileBytesA; else stage s's at s * kTileBytesA
  u8* smem_b = smem + kBytesA;
  // The output tile, in column slabs of 32 bytes x 64 rows (one TMA store box each,
  // 32-byte swizzle), one set of slabs per consumer warpgroup.
  constexpr int kOutBytes = kOutFp32 ? 4 : 2;
  constexpr int kSlabCols = 32 / kOutBytes;
  constexpr u32 kSlabBytes = 64 * 32;
  // (split-K: the fp32 partial tile, in accumulator order: see reduce_tile)
  constexpr u32 kTileBytesD = kTmaStore == 1 ? BLOCK_M * BLOCK_N * kOutBytes : kSplitK > 1 ? BLOCK_M * BLOCK_N * 4 : 0;
  static_assert(!kTmaStore || BLOCK_N % kSlabCols == 0, "BLOCK_N must fill whole output slabs");
  static_assert(!kOutInRing || BLOCK_M * BLOCK_N * kOutBytes <= STAGES * (kTileBytesA + kTileBytesB),
                "the output tile must fit in the ring");
  u8* smem_d = kOutInRing ? smem_a : smem_b + STAGES * kTileBytesB;
  u64* full = reinterpret_cast<u64*>(smem_b + STAGES * kTileBytesB + kTileBytesD);
  u64* empty = full + STAGES;
  u64* ring_free = empty + STAGES;  // kOutInRing: a tile's staged output has been read
  // Split-K: the other CTAs' partial sums for our share of the tile have arrived (red_full);
  // they have summed what we sent them, so we may send again (red_empty).
  u64* red_full = ring_free;
  u64* red_empty = ring_free + 1;
  // Per stage: the A scales of the tile's BLOCK_M rows, then the (up to) two B scales.
  // (16-byte aligned for the bulk copies: two barrier slots for ring_free.)
  constexpr int kScaleStride = BLOCK_M + 4;
  float* smem_scales = reinterpret_cast<float*>(ring_free + (kOutInRing || kSplitK > 1 ? 2 : 0));

#ifdef FP8GEMM_EXPERIMENT_TIMELINE
  // Timing experiments only (scripts/masked_probe.py): per CTA, the globaltimer at a few
  // points of its walk, into c as u64[grid][16].
  static_assert(kCMode == 0, "the timeline is written where C would be read");
  const u64 entry_time = ptx::globaltimer();
  u64* const timeline = static_cast<u64*>(const_cast<void*>(c)) + blockIdx.x * 16;
  if (threadIdx.x == 0) timeline[0] = entry_time;
#define FP8GEMM_MARK(slot) (timeline[slot] = ptx::globaltimer())
#else
#define FP8GEMM_MARK(slot) ((void)0)
#endif
  const u32 warp = ptx::warp_id_uniform();
  const u32 rank = CLUSTER_M > 1 ? ptx::cluster_ctarank() : 0;
  const u32 split = kSplitK > 1 ? ptx::cluster_ctarank() : 0;  // this CTA's share of K
  constexpr int kClusterSize = CLUSTER_M * kSplitK;
  const i32 cluster_id = blockIdx.x / kClusterSize, num_clusters = gridDim.x / kClusterSize;
  if (threadIdx.x == 0) {
    ptx::tma_prefetch_descriptor(&tmap_a);
    ptx::tma_prefetch_descriptor(&tmap_b);
    if constexpr (kTmaStore) ptx::tma_prefetch_descriptor(&tmap_d);
    for (int s = 0; s < STAGES; ++s) {
      // The TMA producer's arrive (with the byte count), and one per scale-loader lane.
      ptx::mbar_init(&full[s], 1 + 32);
      // One arrival per consumer warp of every CTA that reads this stage's B slice.
      ptx::mbar_init(&empty[s], CLUSTER_M * kMathWarpgroups * 4);
    }
    if constexpr (kOutInRing) ptx::mbar_init(ring_free, kMathWarpgroups);  // one per warpgroup
    if constexpr (kSplitK > 1) {
      ptx::mbar_init(red_full, 1);  // our arrival with the bytes the others send
      ptx::mbar_init(red_empty, (kSplitK - 1) * kMathWarpgroups * 4);  // each other CTA's consumer warps
    }
    ptx::fence_barrier_init();
  }
  // Peers arrive on our barriers and multicast into our stages: all barriers of the
  // cluster must be initialised first.
  // Split-K: the first message to a peer comes after the main loop, where the consumers
  // wait for this barrier (see reduce_tile); the others need their peers at once.
  if constexpr (CLUSTER_M > 1) ptx::cluster_sync();
  else if constexpr (kSplitK > 1) ptx::cluster_arrive_relaxed(), __syncthreads();
  else __syncthreads();
  if (threadIdx.x == 0) FP8GEMM_MARK(6);  // barriers initialised

  const GroupRows groups{group_starts, group_ends, group_counts, group_stride, M, num_groups};
  // Each role of the CTA walks the same tiles with its own walker.
  auto walker = [&]() {
    return TileWalker<BLOCK_M, BLOCK_N, CLUSTER_M, bool(kGrouped), (kResidentA > 0)>(
        groups, M, N, group_n, cluster_id, num_clusters, rank);
  };
  const i32 num_k_blocks = (K + kBlockK - 1) / kBlockK;
  // This CTA's K blocks: all, or its contiguous share of them (split-K).
  const i32 kb_begin = i32(split) * num_k_blocks / kSplitK, kb_end = (i32(split) + 1) * num_k_blocks / kSplitK;

  // kShadowStore: a tile's result stays in acc until the next tile's first K block, and
  // each 64-row slice goes to shared memory while that block's wgmma for the same m-wave
  // run; then warp 2 (the "storer") stores it: with TMA, or row by row where a slice
  // ends inside a group (rows past a group's end belong to the next group or must keep
  // their contents). Otherwise the tensor pipe idles through the epilogue (ncu, perf log
  // session 7), and issued by a consumer thread the stores stall its warpgroup (perf log
  // session 8). Not with C (its reads would make the staging divergent, and ptxas
  // serializes wgmma around divergent code), nor in the overlapped loop (chosen for at most
  // two tiles per CTA, where it hides one epilogue at most: measured 1.5-2.6% slower on the
  // masked grouped shapes).
  constexpr bool kShadowStore = kTmaStore == 1 && kCMode == 0 && !kOverlap;
  // Named barriers per consumer warpgroup g (its 128 threads and the storer's 32):
  // kBarStaged + g, its slices are staged; kBarFree + g, the storer has read them.
  constexpr u32 kBarStaged = 5, kBarFree = 5 + kMathWarpgroups;
  constexpr u32 kSliceBytesD = 64 * BLOCK_N * kOutBytes;
  // One TMA store per slab of a staged 64-row slice (TMA clips rows and columns past M and N).
  auto tma_store_slice = [&](u8* tile_d, i32 n0, i32 row) {
#pragma unroll
    for (int sl = 0; sl < BLOCK_N / kSlabCols; ++sl) {
      if (n0 + sl * kSlabCols < N) ptx::tma_store_2d(&tmap_d, tile_d + sl * kSlabBytes, n0 + sl * kSlabCols, row);
    }
    ptx::tma_store_commit();
  };

  if (warp < 4) {
    // ---------------------------------------------------------------- producer
    // Registers move within what the launch allocated (from __launch_bounds__): two
    // consumer groups, 128 x 56 + 256 x 224 = 168 x 384; three, 128 x 40 + 384 x 152
    // <= 128 x 512. Asking for more than was freed blocks forever.
    if constexpr (kMathWarpgroups == 2) ptx::setmaxnreg_dec<56>();
    if constexpr (kMathWarpgroups == 3) ptx::setmaxnreg_dec<40>();
    // Grouped GEMMs on large tiles: the first stage's loads alone, the rest once they have
    // landed. At the start every CTA asks for all its stages at once from a cold L2, and the
    // first stage's bytes arrive with the rest: alone, the first MMA ends 0.4-0.7 us sooner
    // (masked grouped shapes +0.5-1.5%, contiguous within 0.4%). Not in dense kernels: there
    // the wait did nothing measurable, but the code it adds moved their speed by -4% to +12%
    // by tile through ptxas's output (perf log session 9).
#ifndef FP8GEMM_FIRST_STAGE_ALONE_MIN_TILE  // experiments (scripts/ab_options.sh) may change it
#define FP8GEMM_FIRST_STAGE_ALONE_MIN_TILE 128
#endif
    constexpr bool kFirstStageAlone = kGrouped && BLOCK_M >= FP8GEMM_FIRST_STAGE_ALONE_MIN_TILE &&
                                      BLOCK_N >= FP8GEMM_FIRST_STAGE_ALONE_MIN_TILE;
    if (warp == 0) {
      // One lane issues. The grouped walk is warp-cooperative, so there the whole warp
      // walks the tiles with it; the dense walk is per thread and the other lanes leave.
      const bool leader = ptx::elect_one();
      if (kGrouped || leader) {
        u32 it = 0, tile_count = 0;
        i32 resident_m0 = -1;  // kResidentA: the M-block whose A is in shared memory
        auto tiles = walker();
        if (leader) FP8GEMM_MARK(7);  // walker built
        for (Tile tile; tiles.next(tile); ++tile_count) {
          if (leader && !tiles.tile_before(2)) FP8GEMM_MARK(1);  // first tile known
          if (leader) {
            // The tile before's output, staged over the ring, has been read by its stores.
            if (kOutInRing && tile_count > 0) ptx::mbar_wait(ring_free, (tile_count - 1) & 1);
            // Resident A: loaded with the tile's stages when the M-block changes, once the
            // consumers are done with the last K block issued (and so with the old A).
            const bool load_a = kResidentA == 0 || tile.m0 != resident_m0;
            if (kResidentA && load_a && it > 0) ptx::mbar_wait(&empty[(it - 1) % STAGES], ((it - 1) / STAGES) & 1);
            resident_m0 = tile.m0;
            for (i32 kb = kb_begin; kb < kb_end; ++kb, ++it) {
              if (kFirstStageAlone && it == 1) ptx::mbar_wait(&full[0], 0);
              const u32 s = it % STAGES, round = it / STAGES;
              ptx::mbar_wait(&empty[s], (round & 1) ^ 1);
              // TMA counts the whole box, out-of-bounds zero fill included.
              ptx::mbar_arrive_expect_tx(&full[s], (load_a ? kTileBytesA : 0) + kTileBytesB);
              if (load_a) {
                ptx::tma_load_2d(smem_a + (kResidentA ? u32(kb) : s) * kTileBytesA, &tmap_a, &full[s],
                                 kb * kBlockK, tile.m0);
              }
              u8* slice = smem_b + s * kTileBytesB + rank * kSliceRowsB * kBlockK;
              const i32 row_b = tile.group * N + tile.n0 + rank * kSliceRowsB;
              if constexpr (CLUSTER_M > 1) {
                if (kGrouped && tiles.pairs_n) {  // own B tile: both slices, no multicast
                  const i32 row_b0 = tile.group * N + tile.n0;
                  for (u32 r = 0; r < CLUSTER_M; ++r)
                    ptx::tma_load_2d(smem_b + s * kTileBytesB + r * kSliceRowsB * kBlockK, &tmap_b, &full[s],
                                     kb * kBlockK, row_b0 + i32(r * kSliceRowsB));
                } else {
                  ptx::tma_load_2d_multicast(slice, &tmap_b, &full[s], kb * kBlockK, row_b,
                                             (1u << CLUSTER_M) - 1);
                }
              } else {
                ptx::tma_load_2d(slice, &tmap_b, &full[s], kb * kBlockK, row_b);
              }
              if (it == 0) FP8GEMM_MARK(10);  // first stage's loads issued
            }
          }
          if constexpr (bool(kGrouped)) __syncwarp();
        }
        if (leader) FP8GEMM_MARK(5);  // last load issued
      }
    } else if (warp == 1) {
      // Scale loader: the stage's scales go global -> shared asynchronously, so their
      // latency is hidden by the pipeline depth instead of stalling the consumers. Its
      // speed is on the critical path (perf log, session 5): for large tiles whose A
      // scales are one aligned contiguous run (M-major sfa, full tile), one bulk copy per
      // stage moves them (measured +2-7%; on 64x16 tiles it lost 11%, so small tiles keep
      // the other way); otherwise one 4-byte cp.async per row (any layout, rows clamped).
#ifndef FP8GEMM_BULK_SCALES_MIN_TILE  // experiments (scripts/ab_options.sh) may lower it
#define FP8GEMM_BULK_SCALES_MIN_TILE 128
#endif
      constexpr int kBulkMin = FP8GEMM_BULK_SCALES_MIN_TILE;
      constexpr bool kBulkScales = BLOCK_M >= kBulkMin && BLOCK_N >= kBulkMin;
      const u32 lane = ptx::lane_id();
      const i32 num_n_scale_blocks = (N + 127) / 128;
      u32 it = 0;
      auto tiles = walker();
      for (Tile tile; tiles.next(tile);) {
        // Rows past the group's (or M's) end hold other rows or zeros: clamp their scale
        // reads into the group. (Few registers here: the producer warps run with 56.)
        const i32 row = tile.m0 + i32(lane), last_row = tile.m_end - 1;
        const i32 row_base = tile.group * group_stride;  // sfa's row index restarts per group
        const float* sfa_g = sfa + i64(tile.group) * sfa_stride_g;
        const i32 sb = min(tile.n0 / 128 + i32(lane), num_n_scale_blocks - 1);
        const float* sfb_g = sfb + i64(tile.group) * sfb_stride_g + i64(sb) * sfb_stride_n;
        const float* sfa_tile = sfa_g + i64(tile.m0 - row_base) * sfa_stride_m;
        const bool bulk = kBulkScales && sfa_stride_m == 1 && sfa_stride_k % 4 == 0 &&
                          tile.m_end - tile.m0 >= BLOCK_M && (reinterpret_cast<u64>(sfa_tile) & 15) == 0;
        for (i32 kb = kb_begin; kb < kb_end; ++kb, ++it) {
          const u32 s = it % STAGES, round = it / STAGES;
          ptx::mbar_wait(&empty[s], (round & 1) ^ 1);
          float* dst = smem_scales + s * kScaleStride;
          if (bulk) {
            // Lane 0's arrival below is still pending, so the phase cannot complete
            // before the expected bytes are raised.
            if (lane == 0) {
              ptx::mbar_expect_tx(&full[s], BLOCK_M * 4);
              ptx::bulk_load(dst, sfa_tile + i64(kb) * sfa_stride_k, BLOCK_M * 4, &full[s]);
            }
          } else {
            const float* src = sfa_g + i64(kb) * sfa_stride_k;
#pragma unroll
            for (int i = 0; i < BLOCK_M / 32; ++i) {
              ptx::cp_async_4(dst + lane + i * 32,
                              src + i64(min(row + i * 32, last_row) - row_base) * sfa_stride_m);
            }
          }
          if (lane < 2) ptx::cp_async_4(dst + BLOCK_M + lane, sfb_g + i64(kb) * sfb_stride_k);
          ptx::cp_async_mbar_arrive(&full[s]);
          if (lane == 0 && it == 0) FP8GEMM_MARK(8);  // first stage's scale copies issued
        }
      }
    } else if (kShadowStore && warp == 2) {
      // Storer: each tile's slices, once their consumer warpgroup has staged them, except
      // the last tile's, which the consumers store themselves as soon as it is done (handed
      // over, the tail of a walk of two or three tiles measured 1-7% slower). (The whole
      // warp walks: the grouped walk is warp-cooperative.)
      const u32 lane = ptx::lane_id();
      const bool leader = lane == 0;
      constexpr int kChunks = BLOCK_N * kOutBytes / 16;  // 16-byte pieces of a staged row
      auto tiles = walker();
      Tile tile, next;
      for (bool more = tiles.next(tile) && tiles.next(next); more; tile = next, more = tiles.next(next)) {
#pragma unroll 1
        for (u32 g = 0; g < kMathWarpgroups; ++g) {
          ptx::bar_sync(kBarStaged + g, kWarpgroup + 32);
#pragma unroll 1
          for (int w = 0; w < kMWaves; ++w) {
            const u32 slice = g * kMWaves + w;
            const i32 row0 = tile.m0 + i32(slice) * 64;
            const u8* staged = smem_d + slice * kSliceBytesD;
            if (min(row0 + 64, M) <= tile.m_end) {  // TMA clips rows past M (and columns past N)
              if (leader) {
#pragma unroll 1
                for (int sl = 0; sl < BLOCK_N / kSlabCols && tile.n0 + sl * kSlabCols < N; ++sl) {
                  ptx::tma_store_2d(&tmap_d, staged + sl * kSlabBytes, tile.n0 + sl * kSlabCols, row0);
                }
                ptx::tma_store_commit();
              }
            } else {
              // Rows [row0, m_end) only, 16 bytes per lane and step (32-byte swizzle as staged).
              const i32 rows = min(tile.m_end - row0, 64);
              for (i32 i = i32(lane); i < rows * kChunks; i += 32) {
                const i32 r = i / kChunks, ch = i % kChunks;
                const i32 col = tile.n0 + ch * (16 / kOutBytes);
                if (col >= N) continue;  // N is a multiple of 16 / kOutBytes (TMA-store rows)
                const u32 at = (ch / 2) * kSlabBytes + r * 32 + (((ch % 2) * 16) ^ (((r >> 2) & 1) << 4));
                *reinterpret_cast<uint4*>(static_cast<u8*>(d) + (i64(row0 + r) * ldd + col) * kOutBytes) =
                    *reinterpret_cast<const uint4*>(staged + at);
              }
            }
          }
        }
        // The consumers stage (or store) `next` once the stores have read this tile.
        if (leader) ptx::tma_store_wait_read<0>();
        __syncwarp();
#pragma unroll
        for (u32 g = 0; g < kMathWarpgroups; ++g) ptx::bar_arrive(kBarFree + g, kWarpgroup + 32);
      }
      if (leader) ptx::tma_store_wait<0>();  // shared memory must outlive the stores' reads
    }
    return;
  }

  // ------------------------------------------------------------------ consumers
  if constexpr (kMathWarpgroups == 2) ptx::setmaxnreg_inc<224>();
  if constexpr (kMathWarpgroups == 3) ptx::setmaxnreg_inc<152>();
  const u32 math_tid = threadIdx.x - kWarpgroup;
  const u32 wg = math_tid / kWarpgroup;
  const u32 lane = ptx::lane_id();
  // wgmma accumulator layout: this thread holds rows r and r + 8 of its warp's
  // 16 rows, and columns 8j + 2(lane % 4) + {0, 1} for every j. Warpgroup wg owns the
  // tile's 64-row slices wg * kMWaves + w, one per m-wave w.
  // (Computed as before m-waves existed: other forms made ptxas spill in the older kernels.)
  const i32 row_in_tile0 = wg * kMWaves * 64 + (warp - 4 - wg * 4) * 16 + lane / 4;
  auto row_in_tile = [&](int w) { return row_in_tile0 + w * 64; };
  const i32 col_in_chunk = (lane % 4) * 2;
  // Lower descriptor halves of this warpgroup's first A slice and of B in stage 0; stage
  // s is s * (tile bytes / 16) further, m-wave w 64 rows (512 x 16 bytes) further, K step
  // kk (32 bytes inside the swizzle atom) 2 * kk. (The warpgroup index from the
  // warp-uniform warp index keeps these in uniform registers.)
  const u32 desc_a0 = ptx::smem_desc_lo_sw128(smem_a + (warp - 4) / 4 * kMWaves * 64 * kBlockK);
  const u32 desc_b0 = ptx::smem_desc_lo_sw128(smem_b);

  // Position in the ring of stages: index and the parity of the pass over the ring.
  struct RingPos {
    u32 s = 0, phase = 0;
    DEVICE RingPos next() const { return s + 1 == STAGES ? RingPos{0, phase ^ 1} : RingPos{s + 1, phase}; }
  };

  // (From the warp-uniform warp index, so that they stay in uniform registers.)
  const u32 bar_staged = kBarStaged + (warp - 4) / 4, bar_free = kBarFree + (warp - 4) / 4;
  float acc[kMWaves][BLOCK_N / 2];
  if constexpr (kShadowStore) {  // staged before the first tile, never stored
#pragma unroll
    for (int w = 0; w < kMWaves; ++w) {
#pragma unroll
      for (int i = 0; i < BLOCK_N / 2; ++i) acc[w][i] = 0.f;
    }
  }
  float part[kWaveN / 2];
  float part2[kOverlap ? kWaveN / 2 : 1];
  RingPos pos;

  // stmatrix: one instruction stores the warp's 16 rows of two 8-column chunks (one slab's
  // 32-byte rows) of a 64-row slice: matrices (j, rows 0-7), (j, 8-15), (j + 1, 0-7),
  // (j + 1, 8-15). Lane t addresses row t % 8 of matrix t / 8. Stages m-wave w's slice of
  // this warpgroup; value(j, h, e) as below. (One per-thread base; the rest immediates.)
  const u32 stsm_at = [&]() {
    const u32 mat = lane / 8, r = (warp - 4 - wg * 4) * 16 + (mat % 2) * 8 + lane % 8;
    return ptx::smem_addr(smem_d + wg * kMWaves * kSliceBytesD) + r * 32 + (((mat / 2) * 16) ^ (((r >> 2) & 1) << 4));
  }();
  auto stmatrix_slice = [&](int w, auto value) {
    const u32 at = stsm_at;
#pragma unroll
    for (int j = 0; j < BLOCK_N / 8; j += 2) {
      ptx::stmatrix_x4(at + w * (64 * BLOCK_N * kOutBytes) + (j / 2) * kSlabBytes,
                       ptx::pack_bf16x2(value(j, 0, 0), value(j, 0, 1)),
                       ptx::pack_bf16x2(value(j, 1, 0), value(j, 1, 1)),
                       ptx::pack_bf16x2(value(j + 1, 0, 0), value(j + 1, 0, 1)),
                       ptx::pack_bf16x2(value(j + 1, 1, 0), value(j + 1, 1, 1)));
    }
  };

  // 32-byte swizzle: the 16-byte half of a row flips on rows 4-7 of every 8. The
  // byte offset in the slice of this thread's pair in 8-column chunk j, row half h.
  // With m-waves it is built from two per-thread values (even and odd chunks; bf16:
  // two chunks share a slab) plus immediates: otherwise ptxas keeps every store
  // address of both slices live across the tile loop, and spills. (One slice keeps
  // the per-store form: the other measured 5.5% slower on 128x192, perf log session 7.)
  auto offset = [&](int w, int j, int h) -> u32 {
    const u32 slab = kOutFp32 ? j : j / 2, slice = wg * kMWaves + w;
    if constexpr (kMWaves > 1) {
      const u32 row_in_slice = row_in_tile0 - wg * kMWaves * 64;
      const u32 flip = ((row_in_slice >> 2) & 1) << 4;
      const u32 at_even = row_in_slice * 32 + ((kOutFp32 ? col_in_chunk * 4 : col_in_chunk * 2) ^ flip);
      return slab * kSlabBytes + h * 8 * 32 + (j % 2 && !kOutFp32 ? at_even ^ 16 : at_even);
    } else {
      const u32 r = row_in_tile(w) - slice * 64 + 8 * h;
      const u32 byte = kOutFp32 ? col_in_chunk * 4 : (j % 2) * 16 + col_in_chunk * 2;
      return slab * kSlabBytes + r * 32 + (byte ^ (((r >> 2) & 1) << 4));
    }
  };
  // kShadowStore: stages m-wave w's slice of the tile in acc into shared memory.
  auto stage = [&](int w) {
    if constexpr (!kOutFp32) {
      stmatrix_slice(w, [&](int j, int h, int e) { return acc[w][4 * j + 2 * h + e]; });
    } else {
      u8* tile_d = smem_d + (wg * kMWaves + w) * kSliceBytesD;
#pragma unroll
      for (int j = 0; j < BLOCK_N / 8; ++j) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          *reinterpret_cast<float2*>(tile_d + offset(w, j, h)) = make_float2(acc[w][4 * j + 2 * h], acc[w][4 * j + 2 * h + 1]);
        }
      }
    }
  };

  // Epilogue of the tile at (m0, n0) whose rows end at m_end; this thread's first rows are
  // row0_first and row1_first (m-wave w: 64 w further).
  auto store_tile = [&](i32 m0, i32 n0, i32 m_end, i32 row0_first, i32 row1_first) {
    bool waited = false;  // for the previous tile's TMA stores to have read smem_d
    // kOutInRing: every consumer warpgroup's wgmma are done reading the ring.
    if constexpr (kOutInRing) ptx::bar_sync(1, kMathWarpgroups * kWarpgroup);
#pragma unroll
    for (int w = 0; w < kMWaves; ++w) {
      const u32 slice = wg * kMWaves + w;
      const i32 row0 = row0_first + w * 64, row1 = row1_first + w * 64;
      // The value of (row, col) of this thread's fragment, C added.
      auto value = [&](int j, int h, int e) {
        float v = acc[w][4 * j + 2 * h + e];
        const i32 row = h ? row1 : row0, col = n0 + j * 8 + col_in_chunk + e;
        if constexpr (kCMode != 0) {
          if (row < m_end && col < N) {
            if constexpr (kCMode == 1) v += static_cast<const float*>(c)[i64(row) * ldc + col];
            else v += ptx::bf16_to_float(static_cast<const u16*>(c)[i64(row) * ldc + col]);
          }
        }
        return v;
      };
      // A TMA store box spans the slice's 64 rows: usable where the rows past the
      // group's end are past the tensor's end too (TMA clips those), else register stores.
      const bool tma_store = kTmaStore && min(m0 + i32(slice) * 64 + 64, M) <= m_end;
      if (tma_store) {
        // Through shared memory: conflict-free 32-byte-swizzled writes, then one TMA store
        // per slab.
        u8* tile_d = smem_d + slice * 64 * BLOCK_N * kOutBytes;
        const bool leader = math_tid % kWarpgroup == 0;
        if (!waited) {
          if (leader) ptx::tma_store_wait_read<0>();  // the previous tile's stores have read it
          waited = true;
        }
        ptx::bar_sync(3 + wg, kWarpgroup);
        if constexpr (kMWaves > 1 && !kOutFp32) {
          stmatrix_slice(w, value);
        } else {
#pragma unroll
          for (int j = 0; j < BLOCK_N / 8; ++j) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              const u32 off = offset(w, j, h);
              if constexpr (kOutFp32) {
                *reinterpret_cast<float2*>(tile_d + off) = make_float2(value(j, h, 0), value(j, h, 1));
              } else {
                *reinterpret_cast<u32*>(tile_d + off) = ptx::pack_bf16x2(value(j, h, 0), value(j, h, 1));
              }
            }
          }
        }
        ptx::fence_proxy_async_smem();  // make the writes visible to the TMA unit
        ptx::bar_sync(3 + wg, kWarpgroup);
        if (leader) tma_store_slice(tile_d, n0, m0 + slice * 64);
      } else {
        // Straight from registers, two adjacent columns per store.
#pragma unroll
        for (int j = 0; j < BLOCK_N / 8; ++j) {
          const i32 col = n0 + j * 8 + col_in_chunk;
          if (col >= N) continue;  // N % 2 == 0, so col + 1 < N as well
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const i32 row = h ? row1 : row0;
            if (row >= m_end) continue;
            const float v0 = value(j, h, 0), v1 = value(j, h, 1);
            if constexpr (kOutFp32) {
              *reinterpret_cast<float2*>(static_cast<float*>(d) + i64(row) * ldd + col) = make_float2(v0, v1);
            } else {
              *reinterpret_cast<u32*>(static_cast<u16*>(d) + i64(row) * ldd + col) = ptx::pack_bf16x2(v0, v1);
            }
          }
        }
      }
    }
    if constexpr (kOutInRing) {  // the producer may refill the ring once the stores have read it
      if (math_tid % kWarpgroup == 0) {
        ptx::tma_store_wait_read<0>();
        ptx::mbar_arrive(ring_free);
      }
    }
  };

  // Split-K epilogue of tile number t of this CTA's walk. CTA r of the cluster sums the
  // float pairs [r * kOwned, (r + 1) * kOwned) of every thread's accumulator: each CTA
  // sends those of its partial tile to CTA r's receive slot for its rank (st.async, counted
  // by r's red_full; its own share with plain stores), then sums the kSplitK slots in rank
  // order (the same order every run) and stores them, C added. Slot s, pairs k and k + 1 of
  // thread i: a float4 at s * kSlotBytes + ((k / 2) * threads + i) * 16.
  auto reduce_tile = [&](i32 n0, i32 m_end, i32 row0, i32 row1, u32 t) {
    constexpr int kPairs = BLOCK_N / 4;
    constexpr int kOwned = kPairs / kSplitK;
    constexpr u32 kThreads = kMathWarpgroups * kWarpgroup;
    constexpr u32 kSlotBytes = kOwned * kThreads * 8;
    static_assert(kPairs % (2 * kSplitK) == 0, "split-K: an even number of float pairs per CTA, each pair summed");
    if (math_tid == 0 && t == 0) FP8GEMM_MARK(11);  // main loop done
    if (t == 0) {
      ptx::cluster_wait();  // every peer runs, its barriers initialised
    } else {
      // We have summed the tile before out of our slots (told here, not then, so that no
      // message is left in flight to a peer that has finished): the others may send again
      // once they have too.
      if (lane == 0) {
#pragma unroll
        for (u32 r = 0; r < kSplitK; ++r) {
          if (r != split) ptx::mbar_arrive_cluster(red_empty, r);
        }
      }
      ptx::mbar_wait(red_empty, (t - 1) & 1);
    }
    if (math_tid == 0) ptx::mbar_arrive_expect_tx(red_full, (kSplitK - 1) * kSlotBytes);
    // Our slot (index split) in every CTA's receive buffer, this thread's first float4.
    const u32 slot_offset = split * kSlotBytes + math_tid * 16;
#pragma unroll
    for (u32 r = 0; r < kSplitK; ++r) {
#pragma unroll
      for (int k = 0; k < kOwned; k += 2) {
        const int p = r * kOwned + k;
        const u32 offset = slot_offset + (k / 2) * kThreads * 16;
        const float4 v = make_float4(acc[0][2 * p], acc[0][2 * p + 1], acc[0][2 * p + 2], acc[0][2 * p + 3]);
        if (r == split) {
          *reinterpret_cast<float4*>(smem_d + offset) = v;
        } else {
          ptx::st_async_f4(ptx::smem_addr(smem_d) + offset, red_full, r, v.x, v.y, v.z, v.w);
        }
      }
    }
    if (math_tid == 0 && t == 0) FP8GEMM_MARK(12);  // partial sent
    ptx::mbar_wait(red_full, t & 1);
    if (math_tid == 0 && t == 0) FP8GEMM_MARK(13);  // every partial in
    const float4* slots = reinterpret_cast<const float4*>(smem_d) + math_tid;
#pragma unroll
    for (int k = 0; k < kOwned; k += 2) {
      float4 v = slots[(k / 2) * kThreads];
#pragma unroll
      for (u32 r = 1; r < kSplitK; ++r) {
        const float4 x = slots[r * (kSlotBytes / 16) + (k / 2) * kThreads];
        v.x += x.x;
        v.y += x.y;
        v.z += x.z;
        v.w += x.w;
      }
      // Pairs p and p + 1 (p even): 8-column chunk p / 2 of rows row0 and row1.
      const i32 col = n0 + ((i32(split) * kOwned + k) >> 1) * 8 + col_in_chunk;
      if (col >= N) continue;  // N % 2 == 0, so col + 1 < N as well
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const i32 row = h ? row1 : row0;
        if (row >= m_end) continue;
        float v0 = h ? v.z : v.x, v1 = h ? v.w : v.y;
        if constexpr (kCMode == 1) {
          const float* cr = static_cast<const float*>(c) + i64(row) * ldc + col;
          v0 += cr[0];
          v1 += cr[1];
        } else if constexpr (kCMode == 2) {
          const u16* cr = static_cast<const u16*>(c) + i64(row) * ldc + col;
          v0 += ptx::bf16_to_float(cr[0]);
          v1 += ptx::bf16_to_float(cr[1]);
        }
        if constexpr (kOutFp32) {
          *reinterpret_cast<float2*>(static_cast<float*>(d) + i64(row) * ldd + col) = make_float2(v0, v1);
        } else {
          *reinterpret_cast<u32*>(static_cast<u16*>(d) + i64(row) * ldd + col) = ptx::pack_bf16x2(v0, v1);
        }
      }
    }
    if (math_tid == 0 && t == 0) FP8GEMM_MARK(14);  // share summed and stored
  };

  auto tiles = walker();
  Tile tile;  // after the walk: its last tile (next() leaves it as it was)
  u32 tile_count = 0;  // (split-K: the barriers' phases)
  while (tiles.next(tile)) {
    const i32 m0 = tile.m0, n0 = tile.n0, m_end = tile.m_end;
    const i32 row0_first = m0 + row_in_tile(0), row1_first = row0_first + 8;  // m-wave w: 64 w further
    const i32 sb_block0 = n0 / 128;
    // First 8-column chunk of the tile in the second scale block (warp-uniform).
    const i32 split_j = ((sb_block0 + 1) * 128 - n0) / 8;

    if constexpr (!kShadowStore) {
#pragma unroll
      for (int w = 0; w < kMWaves; ++w) {
#pragma unroll
        for (int i = 0; i < BLOCK_N / 2; ++i) acc[w][i] = 0.f;
      }
    }

    // Wait for stage at's data (first wave), issue m-wave w's (n-wave v's) four wgmma into p
    // (not waited), and read its scales for this thread's rows and the tile's B block(s) into sc.
    // (K block kb's A: in stage at.s, or resident at slot kb.)
    auto issue = [&](float (&p)[kWaveN / 2], RingPos at, i32 kb, float (&sc)[4], int w = 0, int v = 0) {
      if (w == 0 && v == 0) ptx::mbar_wait(&full[at.s], at.phase);
      const u32 a_slot = kResidentA ? u32(kb) : at.s;
      const u32 desc_a = desc_a0 + a_slot * (kTileBytesA / 16) + w * (64 * kBlockK / 16);
      const u32 desc_b = desc_b0 + at.s * (kTileBytesB / 16) + v * (kWaveN * kBlockK / 16);
#pragma unroll
      for (int i = 0; i < kWaveN / 2; ++i) ptx::fence_operand(p[i]);
      ptx::wgmma_fence();
#ifndef FP8GEMM_EXPERIMENT_SKIP_MMA  // timing experiments only: see docs/perf-log.md
#pragma unroll
      for (int kk = 0; kk < kBlockK / 32; ++kk) {
        WgmmaFp8<kWaveN>::mma(p, ptx::smem_desc(desc_a + 2 * kk), ptx::smem_desc(desc_b + 2 * kk), kk > 0);
      }
#endif
      ptx::wgmma_commit();
      // The scales are only needed to promote: read them once all four wgmma are issued.
      // Left to itself, ptxas often moves these loads and the scale products between the
      // third and fourth wgmma, and the product waits for the load (long, with the tensor
      // cores reading shared memory) before the fourth can issue; a second fence here keeps
      // them behind it.
      ptx::wgmma_fence();
      const float* scales = smem_scales + at.s * kScaleStride;
      sc[0] = scales[row_in_tile(w)];
      sc[1] = scales[row_in_tile(w) + 8];
      sc[2] = scales[BLOCK_M];
      sc[3] = scales[BLOCK_M + 1];
    };
    // Once m-wave w's (n-wave v's) wgmma of stage at are complete: release the stage (after
    // its last wave), promote p into acc[w] (first: Flag<true> on the tile's first K block,
    // where acc was not zeroed).
    // (The array bound spelled from BLOCK_N: NVRTC 13.0 crashes on a generic lambda whose
    // parameter's bound names a local constant.)
    auto retire = [&](auto first, float (&p)[wave_n(BLOCK_N) / 2], RingPos at, const float (&sc)[4],
                      int w = 0, int v = 0) {
      constexpr bool kFirst = decltype(first)::value;
#pragma unroll
      for (int i = 0; i < kWaveN / 2; ++i) ptx::fence_operand(p[i]);
      // This warp is done reading the stage (its scales are in registers since issue);
      // the producers (ours and the peer's, which multicasts half of B into it) may refill it.
      if (lane == 0 && w == kMWaves - 1 && v == kNWaves - 1) {
        if constexpr (CLUSTER_M > 1) {
#pragma unroll
          for (u32 r = 0; r < CLUSTER_M; ++r) ptx::mbar_arrive_cluster(&empty[at.s], r);
        } else {
          ptx::mbar_arrive(&empty[at.s]);
        }
      }
#ifdef FP8GEMM_EXPERIMENT_SKIP_PROMOTE
      return;
#endif
      if constexpr (kNWaves > 1) {
        // n-wave v: columns [128 v, 128 v + 128) of the tile, B scale block v (n0 % 256 == 0).
        if (v == 0) promote<kWaveN, kWaveN / 8, kFirst, BLOCK_N, 0>(acc[w], p, sc[0], sc[1], sc[2], sc[2]);
        else promote<kWaveN, kWaveN / 8, kFirst, BLOCK_N, kWaveN / 2>(acc[w], p, sc[0], sc[1], sc[3], sc[3]);
      } else if constexpr (kTwoScaleBlocks) {
        promote_split<BLOCK_N, gcd(BLOCK_N, 128) / 8, kFirst>(split_j, acc[w], p, sc[0], sc[1], sc[2], sc[3]);
      } else {
        promote<BLOCK_N, BLOCK_N / 8, kFirst>(acc[w], p, sc[0], sc[1], sc[2], sc[2]);
      }
    };

    if constexpr (!kOverlap) {
      // Unrolled by two: measured 9% faster than the plain loop (docs/perf-log.md, v6).
      auto step = [&](i32 kb) {
#pragma unroll
        for (int w = 0; w < kMWaves; ++w) {
#pragma unroll
          for (int v = 0; v < kNWaves; ++v) {
            float sc[4];
            issue(part, pos, kb, sc, w, v);
            ptx::wgmma_wait<0>();
            retire(Flag<false>{}, part, pos, sc, w, v);
          }
        }
        pos = pos.next();
      };
      if constexpr (kShadowStore) {
        // K block 0: m-wave w's wgmma run while slice w of the tile before is staged for the
        // storer, and acc[w] restarts from this block. (First tile: acc holds zeros, staged
        // and never stored.) Staging waits for the storer to have read the tile before that.
        if (tiles.tile_before(3)) ptx::bar_sync(bar_free, kWarpgroup + 32);
#pragma unroll
        for (int w = 0; w < kMWaves; ++w) {
#pragma unroll
          for (int v = 0; v < kNWaves; ++v) {
            float sc[4];
            issue(part, pos, 0, sc, w, v);
            if (math_tid == 0 && w == 0 && v == 0 && !tiles.tile_before(2)) FP8GEMM_MARK(9);  // first stage landed
            if (v == 0) stage(w);  // all of acc[w], before n-wave 0 overwrites it
            ptx::wgmma_wait<0>();
            retire(Flag<true>{}, part, pos, sc, w, v);
            if (math_tid == 0 && w == 0 && v == 0 && !tiles.tile_before(2)) FP8GEMM_MARK(2);  // first MMA done
          }
        }
        pos = pos.next();
        if (tiles.tile_before(2)) {
          ptx::fence_proxy_async_smem();  // make the writes visible to the TMA unit
          ptx::bar_arrive(bar_staged, kWarpgroup + 32);
        }
        for (i32 kb = 1; kb < num_k_blocks; kb += 2) {
          step(kb);
          if (kb + 1 < num_k_blocks) step(kb + 1);
        }
      } else {
        for (i32 kb = kb_begin; kb < kb_end; kb += 2) {
          step(kb);
          if (kb + 1 < kb_end) step(kb + 1);
        }
      }
    } else {
      // Two partial accumulators, two K blocks per iteration: both are issued back to
      // back and the first is promoted while the second's wgmma run. Nothing stays in
      // flight across iterations: with a wgmma pending over the loop's back edge, ptxas
      // serialized every wgmma (its note C7514), measured in all earlier versions.
      for (i32 kb = kb_begin; kb < kb_end; kb += 2) {
        float sc0[4], sc1[4];
        const bool pair = kb + 1 < kb_end;
        const RingPos second = pos.next();
        issue(part, pos, kb, sc0);
        if (pair) {
          issue(part2, second, kb + 1, sc1);
          ptx::wgmma_wait<1>();
        } else {
          ptx::wgmma_wait<0>();
        }
        retire(Flag<false>{}, part, pos, sc0);
        if (pair) {
          ptx::wgmma_wait<0>();
          retire(Flag<false>{}, part2, second, sc1);
        }
        pos = pair ? second.next() : second;
      }
    }

    if constexpr (kSplitK > 1) reduce_tile(n0, m_end, row0_first, row1_first, tile_count++);
    else if constexpr (!kShadowStore) store_tile(m0, n0, m_end, row0_first, row1_first);
  }
  if (math_tid == 0) FP8GEMM_MARK(3);  // last K block done
  if constexpr (kShadowStore) {
    if (tiles.tile_before(1)) {  // the last tile, stored here (see the storer)
      if (tiles.tile_before(2)) ptx::bar_sync(bar_free, kWarpgroup + 32);
      store_tile(tile.m0, tile.n0, tile.m_end, tile.m0 + row_in_tile(0), tile.m0 + row_in_tile(0) + 8);
    }
  }
  // Shared memory must outlive the last stores' reads of it.
  if (kTmaStore && math_tid % kWarpgroup == 0) ptx::tma_store_wait<0>();
  if (math_tid == 0) FP8GEMM_MARK(4);  // stored
  // The peer may still arrive on our barriers: stay resident until it is done too. (Split-K:
  // every message to us has arrived once our last red_full phase completed.)
  if constexpr (CLUSTER_M > 1) ptx::cluster_sync();
}
