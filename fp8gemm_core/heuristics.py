"""Tile-shape heuristics: pick BLOCK_M, BLOCK_N, pipeline stages and rasterization.

The kernel is persistent (one CTA per SM walks many tiles), so the cost model is
"waves": ceil(tiles / SMs) rounds of work, the last one possibly part-empty.
Among shapes with the fewest waves we prefer the fullest last wave, then the
larger tile (more reuse of each byte loaded). BLOCK_N runs in steps of 16,
non-powers of two included, which is what lets e.g. N=7168 fill 132 SMs.

Large problems (M, or the rows of each group of a grouped GEMM, and N at least
LARGE_MN) are compute-bound: there the choice is among a few big tiles whose speed
per unit of area was measured, and the cost is waves x tile area / that speed (a
narrower tile may win by filling the last wave better, as 128x128 does at 4096x4096).
Some tiles rank differently on an H100 and an H200 (HBM3 vs HBM3e: DRAM traffic costs an
H100 more clock at the power limit), so the speeds that differ come per GPU kind
(``gpu_profile``, one of ``PROFILES``).
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass

__all__ = ["GemmConfig", "choose_gemm_config", "candidate_block_ns", "set_num_sms", "get_num_sms",
           "effective_num_sms", "choose_grouped_config", "output_in_ring", "gpu_profile", "PROFILES"]

BLOCK_K = 128
SMEM_LIMIT = 232448          # bytes of shared memory a Hopper block may opt in to (227 KiB)
SMEM_RESERVED = 1024 + 1024  # alignment slack and the mbarriers
MAX_STAGES = 24           # small tiles: deep pipelines keep enough bytes in flight for HBM
MIN_STAGES = 3            # fewer than this and a tile's output is not staged in shared memory
RING_OUT_BELOW_STAGES = 4  # staging the output in the drained ring pays where fewer stages fit beside it
MAX_BLOCK_N = 192            # above this the two fp32 accumulators no longer fit in registers
MAX_OVERLAP_N = 128          # above this a third accumulator (for overlap) no longer fits
GROUP_N = 16                 # N-blocks per rasterization band
LARGE_MN = 1024              # M (rows per group) and N from which tiles come from LARGE_TILE_SPEED
# Output tile (BLOCK_M, BLOCK_N) -> throughput per unit of computed tile area (padding
# included), relative; H100, mean over six large shapes (docs/perf-log.md, session 4). 192-row tiles
# run three consumer warpgroups; 256-row ones two, of two m-waves each (H200, ten shapes,
# session 7: 1.00-1.05 of 192x128 and of 128x192).
# 128x256 (two n-waves, session 8; grouped GEMMs in practice: dense ties go to 256x128 pairs):
# against 192x128 on 8 x 4096 x 4096 x 7168 contiguous 1.00 (equal groups) and 0.976 (+-30%),
# so 0.99; it wins where it saves a wave (masked 1 x 1024 x 4096 x 7168: +3.8% over 128x128).
LARGE_TILE_SPEED = {(192, 128): 1.00, (128, 192): 0.98, (128, 128): 0.94, (128, 160): 0.93, (256, 128): 1.02,
                    (128, 256): 0.99}
# Tiles without CTA pairs (grouped GEMMs, unless GROUPED_PAIR_SPEED), by GPU (gpu_profile):
# an H200, 256x128 0.967x of 192x128 on contiguous 4 x 8192 x 4096 x 7168 and +5.2% over
# 128x160 at masked 1 x 1024 x 7168 x 2048, where it saves a wave (perf log session 9): 0.98.
# An H100, where three consumer warpgroups without pairs run ~10% behind two: 256x128 1.08-
# 1.13x of 192x128 on the contiguous shapes, waves counted (perf log session 12): 1.10.
# 128x256 ties 256x128 there with equal groups (session 12) and ran 1.11x of it on 64 x 512 x
# 4096 x 7168 at +-30% (half as many rows left in partial tiles; session 13): 1.10 too.
UNPAIRED_TILE_SPEED = {"h200": {(256, 128): 0.98}, "h100": {(256, 128): 1.10, (128, 256): 1.10}}
# Dense CTA pairs: 128x256 over 256x128 pairs at K >= 4096 1.00-1.02x on an H100 (perf log
# session 12), +1.3% on an H200 (session 14; ties in session 12): 1.04 on both. (At short K
# it gains more, see EPILOGUE_K.) 128x128 pairs over many waves ran at 0.856-0.859 of 128x256
# pairs' speed per tile area on both GPUs (2048x7168x16384, session 15): 0.89.
PAIRED_TILE_SPEED = {"h200": {(128, 256): 1.04, (128, 128): 0.89}, "h100": {(128, 256): 1.04, (128, 128): 0.89}}
# Hopper GPUs with at least this much memory (HBM3e: H200, GH200 144 GB) plan as "h200",
# the others (HBM3: H100 SXM/PCIe/NVL, H800, GH200 96 GB) as "h100".
H200_MIN_MEMORY = 120 << 30
PROFILES = ("h100", "h200")
# Grouped GEMMs as CTA pairs (two M-blocks of one group sharing its B tile; a group's odd last
# M-block pairs its tiles along N), by GPU: an H100, 256x128 pairs +1.4-5.4% over unpaired on
# the contiguous shapes, equal and +-30% groups (perf log session 13): 1.13 against unpaired
# 1.10. An H200, against its unpaired 192x128: -2.8% to +3.7% (session 13): not used there.
# 128x256 pairs (session 14; fewer operand bytes through L2, 128-row partial tiles): on an
# H100 +1.1% to +8.4% over 256x128 pairs on the same shapes: 1.16. On an H200 +0.8% to +8% over
# its unpaired choices on 64 x 512, 8 x 4096 and 4 x 8192 x 7168 x 2048, -0.6% / -2.4% (equal /
# +-30% groups) on 4 x 8192 x 4096 x 7168: 1.00 chooses each of those the faster way.
GROUPED_PAIR_SPEED = {"h200": {(128, 256): 1.00}, "h100": {(256, 128): 1.13, (128, 256): 1.16}}
# ... and only from this many waves of tiles: the pairs won at 31-54 waves and lost 4% at 1.7
# (masked 1 x 1024 x 7168 x 2048) and 6.7% at one (H100, perf log session 13).
GROUPED_PAIR_MIN_WAVES = 4
# A tile's epilogue (every consumer warpgroup writes its 64 x BLOCK_N rows at once) takes
# about as long as its MMA over this much more K at 128 rows: fit to 4096x32768x512 on an
# H200, where it is 15-20% of a tile (docs/perf-log.md, session 6); noise at K >= 2048.
# Tiles without CTA pairs only: short K runs bound by L2 throughput (ncu on an H100: 82% at
# 4096x32768x512, session 14), where the wider pair's fewer operand bytes win: 128x256 pairs
# over 256x128 pairs +2.3% to +7.1% (H100) and +1.2% to +6.5% (H200) at K = 512-2048.
EPILOGUE_K = 110
SFA_COPY_MIN_ROWS = 1000  # rows from which non-M-major sfa is copied M-major (copies_scales_m_major)
# 128x256 tiles (two n-waves) only from this K: +2-3% over 128x128 at K = 7168 (masked N = 4096),
# -12% at 128x32768x512, where per-tile costs dominate (H200, perf log session 8).
N_WAVES_MIN_K = 4096
# ... but as CTA pairs from this K (see EPILOGUE_K; not measured below).
PAIRED_N_WAVES_MIN_K = 512

# Resident A (dense, CTA pairs, bf16 output staged): up to this many K blocks of A stay in
# shared memory while a CTA walks a run of tiles along N, from RESIDENT_A_MIN_WAVES tiles per
# CTA. Short K is bound by L2 throughput, and A's re-reads by every N-block were most of it
# (ncu, H100: 512 of 695 MB at 4096x32768x512). Loading A once per M-block, timed: +15-16% at
# K = 512 and +23% at 384 on an H100 (perf log session 14). Four fit beside three B stages
# and the staged output of a 128x256 tile.
RESIDENT_A_MAX_K_BLOCKS = 4
RESIDENT_A_MIN_WAVES = 4
# ... with a grid whose runs stay in step: each run a whole number of rows of N-blocks, or a
# row split evenly, so that all runs reach an N-block together and share its B in L2
# (8192x32768x512 on 66 clusters, runs out of step: -1% against A streamed, on 64: +18%;
# 3000x32768x512 on 60 clusters, runs of 25.6 N-blocks: -5%). Only where that keeps this
# share of the clusters.
RESIDENT_A_MIN_GRID = 0.9

# Split-K over CTA pairs (with_split_k) for dense GEMMs of at most this many rows, from this
# many K blocks, on tiles at most this wide: on an H100 +7% to +41% at N = 576-2112 (K = 2048-
# 7168) and +4% at 64x4096x7168, where A re-read by many narrow tiles or idle SMs limit; 0% at
# 128x4096x7168; with 128-wide tiles -2.7% to +2.5% (64x7168x4096 / 16384; perf log session 15).
SPLIT_K_MAX_M = 256
SPLIT_K_MIN_K_BLOCKS = 16
SPLIT_K_MAX_BLOCK_N = 64

# Small-shape rule: a 256-row tile's time, per m-wave, in 128-row tile times. 256x128 ran over
# 128x112-192 on masked and dense shapes with 256-512 rows (perf log session 13) at 0.63-0.74
# of 128x160-192 tile times per m-wave on an H100 and on an H200 alike.
TALL_TILE_WAVE_TIME = 0.7

# Grouped GEMMs with groups of 256 to LARGE_MN rows choose as large ones do from this many waves
# of 128x128 tiles, with tiles at most half a group tall: at 64 x 512 x 4096 x 7168 +6.5% / +14%
# (equal / +-30% groups) on an H200 and +9.3% / +27% on an H100 over the small-shape rule's
# 128x192; with 256-row tiles, groups of ~256 rows lost 3-7% (perf log session 13).
GROUPED_LARGE_MIN_WAVES = 4

_num_sms_override: int | None = None
_lock = threading.Lock()


def gpu_profile(memory_bytes: int) -> str:
    """The tile-speed profile ("h100" or "h200") of a GPU with this much device memory."""
    return "h200" if memory_bytes >= H200_MIN_MEMORY else "h100"


def set_num_sms(num_sms: int | None) -> None:
    """Limit the SMs the persistent kernels use (``None``: all of them), as DeepGEMM's set_num_sms."""
    global _num_sms_override
    if num_sms is not None and (not isinstance(num_sms, int) or num_sms < 1):
        raise ValueError(f"num_sms: expected a positive int or None, got {num_sms!r}")
    with _lock:
        _num_sms_override = num_sms


def effective_num_sms(device_sms: int) -> int:
    """SMs the kernels will use on a device with ``device_sms`` multiprocessors."""
    n = _num_sms_override
    return device_sms if n is None else min(n, device_sms)


def get_num_sms() -> int:
    """SMs the kernels use on GPU 0: the ``set_num_sms`` limit, or all of them."""
    from .driver import get_device
    return effective_num_sms(get_device(0).num_sms)


@dataclass(frozen=True)
class GemmConfig:
    block_m: int
    block_n: int
    stages: int
    group_n: int
    num_sms: int       # CTAs launched (persistent grid), a multiple of cluster_m
    cluster_m: int = 1  # 2: CTA pairs on vertically adjacent tiles share B through TMA multicast
    overlap: bool = False  # promote one K block while the next one's wgmma run (BLOCK_N <= MAX_OVERLAP_N)
    staged_out_bytes: int = 0  # bytes per output element staged in shared memory for a TMA store (0: none)
    out_in_ring: bool = False  # the output is staged over the drained ring, not in a buffer of its own
    resident_a: int = 0  # > 0: A's K blocks kept in shared memory across a run of tiles (K <= 128 x this)
    split_k: int = 1  # > 1: a cluster of this many CTAs splits each tile's K blocks and adds the partial tiles

    @property
    def threads(self) -> int:
        return 128 * (1 + math_warpgroups(self.block_m))

    @property
    def smem_bytes(self) -> int:
        own_buffer = 0 if self.out_in_ring else self.block_m * self.block_n * self.staged_out_bytes
        if self.resident_a:
            return resident_a_smem_bytes(self.block_m, self.block_n, self.staged_out_bytes,
                                         self.resident_a, self.stages)
        if self.split_k > 1:
            own_buffer = self.block_m * self.block_n * 4  # the fp32 partial tile
        return self.stages * stage_bytes(self.block_m, self.block_n) + own_buffer + SMEM_RESERVED


def math_warpgroups(block_m: int) -> int:
    """Consumer warpgroups of a tile (cuda/fp8_gemm.cu): one per 64 rows, but two for
    256 rows, each running its 128 rows as two 64-row m-waves."""
    return 2 if block_m == 256 else block_m // 64


def _spans_at_most_two_scale_blocks(block_n: int) -> bool:
    # Tiles start at multiples of block_n; the worst start offset inside a 128-wide
    # scale block is 128 - gcd(block_n, 128). The kernel handles two scale blocks per tile.
    return block_n <= 128 or 128 - math.gcd(block_n, 128) + block_n <= 256


def candidate_block_ms(m: int) -> list[int]:
    return [64] if m <= 64 else [64, 128, 256]


def tile_fits(block_m: int, block_n: int, cluster_m: int, grouped: bool = False) -> bool:
    """Whether a tile may run with ``cluster_m`` (the kernel accepts more than is shipped)."""
    # 256-row tiles: 128 wide only (the two m-waves' accumulators fill the registers at
    # that width); dense ones only as CTA pairs (as ever measured there). Grouped GEMMs run
    # them unpaired: 1.5-4% behind 128x128 in session 7, but 1.4-2.1% ahead of 128x256 on
    # the masked N = 4096 shapes after v18 (H200, perf log session 9). 256-wide tiles: 128
    # rows (two 128-wide n-waves per consumer warpgroup).
    if block_n == 256:
        return block_m == 128
    return block_m != 256 or (block_n == 128 and (cluster_m == 2 or grouped))


def wgmma_n(block_n: int) -> int:
    """The kernel's wgmma width for a tile ``block_n`` wide (256-wide tiles: two n-waves of 128)."""
    return 128 if block_n == 256 else block_n


def candidate_block_ns() -> list[int]:
    # Up to MAX_BLOCK_N, and 256 (two 128-wide n-waves; 128-row tiles only, tile_fits).
    return [n for n in range(16, MAX_BLOCK_N + 1, 16) if _spans_at_most_two_scale_blocks(n)] + [256]


def _cluster_m(m_blocks: int, num_sms: int) -> int:
    # Pairs only pay when both tiles of a pair are real most of the time.
    return 2 if num_sms % 2 == 0 and (m_blocks % 2 == 0 or m_blocks >= 8) else 1


def choose_gemm_config(m: int, n: int, k: int, num_sms: int, staged_out_bytes: int = 0,
                       num_groups: int | None = None, uneven_groups: bool = False,
                       profile: str = "h200") -> GemmConfig:
    """Pick the tile configuration for an ``[m, k] x [n, k]^T`` FP8 GEMM on ``num_sms`` SMs.

    ``staged_out_bytes``: the output element size when the epilogue goes through shared
    memory and a TMA store (it takes room from the pipeline stages), else 0.
    ``num_groups``: for a grouped GEMM, its number of groups of about ``m`` rows each (each
    group is tiled on its own; CTA pairs stay inside a group, see GROUPED_PAIR_SPEED); None: dense.
    ``uneven_groups``: the groups' sizes vary around ``m`` (contiguous layout, two or more
    groups), so each large group is counted with half a tile more than ``m`` fills, the
    partial tile its end leaves on average (masked: ``m`` is every group's row count).
    ``profile``: the GPU kind whose tile speeds apply (``gpu_profile``).
    """
    block_ms = candidate_block_ms(m)
    # Grouped GEMMs of many groups of 256 rows or more are as compute-bound as one large GEMM.
    many_waves = num_groups is not None and m >= 256 and num_groups * math.ceil(m / 128) * math.ceil(n / 128) >= (
        GROUPED_LARGE_MIN_WAVES * num_sms)
    large = n >= LARGE_MN and (m >= LARGE_MN or many_waves)

    def cluster(bm: int) -> int:
        # Grouped GEMMs: pairs are separate candidates (GROUPED_PAIR_SPEED).
        return _cluster_m(math.ceil(m / bm), num_sms) if num_groups is None else 1

    def count_tiles(bm: int, bn: int, cm: int) -> float:
        if uneven_groups and large and (num_groups or 1) > 1:
            # Measured (H200, perf log session 11): 8 x 4096 x 7168 x 2048 with sizes spread
            # +-30%, 192x128 +2.6% over 256x128, which exactly 4096-row groups favour (+1.9%).
            return (num_groups or 1) * (m / bm + 0.5) * math.ceil(n / bn)
        if num_groups is not None:  # (grouped pairs: an odd last M-block pairs its tiles along N)
            return num_groups * math.ceil(m / bm) * math.ceil(n / bn)
        return math.ceil(math.ceil(m / bm) / cm) * cm * math.ceil(n / bn)

    tiles_to_try = (list(LARGE_TILE_SPEED) if large
                    else [(bm, bn) for bm in block_ms for bn in candidate_block_ns()])
    candidates = [(bm, bn, cluster(bm)) for bm, bn in tiles_to_try]
    if large and num_groups is not None:
        # Grouped CTA pairs, where measured faster on this GPU kind, and only over many waves
        # (GROUPED_PAIR_MIN_WAVES).
        candidates += [(bm, bn, 2) for bm, bn in GROUPED_PAIR_SPEED[profile]
                       if num_sms % 2 == 0 and count_tiles(bm, bn, 2) >= GROUPED_PAIR_MIN_WAVES * num_sms]
    best, best_key = None, None
    for bm, bn, cm in candidates:
        n_waves_min_k = N_WAVES_MIN_K if cm == 1 else min(N_WAVES_MIN_K, PAIRED_N_WAVES_MIN_K)
        if not tile_fits(bm, bn, cm, num_groups is not None) or (bn == 256 and k < n_waves_min_k):
            continue
        if many_waves and m < LARGE_MN and bm > m // 2:
            continue  # groups of 256-511 rows: 256-row tiles left ~half of their rows in partial tiles
        tiles = count_tiles(bm, bn, cm)
        waves = math.ceil(tiles / num_sms)
        last_wave_fill = tiles / (waves * num_sms)
        # 2 for 256x128 (two m-waves) and 128x256 (two n-waves): twice a 128x128 tile's time
        m_waves = bm // 64 // math_warpgroups(bm) * (bn // wgmma_n(bn))
        if large:
            # Time ~ waves x per-tile time: MMA over K at the tile's measured speed, plus, for
            # unpaired tiles, the epilogue, whose time grows with the tile's width only
            # (256x128's two m-waves store in turn, yet it measured +0.7-1% over 192x128 at
            # K = 512 and 1536).
            if num_groups is not None and cm == 2:
                speed = GROUPED_PAIR_SPEED[profile][bm, bn]
            else:
                table = UNPAIRED_TILE_SPEED if cm == 1 else PAIRED_TILE_SPEED
                speed = table[profile].get((bm, bn), LARGE_TILE_SPEED[bm, bn])
            key = (waves * bn * (bm * k / speed + 128 * EPILOGUE_K * (cm == 1)),)
        else:
            # Fewest waves (in 128-row tile times; 256x128 and 128x256 count twice), then
            # fullest last wave, then the largest tile area (measured for 256x128 over 128x128
            # at 1024x4096x7168: +7.5%; 128x256 over 128x128 on the masked N = 4096 shapes:
            # +2-3%); among equal areas the squarest tile (fewest bytes of A and B per FLOP:
            # these small shapes are bound by the L2->SM traffic), m-waves before n-waves
            # (256x128 pairs 1.4% over 128x256 at 1024x4096x7168), then the wider one
            # (measured, perf log session 6: 64x32 over 128x16 +15%, 64x64 over 128x32
            # +11-27%, 64x128 over 128x64 +6%).
            wave_time = m_waves * (TALL_TILE_WAVE_TIME if bm == 256 else 1)
            key = (waves * wave_time, -round(last_wave_fill, 3), -bm * bn, bm + bn, bn // wgmma_n(bn), -bn)
        if best_key is None or key < best_key:
            best, best_key = (bm, bn, cm), key
    if best is None:
        raise ValueError(f"no tile fits a {m}x{n}x{k} GEMM among {tiles_to_try} (256-row tiles need CTA "
                         f"pairs; 256-wide ones K >= {N_WAVES_MIN_K})")
    bm, bn, cm = best
    staged_out_bytes = out_staging(bm, bn, staged_out_bytes)
    n_blocks = math.ceil(n / bn)
    # Overlap pays while the grid runs at most two waves of tiles; over more, the plain loop
    # is faster (H200, perf log session 6: 128x128 at 4096x4096x7168 +2.3% without it,
    # 512x4096x7168 -3.8%).
    overlap = uses_overlap(bm, bn) and count_tiles(bm, bn, cm) <= 2 * num_sms
    tiles = math.ceil(count_tiles(bm, bn, cm))
    grid = min(num_sms, tiles) // cm * cm
    if num_groups is None:
        # The fewest CTAs that take the same number of waves: as fast, and the idle SMs leave
        # power to the busy ones (large shapes run at the power cap). Grouped GEMMs keep all
        # SMs: their tile counts are estimates (masked) and vary per call.
        waves = math.ceil(tiles / grid)
        grid = min(grid, math.ceil(math.ceil(tiles / waves) / cm) * cm)
    cfg = GemmConfig(block_m=bm, block_n=bn, stages=stages_for(bm, bn, staged_out_bytes),
                     group_n=min(GROUP_N, n_blocks), num_sms=grid,
                     cluster_m=cm, overlap=overlap, staged_out_bytes=staged_out_bytes)
    k_blocks = math.ceil(k / BLOCK_K)
    if (num_groups is None and large and cm == 2 and staged_out_bytes == 2 and not overlap
            and k_blocks <= RESIDENT_A_MAX_K_BLOCKS and tiles >= RESIDENT_A_MIN_WAVES * grid):
        clusters = _in_step_clusters(math.ceil(math.ceil(m / bm) / cm), n_blocks, grid // cm)
        resident = with_resident_a(cfg, k_blocks, n_blocks)
        if resident is not None and clusters >= RESIDENT_A_MIN_GRID * (grid // cm):
            cfg = dataclasses.replace(resident, num_sms=clusters * cm)
    if num_groups is None and not large and m <= SPLIT_K_MAX_M and k_blocks >= SPLIT_K_MIN_K_BLOCKS:
        cfg = with_split_k(cfg, m, n, num_sms) or cfg
    return cfg


def with_split_k(cfg: GemmConfig, m: int, n: int, num_sms: int) -> GemmConfig | None:
    """``cfg`` as split-K over clusters of two CTAs (each half of every tile's K blocks), or
    None where that does not fit: the same tile where its tiles fill at most half the SMs
    (twice the CTAs), else twice the tile (a CTA pair's two tiles as one 128-row tile, or
    one twice as wide) on about the same CTAs, each reading half as many bytes of A."""
    bm, bn = cfg.block_m, cfg.block_n
    tiles = math.ceil(m / bm) * math.ceil(n / bn)
    if cfg.cluster_m == 1 and 2 * tiles > num_sms:
        bn *= 2
    elif cfg.cluster_m == 2:
        bm *= 2
    tiles = math.ceil(m / bm) * math.ceil(n / bn)
    if bm > 128 or bn > SPLIT_K_MAX_BLOCK_N or 2 * tiles > num_sms:
        return None
    return GemmConfig(bm, bn, stages_for(bm, bn, 4), group_n=min(GROUP_N, math.ceil(n / bn)),
                      num_sms=2 * tiles, overlap=uses_overlap(bm, bn), split_k=2)


def _in_step_clusters(m_pairs: int, n_blocks: int, max_clusters: int) -> int:
    """The most clusters, up to ``max_clusters``, whose runs of the resident-A walk (the
    cluster tiles in rows of ``n_blocks``, ``m_pairs`` rows, split into equal runs) all reach
    an N-block at the same step: each run whole rows, or a row split evenly."""
    return max(c for c in range(1, max_clusters + 1)
               if m_pairs % c == 0 or (c % m_pairs == 0 and n_blocks % (c // m_pairs) == 0))


def resident_a_smem_bytes(block_m: int, block_n: int, staged_out_bytes: int, k_blocks: int,
                          stages: int) -> int:
    """Shared memory of a resident-A kernel, counted exactly (it is tight: a 128x256 tile's
    three B stages fit by 700 bytes): alignment slack to 1024 bytes, A's K blocks, the B ring
    and its scales, the staged output, and the full / empty mbarriers."""
    b_stage = stage_bytes(block_m, block_n) - block_m * BLOCK_K
    return (1024 + k_blocks * block_m * BLOCK_K + stages * b_stage
            + block_m * block_n * staged_out_bytes + 16 * stages)


def with_resident_a(cfg: GemmConfig, k_blocks: int, n_blocks: int) -> GemmConfig | None:
    """``cfg`` with ``k_blocks`` K blocks of A resident and its walk in runs along all
    ``n_blocks`` N-blocks, or None where fewer than MIN_STAGES B stages would fit beside them."""
    fits = [st for st in range(MIN_STAGES, MAX_STAGES + 1) if resident_a_smem_bytes(
        cfg.block_m, cfg.block_n, cfg.staged_out_bytes, k_blocks, st) <= SMEM_LIMIT]
    if not fits:
        return None
    stages = fits[-1]
    # One band of all N-blocks: the scheduler's order runs along N, and a CTA's run of tiles
    # (TileWalker's chunked walk) stays on one M-block for up to n_blocks tiles.
    return dataclasses.replace(cfg, stages=stages, resident_a=k_blocks, group_n=n_blocks)


def choose_grouped_config(m: int, num_groups: int, n: int, k: int, num_sms: int,
                          staged_out_bytes: int = 0, uneven_groups: bool = False,
                          profile: str = "h200") -> GemmConfig:
    """The configuration of an M-grouped GEMM of ``num_groups`` groups of about ``m`` rows
    (``choose_gemm_config`` with ``num_groups``; ``uneven_groups`` for the contiguous layout).
    The grid is every SM, as the tile count is only known on the device; where each CTA is
    expected to take one tile, the output is staged over the drained ring of stages where that
    buys a deeper pipeline (output_in_ring).
    """
    m, num_groups = max(m, 1), max(num_groups, 1)
    cfg = choose_gemm_config(m, n, k, num_sms, staged_out_bytes, num_groups=num_groups,
                             uneven_groups=uneven_groups, profile=profile)
    cfg = dataclasses.replace(cfg, num_sms=num_sms)
    expected_tiles = num_groups * math.ceil(m / cfg.block_m) * math.ceil(n / cfg.block_n)
    ring = output_in_ring(cfg, staged_out_bytes) if expected_tiles <= num_sms else None
    return ring or cfg


def copies_scales_m_major(sfa_strides: tuple, rows: int, cfg: GemmConfig) -> bool:
    """Whether a GEMM on ``cfg`` first copies sfa (element strides ``sfa_strides``, the last
    two for rows and K blocks) into the M-major layout; ``rows``: M, or a typical group's rows.

    Tiles of 128+ x 128+ copy their A scales in bulk when sfa is M-major with 16-byte aligned
    columns; from other layouts they read one L2 sector per row per K block: 11-13% slower at
    M >= 1000 (perf log, session 7). There the copy (one small kernel, a few microseconds)
    pays: measured within 0.6-2.4% of M-major sfa at M >= 4096.
    """
    bulk_ready = sfa_strides[-2] == 1 and sfa_strides[-1] % 4 == 0
    return not bulk_ready and rows >= SFA_COPY_MIN_ROWS and cfg.block_m >= 128 and cfg.block_n >= 128


def output_in_ring(cfg: GemmConfig, out_bytes: int) -> GemmConfig | None:
    """``cfg`` with its output tile (``out_bytes`` per element; 0: not stageable, as for
    unaligned rows) staged over the drained ring of stages instead of a buffer of its own,
    where that buys a deeper pipeline (fewer than RING_OUT_BELOW_STAGES beside the buffer) or
    staging at all (256x128 with fp32 out); else None.

    The kernel then starts a CTA's next tile only once the last one's stores have read the
    ring, so this is for grids where each CTA is expected to take one tile (the caller's
    check). No CTA pairs: a peer would multicast into the ring.
    Measured (H200, perf log session 11), bf16 out, masked N = 4096: 3 -> 4 stages +1.4% to
    +3.7%. (fp32 out on 256x128, register stores -> staged: tested, not benched; staging
    measured ~5 us faster than register stores on these tiles in session 9.)
    """
    stages = stages_for(cfg.block_m, cfg.block_n)
    fits = cfg.block_m * cfg.block_n * out_bytes <= stages * (cfg.block_m + cfg.block_n) * BLOCK_K
    gains = stages > cfg.stages and cfg.stages < RING_OUT_BELOW_STAGES or not cfg.staged_out_bytes
    if not out_bytes or cfg.cluster_m != 1 or not fits or not gains:
        return None
    return GemmConfig(cfg.block_m, cfg.block_n, stages, cfg.group_n, cfg.num_sms, cfg.cluster_m,
                      cfg.overlap, staged_out_bytes=out_bytes, out_in_ring=True)


def uses_overlap(block_m: int, block_n: int) -> bool:
    """Whether a tile may promote one K block while the next one's wgmma run.

    Measured on an H100 after v9 (docs/perf-log.md): +1-2% with 128x128 tiles, within
    noise (+-2%) with 16/32-wide tiles, so it is used from 64-wide tiles up to the widest
    whose third accumulator fits in registers (never with 192-row tiles: their three
    consumer warpgroups have 160 registers each). ``choose_gemm_config`` uses it only up
    to two waves of tiles (H200, session 6).
    """
    return block_m <= 128 and 64 <= block_n <= MAX_OVERLAP_N


def uses_ffma_reuse_chain(block_m: int, block_n: int, cluster_m: int, grouped: bool) -> bool:
    """Whether the JIT applies ``sass.ffma_reuse_chain`` to this configuration.

    Measured per configuration, pass on vs off in one run (H100, docs/perf-log.md,
    session 5): dense 128x192 with CTA pairs +4.3% (8192^3); elsewhere -14% (grouped
    128x192) to +2.6%, mostly within +-1.5%. Only the clear win is kept.
    """
    return (block_m, block_n, cluster_m, grouped) == (128, 192, 2, False)


def out_staging(block_m: int, block_n: int, staged_out_bytes: int) -> int:
    """``staged_out_bytes``, or 0 (register stores) where staging the output tile in shared
    memory would leave fewer than MIN_STAGES pipeline stages (256x128 with fp32 out)."""
    return staged_out_bytes if stages_for(block_m, block_n, staged_out_bytes) >= MIN_STAGES else 0


def stages_for(block_m: int, block_n: int, staged_out_bytes: int = 0) -> int:
    """Pipeline depth: as many stages as fit in shared memory beside the output tile
    (``staged_out_bytes`` per element, 0 when not staged), at most MAX_STAGES."""
    free = SMEM_LIMIT - SMEM_RESERVED - block_m * block_n * staged_out_bytes
    return min(MAX_STAGES, free // stage_bytes(block_m, block_n))


def scale_slot_bytes(block_m: int) -> int:
    """The scales of one K block of a tile: BLOCK_M A scales and two B scales (+2 pad)."""
    return (block_m + 4) * 4


def stage_bytes(block_m: int, block_n: int) -> int:
    """Shared memory of one pipeline stage: the A and B tiles and their scales."""
    return (block_m + block_n) * BLOCK_K + scale_slot_bytes(block_m)
