"""M-grouped GEMMs: validation on any machine; numerics against the numpy reference on the GPU."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import fp8gemm_core as fg
from fp8gemm_core import grouped, heuristics
from fp8gemm_core.gemm import _m_major_scales
from fp8gemm_core import reference as ref
from fp8gemm_core.arrays import DeviceArray, StridedView
from fp8gemm_core.heuristics import choose_gemm_config, get_num_sms

from gpu_support import requires_gpu

BF16 = np.dtype(ml_dtypes.bfloat16)
F32 = np.dtype(np.float32)


def _rng():
    seed = np.random.SeedSequence().entropy % 2**32
    return np.random.default_rng(seed), seed


def to_dev(x):
    return DeviceArray.from_numpy(np.ascontiguousarray(x), device=0, stream=0)


def quantized_a(rng, rows, k):
    return ref.per_token_cast_to_fp8(rng.standard_normal((rows, k), dtype=np.float32))


def quantized_b(rng, groups, n, k):
    b8, sfb = zip(*(ref.per_block_cast_to_fp8(rng.standard_normal((n, k), dtype=np.float32))
                    for _ in range(groups)))
    return np.stack(b8), np.stack(sfb)


def group_sizes(rng, groups, mean, *, empty=0, ones=0):
    """Sizes 0.7x-1.3x of the mean, then some groups emptied and some set to one row."""
    sizes = rng.integers(int(0.7 * mean), int(1.3 * mean) + 1, size=groups)
    picks = rng.permutation(groups)
    sizes[picks[:empty]] = 0
    sizes[picks[empty:empty + ones]] = 1
    return sizes


def rel_err(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-30))


def check_rows(got, a8, sfa, b8_g, sfb_g, out_dtype, seed):
    want = ref.fp8_gemm_nt(a8, sfa, b8_g, sfb_g, out_dtype=np.float32)
    got = np.asarray(got).astype(np.float32)
    assert not np.isnan(got).any(), f"rows of a group left unwritten (seed {seed})"
    bound = 2.0**-8 if out_dtype == BF16 else 5e-4
    err = rel_err(got, want)
    assert err < bound, f"relative error {err:.3g} >= {bound} (seed {seed})"


# --------------------------------------------------------------------------- validation (CPU)


def _host_operands(groups=3, m=40, n=256, k=256):
    rng = np.random.default_rng(0)
    a8, sfa = quantized_a(rng, m, k)
    b8, sfb = quantized_b(rng, groups, n, k)
    return a8, sfa, b8, sfb


def test_contiguous_needs_exactly_one_group_form():
    a8, sfa, b8, sfb = _host_operands()
    idx = np.zeros(40, np.int32)
    with pytest.raises(ValueError, match="m_indices, offsets: expected exactly one of them, got neither"):
        fg.m_grouped_fp8_gemm_nt_contiguous((a8, sfa), (b8, sfb))
    with pytest.raises(ValueError, match="got both"):
        fg.m_grouped_fp8_gemm_nt_contiguous((a8, sfa), (b8, sfb), None, idx, offsets=np.zeros(3, np.int32))


@pytest.mark.parametrize("bad, match", [
    ("k", r"b\[0\]: expected K = 256"),
    ("sfb_groups", r"b\[1\]"),
    ("indices_len", "m_indices"),
    ("indices_dtype", "m_indices"),
    ("offsets_len", "offsets"),
    ("b_2d", r"b\[0\]: expected a 3-D \[G, N, K\]"),
])
def test_contiguous_rejects(bad, match):
    a8, sfa, b8, sfb = _host_operands()
    kwargs = {}
    idx = np.zeros(40, np.int32)
    if bad == "k":
        b8 = np.ascontiguousarray(b8[:, :, :128])
    elif bad == "sfb_groups":
        sfb = sfb[:2]
    elif bad == "indices_len":
        idx = np.zeros(39, np.int32)
    elif bad == "indices_dtype":
        idx = np.zeros(40, np.int64)
    elif bad == "offsets_len":
        idx, kwargs = None, {"offsets": np.array([10, 20], np.int32)}
    elif bad == "b_2d":
        b8 = b8[0]
    with pytest.raises((ValueError, TypeError), match=match):
        fg.m_grouped_fp8_gemm_nt_contiguous((a8, sfa), (b8, sfb), None, idx, **kwargs)


def test_masked_rejects():
    rng = np.random.default_rng(1)
    G, max_m, n, k = 3, 16, 256, 256
    a8, sfa = quantized_a(rng, G * max_m, k)
    a8, sfa = a8.reshape(G, max_m, k), sfa.reshape(G, max_m, -1)
    b8, sfb = quantized_b(rng, G, n, k)
    mm = np.full(G, 5, np.int32)
    with pytest.raises(ValueError, match="expected_m: expected a positive int, got 0"):
        fg.m_grouped_fp8_gemm_nt_masked((a8, sfa), (b8, sfb), None, mm, 0)
    with pytest.raises(ValueError, match=r"a\[0\]: expected a 3-D"):
        fg.m_grouped_fp8_gemm_nt_masked((a8[0], sfa[0]), (b8, sfb), None, mm, 4)
    with pytest.raises(ValueError, match=r"b\[0\]: expected 3 groups"):
        fg.m_grouped_fp8_gemm_nt_masked((a8, sfa), (b8[:2], sfb[:2]), None, mm, 4)
    with pytest.raises(ValueError, match="masked_m"):
        fg.m_grouped_fp8_gemm_nt_masked((a8, sfa), (b8, sfb), None, mm[:2], 4)
    wide = np.zeros((G, max_m + 1, k), a8.dtype)
    with pytest.raises(ValueError, match=r"a\[0\]: expected groups evenly spaced"):
        fg.m_grouped_fp8_gemm_nt_masked((wide[:, :max_m], sfa), (b8, sfb), None, mm, 4)
    with pytest.raises(TypeError, match="device arrays only"):
        fg.m_grouped_fp8_gemm_nt_masked((a8, sfa), (b8, sfb), None, mm, 4)


def test_alignment_helper():
    assert fg.get_m_alignment_for_contiguous_layout() == 128


# --------------------------------------------------------------------------- numerics (GPU)


def padded_layout(sizes, align):
    """m_indices for groups padded to `align` rows (-1 in the padding) and each group's rows."""
    idx, rows, r = [], [], 0
    for g, m in enumerate(sizes):
        padded = -(-m // align) * align
        idx += [g] * m + [-1] * (padded - m)
        rows.append(np.arange(r, r + m))
        r += padded
    return np.array(idx, np.int32), rows


@requires_gpu
@pytest.mark.parametrize("groups, mean, n, k, out_dtype", [
    (4, 300, 4096, 1024, BF16), (8, 100, 2048, 512, F32), (64, 40, 512, 256, BF16)])
def test_contiguous_m_indices(groups, mean, n, k, out_dtype):
    rng, seed = _rng()
    sizes = group_sizes(rng, groups, mean, empty=1, ones=1)
    idx, rows = padded_layout(sizes, fg.get_m_alignment_for_contiguous_layout())
    a8, sfa = quantized_a(rng, idx.size, k)
    b8, sfb = quantized_b(rng, groups, n, k)
    out = to_dev(np.full((idx.size, n), np.nan, out_dtype))
    res = fg.m_grouped_fp8_gemm_nt_contiguous((to_dev(a8), to_dev(sfa)), (to_dev(b8), to_dev(sfb)),
                                              out, to_dev(idx))
    assert res is out
    got = out.to_numpy()
    for g, r in enumerate(rows):
        if r.size:
            check_rows(got[r], a8[r], sfa[r], b8[g], sfb[g], out_dtype, seed)
    assert np.isnan(got[idx < 0].astype(np.float32)).all(), "padding rows were written"


@requires_gpu
@pytest.mark.parametrize("groups, mean", [(1, 1000), (5, 77), (37, 20), (256, 9)])
def test_contiguous_offsets_unaligned(groups, mean):
    rng, seed = _rng()
    n, k = 768, 512
    sizes = group_sizes(rng, groups, mean, empty=min(2, groups - 1), ones=min(2, groups - 1))
    ends = np.cumsum(sizes).astype(np.int32)
    m = int(ends[-1]) + 3  # three trailing rows in no group: left untouched
    a8, sfa = quantized_a(rng, m, k)
    b8, sfb = quantized_b(rng, groups, n, k)
    out = to_dev(np.full((m, n), np.nan, BF16))
    fg.m_grouped_fp8_gemm_nt_contiguous((to_dev(a8), to_dev(sfa)), (to_dev(b8), to_dev(sfb)), out,
                                        offsets=to_dev(ends))
    got = out.to_numpy()
    starts = np.concatenate([[0], ends[:-1]])
    for g in range(groups):
        r = np.arange(starts[g], ends[g])
        if r.size:
            check_rows(got[r], a8[r], sfa[r], b8[g], sfb[g], BF16, seed)
    assert np.isnan(got[ends[-1]:].astype(np.float32)).all(), "rows past the last group were written"


@requires_gpu
@pytest.mark.parametrize("form", ["m_indices", "offsets"])
def test_contiguous_m_major_scales(form):
    # M-major sfa with large tiles: full tiles of groups starting at a multiple of 4 rows
    # take the bulk scale copy, the others the per-row path; both must match the reference.
    rng, seed = _rng()
    groups, n, k = 4, 2048, 768
    sizes = group_sizes(rng, groups, 900)
    if form == "m_indices":
        idx, rows = padded_layout(sizes, fg.get_m_alignment_for_contiguous_layout())
        m = idx.size
        group_arg = {"m_indices": to_dev(idx)}
    else:
        ends = np.cumsum(sizes).astype(np.int32)
        m = int(ends[-1])
        rows = [np.arange(e - z, e) for z, e in zip(sizes, ends)]
        group_arg = {"offsets": to_dev(ends)}
    cfg = choose_gemm_config(-(-m // groups), n, k, 132, 2, num_groups=groups)
    assert cfg.block_m >= 128 and cfg.block_n >= 128, cfg  # the tiles that copy scales in bulk
    a8, sfa = quantized_a(rng, m, k)
    b8, sfb = quantized_b(rng, groups, n, k)
    ld = -(-m // 4) * 4
    buf = np.zeros((sfa.shape[1], ld), np.float32)
    buf[:, :m] = sfa.T
    sfa_mmajor = StridedView(to_dev(buf), (m, sfa.shape[1]), (1, ld))
    out = to_dev(np.full((m, n), np.nan, BF16))
    fg.m_grouped_fp8_gemm_nt_contiguous((to_dev(a8), sfa_mmajor), (to_dev(b8), to_dev(sfb)), out,
                                        **group_arg)
    got = out.to_numpy()
    for g, r in enumerate(rows):
        if r.size:
            check_rows(got[r], a8[r], sfa[r], b8[g], sfb[g], BF16, seed)


@requires_gpu
@pytest.mark.parametrize("form", ["m_indices", "offsets"])
def test_contiguous_large_groups(form):
    # Groups of over 1024 rows take the large-GEMM tiles (192 rows: three consumer
    # warpgroups). Unpadded sizes end tiles inside a 64-row part (register stores).
    rng, seed = _rng()
    groups, n, k = 3, 1024, 512
    sizes = rng.integers(1650, 1950, size=groups)  # where 192x128 tiles fill the waves best
    if form == "m_indices":
        idx, rows = padded_layout(sizes, fg.get_m_alignment_for_contiguous_layout())
    else:
        ends = np.cumsum(sizes).astype(np.int32)
        rows = [np.arange(e - s, e) for s, e in zip(sizes, ends)]
        idx = np.zeros(int(ends[-1]), np.int32)
    m = idx.size
    cfg = choose_gemm_config(-(-m // groups), n, k, get_num_sms(), 2, num_groups=groups)
    assert cfg.block_m == 192, cfg
    a8, sfa = quantized_a(rng, m, k)
    b8, sfb = quantized_b(rng, groups, n, k)
    out = to_dev(np.full((m, n), np.nan, BF16))
    group_arg = {"m_indices": to_dev(idx)} if form == "m_indices" else {"offsets": to_dev(ends)}
    fg.m_grouped_fp8_gemm_nt_contiguous((to_dev(a8), to_dev(sfa)), (to_dev(b8), to_dev(sfb)), out,
                                        **group_arg)
    got = out.to_numpy()
    for g, r in enumerate(rows):
        check_rows(got[r], a8[r], sfa[r], b8[g], sfb[g], BF16, seed)
    if form == "m_indices":
        assert np.isnan(got[idx < 0].astype(np.float32)).all(), "padding rows were written"


@requires_gpu
def test_contiguous_allocated_output_is_zero_outside_groups():
    rng, seed = _rng()
    groups, n, k = 3, 256, 256
    idx, rows = padded_layout([5, 0, 130], 128)
    a8, sfa = quantized_a(rng, idx.size, k)
    b8, sfb = quantized_b(rng, groups, n, k)
    got = fg.m_grouped_fp8_gemm_nt_contiguous((to_dev(a8), to_dev(sfa)), (to_dev(b8), to_dev(sfb)),
                                              None, to_dev(idx), out_dtype="fp32").to_numpy()
    want = ref.m_grouped_fp8_gemm_nt_contiguous(a8, sfa, b8, sfb, idx, out_dtype=np.float32)
    assert rel_err(got, want) < 5e-4, f"seed {seed}"
    assert not got[idx < 0].any()


def masked_operands(rng, groups, max_m, n, k):
    a8, sfa = quantized_a(rng, groups * max_m, k)
    b8, sfb = quantized_b(rng, groups, n, k)
    return a8.reshape(groups, max_m, k), sfa.reshape(groups, max_m, -1), b8, sfb


def check_masked(got, a8, sfa, b8, sfb, masked, out_dtype, seed):
    for g, m in enumerate(masked):
        if m:
            check_rows(got[g, :m], a8[g, :m], sfa[g, :m], b8[g], sfb[g], out_dtype, seed)
        assert np.isnan(got[g, m:].astype(np.float32)).all(), f"group {g}: rows past masked_m written"


@requires_gpu
@pytest.mark.parametrize("groups, max_m, n, k, out_dtype", [
    (8, 256, 4096, 1024, BF16), (32, 64, 1024, 512, F32), (256, 16, 256, 256, BF16)])
def test_masked(groups, max_m, n, k, out_dtype):
    rng, seed = _rng()
    a8, sfa, b8, sfb = masked_operands(rng, groups, max_m, n, k)
    masked = rng.integers(0, max_m + 1, size=groups).astype(np.int32)
    masked[0], masked[-1] = 0, max_m
    out = to_dev(np.full((groups, max_m, n), np.nan, out_dtype))
    fg.m_grouped_fp8_gemm_nt_masked((to_dev(a8), to_dev(sfa)), (to_dev(b8), to_dev(sfb)), out,
                                    to_dev(masked), expected_m=max(1, max_m // 2))
    check_masked(out.to_numpy(), a8, sfa, b8, sfb, masked, out_dtype, seed)


# The large tiles without CTA pairs, and 128x256 (n-waves). Indexed before any monkeypatching:
# each tile gets its own shape (plans are cached per shape).
FORCED_TILES = list(dict.fromkeys([t for t in [*heuristics.LARGE_TILE_SPEED, (128, 256)]
                                   if heuristics.tile_fits(*t, 1, grouped=True)]))


@requires_gpu
@pytest.mark.parametrize("tile", FORCED_TILES)
@pytest.mark.parametrize("num_sms, out_dtype", [(None, F32), (8, BF16)])
def test_each_large_tile(tile, num_sms, out_dtype, monkeypatch):
    # Each tile the large-shape rule can pick without CTA pairs, forced on both layouts, groups ending inside
    # a tile (and inside a 64-row slice). On 8 SMs each CTA walks many tiles: all but its last are stored by
    # the storer warp, row by row where a slice ends inside a group. Distinct shapes per case: plans are cached.
    monkeypatch.setattr(heuristics, "LARGE_TILE_SPEED", {tile: 1.0})
    monkeypatch.setattr(heuristics, "N_WAVES_MIN_K", 0)
    # Row-major sfa with groups of 1000+ rows on these tiles: read through an M-major copy.
    copies = []
    monkeypatch.setattr(grouped, "_m_major_scales", lambda *a: copies.append(a) or _m_major_scales(*a))
    rng, seed = _rng()
    groups, max_m, k = 3, 1100, 640
    n = 1024 + 16 * FORCED_TILES.index(tile) + 128 * (num_sms is not None)
    a8, sfa, b8, sfb = masked_operands(rng, groups, max_m, n, k)
    masked = np.array([1100, 1037, 1025], np.int32)
    sizes = np.array([1100, 1037, 1025])
    ends = np.cumsum(sizes).astype(np.int32)
    flat_a8, flat_sfa = a8.reshape(-1, k)[:ends[-1]], sfa.reshape(groups * max_m, -1)[:ends[-1]]
    fg.set_num_sms(num_sms)
    try:
        masked_out = to_dev(np.full((groups, max_m, n), np.nan, out_dtype))
        fg.m_grouped_fp8_gemm_nt_masked((to_dev(a8), to_dev(sfa)), (to_dev(b8), to_dev(sfb)), masked_out,
                                        to_dev(masked), expected_m=1050)
        out = to_dev(np.full((ends[-1], n), np.nan, out_dtype))
        fg.m_grouped_fp8_gemm_nt_contiguous((to_dev(flat_a8), to_dev(flat_sfa)), (to_dev(b8), to_dev(sfb)),
                                            out, offsets=to_dev(ends))
    finally:
        fg.set_num_sms(None)
    check_masked(masked_out.to_numpy(), a8, sfa, b8, sfb, masked, out_dtype, seed)
    got = out.to_numpy()
    for g, (start, end) in enumerate(zip(ends - sizes, ends)):
        check_rows(got[start:end], flat_a8[start:end], flat_sfa[start:end], b8[g], sfb[g], out_dtype, seed)
    assert len(copies) == 2, "both layouts copy row-major sfa M-major on large tiles"


@requires_gpu
@pytest.mark.parametrize("tile", [(256, 128), (128, 256)])
@pytest.mark.parametrize("out_dtype", [BF16, F32])
def test_masked_output_in_ring(tile, out_dtype, monkeypatch):
    # Where each CTA is expected to take one tile, the output is staged over the drained ring
    # of stages. Then more rows than expected: CTAs take two tiles, and the producer must wait
    # for the first one's stores to have read the ring before loading the second.
    monkeypatch.setattr(heuristics, "LARGE_TILE_SPEED", {tile: 1.0})
    monkeypatch.setattr(heuristics, "LARGE_MN", 1)
    monkeypatch.setattr(heuristics, "N_WAVES_MIN_K", 0)
    groups, max_m, n, num_sms = 2, 1024, 1024, 32
    k = 640 + 128 * [(256, 128), (128, 256)].index(tile) + 256 * (out_dtype == F32)  # plans: per shape
    cfg = heuristics.choose_grouped_config(512, groups, n, k, num_sms, out_dtype.itemsize)
    assert (cfg.block_m, cfg.block_n, cfg.out_in_ring, cfg.stages) == (*tile, True, 4), cfg
    rng, seed = _rng()
    a8, sfa, b8, sfb = masked_operands(rng, groups, max_m, n, k)
    fg.set_num_sms(num_sms)
    try:
        for masked in (np.array([512, 300], np.int32), np.array([1024, 999], np.int32)):
            out = to_dev(np.full((groups, max_m, n), np.nan, out_dtype))
            fg.m_grouped_fp8_gemm_nt_masked((to_dev(a8), to_dev(sfa)), (to_dev(b8), to_dev(sfb)), out,
                                            to_dev(masked), expected_m=512)
            check_masked(out.to_numpy(), a8, sfa, b8, sfb, masked, out_dtype, seed)
    finally:
        fg.set_num_sms(None)


def check_contiguous_run(rng, sizes, b8, sfb, out_dtype, seed):
    """Run the contiguous layout on fresh A rows of these group sizes (cumulative ends) into a
    poisoned output and check every group's rows against the reference."""
    ends = np.cumsum(sizes).astype(np.int32)
    flat_a8, flat_sfa = quantized_a(rng, int(ends[-1]), b8.shape[-1])
    flat = to_dev(np.full((ends[-1], b8.shape[1]), np.nan, out_dtype))
    fg.m_grouped_fp8_gemm_nt_contiguous((to_dev(flat_a8), to_dev(flat_sfa)), (to_dev(b8), to_dev(sfb)),
                                        flat, offsets=to_dev(ends))
    got = flat.to_numpy()
    for g, (start, end) in enumerate(zip(ends - sizes, ends)):
        check_rows(got[start:end], flat_a8[start:end], flat_sfa[start:end], b8[g], sfb[g], out_dtype, seed)


@requires_gpu
@pytest.mark.parametrize("tile", [(256, 128), (128, 256)])
@pytest.mark.parametrize("out_dtype", [BF16, F32])
def test_grouped_cta_pairs(tile, out_dtype, monkeypatch):
    # Grouped CTA pairs share a group's B; a group with an odd number of M-blocks pairs the tiles
    # of its last one along N (own B each; with an odd N-block count, the last with a padding
    # tile that must store nothing: fp32 out, 21 or 11 N-blocks). The hint (1024 rows) picks
    # pairs; the real groups end inside a 64-row slice, with odd and even M-block counts
    # (256-row tiles: 3, 2 and 1 masked, 5, 3 and 6 contiguous; 128-row: 6, 4, 1 and 9, 6, 12).
    monkeypatch.setattr(heuristics, "LARGE_TILE_SPEED", {tile: 1.0})
    monkeypatch.setattr(heuristics, "UNPAIRED_TILE_SPEED", {p: {} for p in heuristics.PROFILES})
    monkeypatch.setattr(heuristics, "PAIRED_TILE_SPEED", {p: {} for p in heuristics.PROFILES})
    monkeypatch.setattr(heuristics, "GROUPED_PAIR_SPEED", {p: {tile: 2.0} for p in heuristics.PROFILES})
    monkeypatch.setattr(heuristics, "GROUPED_PAIR_MIN_WAVES", 1)
    monkeypatch.setattr(heuristics, "N_WAVES_MIN_K", 0)
    rng, seed = _rng()
    groups, max_m, n = 3, 1024, 2560 + 16 * (out_dtype == F32)
    k = 512 + 128 * (tile == (128, 256))  # plans: per shape
    cfg = choose_gemm_config(max_m, n, k, 132, 2, num_groups=groups)
    assert (cfg.block_m, cfg.block_n, cfg.cluster_m) == (*tile, 2)
    a8, sfa, b8, sfb = masked_operands(rng, groups, max_m, n, k)
    masked = np.array([700, 512, 37], np.int32)
    out = to_dev(np.full((groups, max_m, n), np.nan, out_dtype))
    fg.m_grouped_fp8_gemm_nt_masked((to_dev(a8), to_dev(sfa)), (to_dev(b8), to_dev(sfb)), out,
                                    to_dev(masked), expected_m=max_m)
    check_masked(out.to_numpy(), a8, sfa, b8, sfb, masked, out_dtype, seed)
    # Contiguous: groups of 1100, 700 and 1500 rows (5, 3 and 6 M-blocks; the mean of 1100 rows
    # picks pairs of 256-row tiles too).
    sizes = np.array([1100, 700, 1500])
    cfg = choose_gemm_config(1100, n, k, 132, 2, num_groups=groups, uneven_groups=True)
    assert (cfg.block_m, cfg.block_n, cfg.cluster_m) == (*tile, 2)
    check_contiguous_run(rng, sizes, b8, sfb, out_dtype, seed)


@requires_gpu
def test_cta_pairs_across_group_windows(monkeypatch):
    # The pairs' walk over 40 groups (the walker holds 32 at a time) with empty, one-row and odd
    # M-block groups, masked and contiguous; rows past a group's end keep their poison.
    monkeypatch.setattr(heuristics, "GROUPED_PAIR_SPEED", {p: {(256, 128): 9.0} for p in heuristics.PROFILES})
    monkeypatch.setattr(heuristics, "GROUPED_PAIR_MIN_WAVES", 1)
    rng, seed = _rng()
    groups, max_m, n, k = 40, 1024, 1152, 256
    sizes = rng.integers(max_m // 2, max_m + 1, groups)
    sizes[[0, 5, 33]] = 0
    sizes[[1, 32]] = 1
    sizes[[2, 39]] = [300, 700]  # 2 and 3 M-blocks
    cfg = choose_gemm_config(max_m, n, k, get_num_sms(), 2, num_groups=groups)
    assert (cfg.block_m, cfg.cluster_m) == (256, 2)
    a8, sfa, b8, sfb = masked_operands(rng, groups, max_m, n, k)
    out = to_dev(np.full((groups, max_m, n), np.nan, BF16))
    fg.m_grouped_fp8_gemm_nt_masked((to_dev(a8), to_dev(sfa)), (to_dev(b8), to_dev(sfb)), out,
                                    to_dev(sizes.astype(np.int32)), expected_m=max_m)
    check_masked(out.to_numpy(), a8, sfa, b8, sfb, sizes, BF16, seed)
    cfg = heuristics.choose_grouped_config(-(-int(sizes.sum()) // groups), groups, n, k, get_num_sms(), 2, True)
    assert (cfg.block_m, cfg.cluster_m) == (256, 2)
    check_contiguous_run(rng, sizes, b8, sfb, BF16, seed)


@requires_gpu
def test_masked_m_major_scales():
    # M-major sfa per group ([G, kg, max_m] viewed as [G, max_m, kg], as the quantizer writes
    # it): full 128-row tiles take the bulk scale copy, a group's last partial tile the per-row path.
    rng, seed = _rng()
    groups, max_m, n, k = 3, 1024, 2048, 768
    a8, sfa, b8, sfb = masked_operands(rng, groups, max_m, n, k)
    masked = np.array([1024, 1000, 77], np.int32)
    assert choose_gemm_config(1024, n, k, 132, 2, num_groups=groups).block_m >= 128
    buf = np.ascontiguousarray(sfa.transpose(0, 2, 1))
    kg = buf.shape[1]
    sfa_mmajor = StridedView(to_dev(buf), (groups, max_m, kg), (kg * max_m, 1, max_m))
    out = to_dev(np.full((groups, max_m, n), np.nan, BF16))
    fg.m_grouped_fp8_gemm_nt_masked((to_dev(a8), sfa_mmajor), (to_dev(b8), to_dev(sfb)), out,
                                    to_dev(masked), expected_m=1024)
    check_masked(out.to_numpy(), a8, sfa, b8, sfb, masked, BF16, seed)


@requires_gpu
def test_masked_graph_replay_with_changing_counts():
    torch = pytest.importorskip("torch")
    rng, seed = _rng()
    groups, max_m, n, k = 6, 128, 1024, 512
    a8, sfa, b8, sfb = masked_operands(rng, groups, max_m, n, k)
    dev = torch.device("cuda", 0)
    ta = torch.from_numpy(a8.view(np.uint8)).to(dev).view(torch.float8_e4m3fn)
    tb = torch.from_numpy(b8.view(np.uint8)).to(dev).view(torch.float8_e4m3fn)
    tsfa, tsfb = torch.from_numpy(sfa).to(dev), torch.from_numpy(sfb).to(dev)
    counts = torch.zeros(groups, dtype=torch.int32, device=dev)
    out = torch.empty((groups, max_m, n), dtype=torch.bfloat16, device=dev)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):  # compile and plan outside the capture
        fg.m_grouped_fp8_gemm_nt_masked((ta, tsfa), (tb, tsfb), out, counts, 64, stream=stream)
    stream.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        fg.m_grouped_fp8_gemm_nt_masked((ta, tsfa), (tb, tsfb), out, counts, 64, stream=stream)
    for _ in range(3):
        masked = rng.integers(0, max_m + 1, size=groups).astype(np.int32)
        counts.copy_(torch.from_numpy(masked))
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        got = out.float().cpu().numpy()
        check_masked(got, a8, sfa, b8, sfb, masked, BF16, seed)


@requires_gpu
def test_grouped_on_second_gpu():
    """Both layouts with every operand on GPU 1 while the caller's current GPU is 0."""
    from gpu_support import gpu_count
    if gpu_count() < 2:
        pytest.skip("needs 2 GPUs")
    from cuda.bindings import driver as cu
    from fp8gemm_core import driver
    rng, seed = _rng()
    on1 = lambda x: DeviceArray.from_numpy(np.ascontiguousarray(x), device=1, stream=0)  # noqa: E731
    groups, n, k = 3, 512, 768
    b8, sfb = quantized_b(rng, groups, n, k)
    sizes = group_sizes(rng, groups, 200)
    ends = np.cumsum(sizes).astype(np.int32)
    a8, sfa = quantized_a(rng, int(ends[-1]), k)
    masked = np.array([0, 100, 64], np.int32)
    ma8, msfa, _, _ = masked_operands(rng, groups, 128, n, k)
    with driver.get_device(0).activate():
        out = on1(np.full((int(ends[-1]), n), np.nan, BF16))
        fg.m_grouped_fp8_gemm_nt_contiguous((on1(a8), on1(sfa)), (on1(b8), on1(sfb)), out,
                                            offsets=on1(ends))
        mout = on1(np.full((groups, 128, n), np.nan, BF16))
        fg.m_grouped_fp8_gemm_nt_masked((on1(ma8), on1(msfa)), (on1(b8), on1(sfb)), mout,
                                        on1(masked), expected_m=64)
        assert int(driver.call(cu.cuCtxGetCurrent)) == int(driver.get_device(0).context)
        with pytest.raises(ValueError, match="masked_m"):
            fg.m_grouped_fp8_gemm_nt_masked((on1(ma8), on1(msfa)), (on1(b8), on1(sfb)), mout,
                                            to_dev(masked), expected_m=64)
    got = out.to_numpy()
    starts = np.concatenate([[0], ends[:-1]])
    for g in range(groups):
        r = np.arange(starts[g], ends[g])
        check_rows(got[r], a8[r], sfa[r], b8[g], sfb[g], BF16, seed)
    check_masked(mout.to_numpy(), ma8, msfa, b8, sfb, masked, BF16, seed)
