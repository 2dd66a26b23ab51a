"""Tile heuristics: every configuration they pick fits the hardware (CPU only)."""

from __future__ import annotations

import math

import pytest

from fp8gemm_core import heuristics as h

SHAPES = [(m, n, k) for m in (1, 64, 100, 128, 1000, 4096, 8192)
          for n, k in [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (256, 128)]]


@pytest.mark.parametrize("staged", [0, 2, 4])
def test_configs_fit_shared_memory(staged):
    for m, n, k in SHAPES:
        cfg = h.choose_gemm_config(m, n, k, 132, staged)
        assert cfg.stages >= h.MIN_STAGES, (m, n, k, cfg)
        assert cfg.smem_bytes <= h.SMEM_LIMIT, (m, n, k, cfg)
        # One more stage would not fit (or the cap is reached): the depth uses the room there is.
        deeper = h.GemmConfig(**{**cfg.__dict__, "stages": cfg.stages + 1})
        assert cfg.stages == h.MAX_STAGES or deeper.smem_bytes > h.SMEM_LIMIT, (m, n, k, cfg)
        # Staged as asked, unless that would leave too few stages (256x128 with fp32 out) or
        # the partial tiles of split-K take the room.
        assert cfg.staged_out_bytes == staged or cfg.split_k > 1 or (
            cfg.staged_out_bytes == 0 and h.stages_for(cfg.block_m, cfg.block_n, staged) < h.MIN_STAGES)
    # fp32 out on a 128x256 (or 256x128) tile: no room to stage it, four stages instead.
    cfg = h.choose_gemm_config(4096, 4096, 7168, 132, 4)
    assert (cfg.block_m * cfg.block_n, cfg.staged_out_bytes, cfg.stages) == (128 * 256, 0, 4)


def test_tiles_cover_the_grid():
    for m, n, k in SHAPES:
        cfg = h.choose_gemm_config(m, n, k, 132)
        assert cfg.num_sms % cfg.cluster_m == 0 and 1 <= cfg.num_sms <= 132
        assert cfg.block_n in h.candidate_block_ns()


def test_set_num_sms_validates():
    with pytest.raises(ValueError, match="num_sms: expected a positive int or None, got 0"):
        h.set_num_sms(0)


def test_grouped_configs_fit_and_pair_only_measured_tiles():
    for groups, m in [(1, 8192), (4, 8192), (8, 64), (256, 9)]:
        for profile in h.PROFILES:
            cfg = h.choose_gemm_config(m, 4096, 7168, 132, 2, num_groups=groups, profile=profile)
            assert cfg.cluster_m == 1 or (cfg.block_m, cfg.block_n) in h.GROUPED_PAIR_SPEED[profile]
            assert cfg.smem_bytes <= h.SMEM_LIMIT
    # 8 groups of 64 rows: 64-row tiles (128-row ones would be half empty in every group).
    assert h.choose_gemm_config(64, 4096, 7168, 132, 2, num_groups=8).block_m == 64


def test_large_shapes_choose_among_the_measured_tiles():
    for m, n, k in [(4096, 4096, 7168), (8192, 8192, 8192), (4096, 2112, 7168), (2048, 7168, 2048)]:
        cfg = h.choose_gemm_config(m, n, k, 132, 2)
        assert (cfg.block_m, cfg.block_n) in h.LARGE_TILE_SPEED, (m, n, k, cfg)
    # 4096x4096: 128x256 pairs fill 4 waves (0.97) where 128x192 leave 6 at 0.89 (256x128
    # measured +6.5% over 128x128, which fills 8 at 0.97); 4096x2112 keeps 192x128 (3 waves at
    # 0.89, not 0.67).
    cfg = h.choose_gemm_config(4096, 4096, 7168, 132, 2)
    assert (cfg.block_m, cfg.block_n, cfg.cluster_m) == (128, 256, 2)
    cfg = h.choose_gemm_config(4096, 2112, 7168, 132, 2)
    assert (cfg.block_m, cfg.block_n) == (192, 128)


def test_256_row_tiles_paired_in_dense_gemms():
    # Dense: only as CTA pairs (an odd number of M-blocks under 8 measured slower unpaired).
    cfg = h.choose_gemm_config(1000, 4096, 7168, 132, 2)
    assert (cfg.block_m, cfg.cluster_m) == (256, 2)
    for m in range(1, 9000, 37):
        cfg = h.choose_gemm_config(m, 4096, 7168, 132, 2)
        assert cfg.block_m != 256 or (cfg.cluster_m == 2 and cfg.block_n == 128), (m, cfg)
    assert h.choose_gemm_config(768, 4096, 7168, 132, 2).block_m != 256  # 3 M-blocks
    # Grouped GEMMs run 256x128 unpaired on an H200 (and only 128 wide); pairs only where a
    # GPU kind has a measured speed for them.
    for groups in (1, 4):
        for m in range(1, 9000, 37):
            for profile in h.PROFILES:
                cfg = h.choose_gemm_config(m, 4096, 7168, 132, 2, num_groups=groups, profile=profile)
                assert cfg.block_m != 256 or cfg.block_n == 128, (m, cfg)
                assert cfg.cluster_m == 1 or (cfg.block_m, cfg.block_n) in h.GROUPED_PAIR_SPEED[profile], (m, cfg)


def test_grouped_256x128_where_it_measured_faster():
    # Masked N = 4096 at K = 7168: 256x128 over 128x256 (m-waves first: +1.9% at 2 x 512, +1.8%
    # at 4 x 256), and 1 x 1024 x 7168 x 2048 over 128x160 (+5.2%), unpaired (few waves).
    for groups, m in [(2, 512), (4, 256)]:
        cfg = h.choose_gemm_config(m, 4096, 7168, 132, 2, num_groups=groups)
        assert (cfg.block_m, cfg.block_n, cfg.cluster_m) == (256, 128, 1), (groups, m, cfg)
    assert h.choose_gemm_config(1024, 7168, 2048, 132, 2, num_groups=1).block_m == 256


def test_tall_tiles_never_overlap_and_serve_large_groups():
    assert not h.uses_overlap(192, 128) and not h.uses_overlap(256, 128)
    # Groups of 8192 rows are large GEMMs of their own: unpaired (an odd SM count), 192x128
    # (42 waves) beats 128x128 (63) on an H200.
    cfg = h.choose_gemm_config(8192, 4096, 7168, 131, 2, num_groups=4)
    assert (cfg.block_m, cfg.block_n) == (192, 128)
    # Few rows per group stay on the small-problem rule (<= 128 rows).
    for groups, m in [(8, 512), (32, 64)]:
        assert h.choose_gemm_config(m, 4096, 7168, 132, 2, num_groups=groups).block_m <= 128




def test_small_shapes_prefer_square_then_wide_tiles_at_equal_area():
    # Same waves and area: fewer bytes of A and B per FLOP wins (measured +3-27%, perf log session 6).
    # (At K = 1536: from K = 2048 these shapes split K, test_split_k_for_small_m_and_long_k.)
    for (m, n, k), tile in [((128, 2112, 1536), (64, 32)), ((128, 4096, 1536), (64, 64)),
                            ((256, 4096, 1536), (64, 128))]:
        cfg = h.choose_gemm_config(m, n, k, 132, 2)
        assert (cfg.block_m, cfg.block_n) == tile, (m, n, k, cfg)


def test_short_k_takes_wide_pairs_and_tall_unpaired_tiles():
    # K = 512-2048: bound by L2 throughput, 128x256 pairs move the fewest operand bytes (+1.2%
    # to +7.1% over 256x128 pairs on both GPUs, perf log session 14). Unpaired tiles pay for a
    # wide epilogue there (H200, session 6): 192x128 over 128x192 at 4096x32768x512, +6.5%.
    for m, n, k in [(4096, 32768, 512), (8192, 7168, 2048), (4096, 24576, 1536)]:
        for profile in h.PROFILES:
            cfg = h.choose_gemm_config(m, n, k, 132, 2, profile=profile)
            assert (cfg.block_m, cfg.block_n, cfg.cluster_m) == (128, 256, 2), (m, n, k, profile)
    cfg = h.choose_gemm_config(4096, 32768, 512, 131, 2)  # an odd SM count: no pairs
    assert (cfg.block_m, cfg.block_n, cfg.cluster_m) == (192, 128, 1), cfg


def test_overlap_only_up_to_two_waves(monkeypatch):
    # 128x128 tiles: the overlapped loop wins at one or two waves, the plain one beyond
    # (H200: +2.5% at 4096x4096x7168 without overlap, -3.8% at 512x4096x7168).
    monkeypatch.setattr(h, "LARGE_TILE_SPEED", {(128, 128): 1.0})
    many = h.choose_gemm_config(4096, 4096, 7168, 132, 2)
    few = h.choose_gemm_config(1024, 4096, 7168, 132, 2, num_groups=1)
    assert (many.block_m, many.block_n, many.overlap, many.cluster_m) == (128, 128, False, 2)
    assert (few.block_m, few.block_n, few.overlap) == (128, 128, True)


def test_many_waves_of_mid_m_take_wide_pairs():
    # 2048-row and 1024-row shapes with 5-7 waves of tiles: 128x128 tiles without pairs ran
    # 10-15% behind 128x192 pairs on an H100, 1-6% on an H200 (perf log session 15).
    for profile in h.PROFILES:
        for m, n, k in ((2048, 7168, 16384), (2048, 7168, 2048), (1024, 14336, 4096)):
            cfg = h.choose_gemm_config(m, n, k, 132, 2, profile=profile)
            assert (cfg.block_m, cfg.block_n, cfg.cluster_m) == (128, 192, 2), (m, n, k, profile, cfg)


def test_scales_copied_m_major_only_where_it_pays():
    large = h.choose_gemm_config(4096, 4096, 7168, 132, 2)
    small = h.choose_gemm_config(64, 4096, 7168, 132, 2)
    kg = 56
    assert h.copies_scales_m_major((kg, 1), 4096, large)            # row-major
    assert h.copies_scales_m_major((60, 1), 4096, large)            # row-major, padded rows
    assert h.copies_scales_m_major((1, 4097), 4097, large)          # M-major, unaligned columns
    assert not h.copies_scales_m_major((1, 4096), 4096, large)      # M-major, bulk-ready
    assert not h.copies_scales_m_major((kg * 4096, 1, 4096), 4096, large)  # [G, M, kg] M-major
    assert h.copies_scales_m_major((4096 * kg, kg, 1), 4096, large)        # [G, M, kg] row-major
    assert not h.copies_scales_m_major((kg, 1), 999, large)         # too few rows to pay
    assert not h.copies_scales_m_major((kg, 1), 4096, small)        # per-row tiles anyway


@pytest.mark.parametrize("m, n, k", [(8192, 8192, 8192), (4096, 7168, 16384), (4096, 2112, 7168),
                                     (64, 32768, 512), (64, 2112, 7168), (1000, 4096, 7168), (7, 100, 272)])
def test_dense_grid_is_the_fewest_ctas_for_the_same_waves(m, n, k):
    cfg = h.choose_gemm_config(m, n, k, 132, 2)
    cm = cfg.cluster_m
    tiles = math.ceil(math.ceil(m / cfg.block_m) / cm) * cm * math.ceil(n / cfg.block_n) * cfg.split_k
    full = min(132, tiles) // cm * cm
    assert cfg.num_sms % cm == 0 and cfg.num_sms <= full
    assert math.ceil(tiles / cfg.num_sms) == math.ceil(tiles / full), "waves must not grow"
    assert math.ceil(tiles / (cfg.num_sms - cm)) > math.ceil(tiles / full) or cfg.num_sms == cm
    if (m, n, k) == (8192, 8192, 8192):  # 2048 tiles of 128x256: 16 waves on 128 CTAs, not 15.5 on 132
        assert (cfg.block_m * cfg.block_n, cfg.num_sms) == (128 * 256, 128)


def test_grouped_grid_keeps_every_sm():
    cfg = h.choose_gemm_config(2048, 4096, 7168, 132, 2, num_groups=4)
    assert cfg.num_sms == 132


def test_256_wide_tiles_only_at_long_k_without_pairs_of_rows():
    # 128x256 (two n-waves) unpaired: masked 1 x 1024 x 4096 x 7168 (K = 7168: +2-3%), not K = 512
    # (-12%), and not where 256x128 CTA pairs fit as well (1024x4096x7168: pairs 1.4% faster).
    masked = h.choose_gemm_config(1024, 4096, 7168, 132, 2, num_groups=1)
    assert (masked.block_m, masked.block_n) == (128, 256)
    short_k = h.choose_gemm_config(128, 32768, 512, 132, 2)
    assert short_k.block_n != 256
    dense = h.choose_gemm_config(1000, 4096, 7168, 132, 2)
    assert (dense.block_m, dense.block_n, dense.cluster_m) == (256, 128, 2)


def test_256_wide_grouped_tiles_where_they_save_a_wave():
    # Large groups: unpaired 128x256 where it halves the waves (1 x 1024 masked, +3.8% over
    # 128x128), not over many waves of contiguous groups (8 x 4096, +-30%: 192x128 2.5% faster;
    # with an even SM count 128x256 pairs run there, test_grouped_cta_pairs_over_many_waves).
    one = h.choose_gemm_config(1024, 4096, 7168, 132, 2, num_groups=1)
    assert (one.block_m, one.block_n) == (128, 256)
    many = h.choose_gemm_config(4096, 4096, 7168, 131, 2, num_groups=8)
    assert (many.block_m, many.block_n) == (192, 128)


def test_grouped_output_in_ring_where_one_tile_per_cta_is_expected():
    # Masked N = 4096 shapes of 128 expected tiles: the output staged over the drained ring,
    # four stages instead of three (bf16), staged at all with fp32 out on 256x128.
    for groups, m in [(1, 1024), (2, 512), (4, 256)]:
        for out_bytes in (2, 4):
            cfg = h.choose_grouped_config(m, groups, 4096, 7168, 132, out_bytes)
            assert cfg.out_in_ring and cfg.stages == 4 and cfg.staged_out_bytes == out_bytes, cfg
            assert cfg.num_sms == 132 and cfg.smem_bytes <= h.SMEM_LIMIT
            assert cfg.block_m * cfg.block_n * out_bytes <= cfg.stages * h.stage_bytes(cfg.block_m, cfg.block_n)
    # More tiles than SMs (contiguous prefill), unaligned output rows, or a fourth stage fitting
    # anyway: a buffer of its own, or none.
    assert not h.choose_grouped_config(8192, 4, 4096, 7168, 132, 2).out_in_ring
    assert not h.choose_grouped_config(512, 2, 4096, 7168, 132, 0).out_in_ring
    assert not h.choose_grouped_config(64, 8, 4096, 7168, 132, 2).out_in_ring


def test_contiguous_groups_are_counted_uneven():
    # Contiguous groups vary in size, each ending in a partial tile on average half full:
    # unpaired, 8 x 4096 x 7168 x 2048 takes 192x128 (+2.6% at +-30% sizes), where groups of
    # exactly 4096 rows (masked) fill 256-row tiles. One group's size is exact either way.
    assert h.choose_grouped_config(4096, 8, 7168, 2048, 131, 2).block_m == 256
    assert h.choose_grouped_config(4096, 8, 7168, 2048, 131, 2, uneven_groups=True).block_m == 192
    assert (h.choose_grouped_config(1024, 1, 4096, 7168, 132, 2, uneven_groups=True)
            == h.choose_grouped_config(1024, 1, 4096, 7168, 132, 2))


def test_gpu_profile_from_memory():
    # HBM3 parts plan as "h100", HBM3e ones (141 GB H200, 144 GB GH200) as "h200".
    for gb, profile in [(80, "h100"), (94, "h100"), (96, "h100"), (141, "h200"), (144, "h200")]:
        assert h.gpu_profile(gb * 10**9) == profile, gb
    assert set(h.UNPAIRED_TILE_SPEED) == set(h.PAIRED_TILE_SPEED) == set(h.PROFILES)


def test_large_grouped_tiles_by_profile():
    # Unpaired (an odd SM count), an H100 runs the grouped 192x128 tile (three consumer
    # warpgroups) ~10% behind 256x128 (session 12): large groups take 256-row tiles there,
    # 192-row ones on an H200.
    for groups, m, n, k, uneven in [(4, 8192, 4096, 7168, True), (8, 4096, 7168, 2048, True),
                                    (4, 8192, 4096, 7168, False)]:
        h100 = h.choose_grouped_config(m, groups, n, k, 131, 2, uneven, "h100")
        h200 = h.choose_grouped_config(m, groups, n, k, 131, 2, uneven, "h200")
        assert (h100.block_m, h100.block_n, h200.block_m, h200.block_n) == (256, 128, 192, 128), (groups, m)
    # Dense CTA pairs: 128x256 on both (1.00-1.02x of 256x128 at K >= 4096 on an H100, +1.3% on
    # an H200; more at K = 512-2048), unpaired 256-wide tiles only from N_WAVES_MIN_K, and pairs
    # not below the K measured.
    for (m, n, k) in [(8192, 8192, 8192), (4096, 7168, 2048), (4096, 32768, 512)]:
        for profile in h.PROFILES:
            cfg = h.choose_gemm_config(m, n, k, 132, 2, profile=profile)
            assert (cfg.block_m, cfg.block_n, cfg.cluster_m) == (128, 256, 2), (m, n, k, profile)
    for profile in h.PROFILES:
        assert h.choose_gemm_config(4096, 32768, 256, 132, 2, profile=profile).block_n != 256
        assert h.choose_gemm_config(128, 32768, 512, 132, 2, profile=profile).block_n != 256


def test_small_grouped_shapes_take_tall_tiles():
    # Masked 2 x 512 and 4 x 256 x 7168: 256x128 (two waves of two m-waves) ran 1-8% ahead of the
    # three waves of 128x160 the small-shape rule used to count faster, on an H100 and an H200
    # (perf log session 13).
    for groups, m in [(2, 512), (4, 256)]:
        for profile in h.PROFILES:
            cfg = h.choose_grouped_config(m, groups, 7168, 2048, 132, 2, profile=profile)
            assert (cfg.block_m, cfg.block_n) == (256, 128), (groups, m, profile)


def test_many_groups_choose_as_large_gemms():
    # 64 groups of ~512 rows: compute-bound like one large GEMM (H200, perf log session 13:
    # 128x256 +6% with equal groups and +14% at +-30% over the small-shape rule's 128x192).
    for uneven in (False, True):
        cfg = h.choose_grouped_config(512, 64, 4096, 7168, 132, 2, uneven, "h200")
        assert (cfg.block_m, cfg.block_n) == (128, 256), uneven
    # Groups of ~256 rows take tiles at most half as tall (64 x 256 x 4096 x 7168: 128x256, +13%
    # on an H100 and +15% on an H200 at +-30%).
    for profile in h.PROFILES:
        cfg = h.choose_grouped_config(256, 64, 4096, 7168, 132, 2, True, profile)
        assert (cfg.block_m, cfg.block_n) == (128, 256), profile
    # Few tiles stay with the small-shape rule (masked 2 x 512 x 4096 x 7168: two waves of
    # 128x128 tiles), and so do groups under 256 rows.
    assert h.choose_grouped_config(512, 2, 4096, 7168, 132, 2, False, "h200").block_m == 256
    assert h.choose_grouped_config(64, 256, 4096, 7168, 132, 2, True, "h200").block_m == 64


def test_grouped_cta_pairs_over_many_waves():
    # Perf log sessions 13-14: 128x256 pairs won over unpaired tiles (and 256x128 pairs) on the
    # contiguous shapes, on an H100 all of them, on an H200 all but 4 x 8192 x 4096 x 7168 (192x128
    # unpaired); the masked shapes of one or two waves stay unpaired.
    for profile in h.PROFILES:
        def cm(m, groups, n, k, uneven):
            cfg = h.choose_grouped_config(m, groups, n, k, 132, 2, uneven, profile)
            assert cfg.cluster_m == 1 or (cfg.block_m, cfg.block_n) == (128, 256), (m, groups, cfg)
            return cfg.cluster_m
        assert [cm(4096, 8, 4096, 7168, u) for u in (False, True)] == [2, 2]
        assert [cm(8192, 4, 7168, 2048, u) for u in (False, True)] == [2, 2]
        assert [cm(512, 64, 4096, 7168, u) for u in (False, True)] == [2, 2]
        assert [cm(8192, 4, 4096, 7168, u) for u in (False, True)] == ([2, 2] if profile == "h100" else [1, 1])
        assert cm(1024, 1, 4096, 7168, False) == cm(1024, 1, 7168, 2048, False) == 1
        assert h.choose_grouped_config(8192, 4, 4096, 7168, 131, 2, False, profile).cluster_m == 1  # odd SMs


def test_resident_a_at_short_k():
    # K <= 512 on many waves of dense CTA pairs with a staged bf16 output: A stays in shared
    # memory (timed +15-23% at K = 384-512, perf log session 14), walked in runs along all of N.
    for profile in h.PROFILES:
        cfg = h.choose_gemm_config(4096, 32768, 512, 132, 2, profile=profile)
        assert (cfg.block_m, cfg.block_n, cfg.cluster_m, cfg.resident_a) == (128, 256, 2, 4)
        assert cfg.group_n == 32768 // 256 and cfg.stages == 3 and cfg.smem_bytes <= h.SMEM_LIMIT
        assert h.choose_gemm_config(4096, 32768, 384, 132, 2, profile=profile).resident_a == 3
    # Not: longer K, fp32 or register-stored output, grouped GEMMs, few tiles per CTA.
    assert h.choose_gemm_config(4096, 32768, 640, 132, 2).resident_a == 0
    assert h.choose_gemm_config(4096, 32768, 512, 132, 4).resident_a == 0
    assert h.choose_gemm_config(4096, 32768, 512, 132, 0).resident_a == 0
    assert h.choose_gemm_config(8192, 4096, 512, 132, 2, num_groups=4).resident_a == 0
    assert h.choose_gemm_config(1024, 2048, 512, 132, 2).resident_a == 0
    # Counted exactly: one more B stage would not fit.
    cfg = h.choose_gemm_config(4096, 32768, 512, 132, 2)
    assert h.resident_a_smem_bytes(128, 256, 2, 4, cfg.stages + 1) > h.SMEM_LIMIT


def test_split_k_for_small_m_and_long_k():
    # Split-K over CTA pairs: the same tile where it fills at most half the SMs, else a CTA
    # pair's two tiles as one (each CTA then reads half of A); not at short K or larger M.
    for profile in h.PROFILES:
        for (m, n, k), want in {(64, 576, 7168): (64, 16, 72), (128, 576, 7168): (128, 16, 72),
                                (64, 2112, 7168): (64, 32, 132), (128, 2112, 7168): (128, 32, 132),
                                (256, 2112, 7168): (128, 64, 132)}.items():
            cfg = h.choose_gemm_config(m, n, k, 132, 2, profile=profile)
            assert (cfg.block_m, cfg.block_n, cfg.num_sms, cfg.split_k, cfg.cluster_m) == (*want, 2, 1), cfg
            assert cfg.staged_out_bytes == 0 and cfg.smem_bytes <= h.SMEM_LIMIT
        assert h.choose_gemm_config(64, 2112, 2048, 132, 2, profile=profile).split_k == 2
        for m, n, k in ((64, 7168, 16384), (64, 2112, 1536), (512, 2112, 7168), (4096, 2112, 7168)):
            assert h.choose_gemm_config(m, n, k, 132, 2, profile=profile).split_k == 1
        assert h.choose_gemm_config(64, 2112, 7168, 132, 2, num_groups=4, profile=profile).split_k == 1
