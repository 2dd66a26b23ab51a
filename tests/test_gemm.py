"""fp8_gemm_nt: validation on any machine; numerics against the numpy reference on the GPU."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import fp8gemm_core as fg
from fp8gemm_core import gemm, heuristics
from fp8gemm_core import reference as ref
from fp8gemm_core.arrays import DeviceArray, StridedView

from gpu_support import requires_gpu

BF16 = np.dtype(ml_dtypes.bfloat16)
ERRORS: list[float] = []  # every checked relative error, summarised at the end of the session
BRIEF_NK = [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048)]


def _rng():
    seed = np.random.SeedSequence().entropy % 2**32
    return np.random.default_rng(seed), seed


def make_operands(rng, m, n, k, *, outliers=False, zero_blocks=False):
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((n, k), dtype=np.float32)
    if outliers:
        a.flat[rng.integers(0, a.size, size=max(1, a.size // 1000))] *= 1000.0
        b.flat[rng.integers(0, b.size, size=max(1, b.size // 1000))] *= 1000.0
    if zero_blocks:
        a[: max(1, m // 3), :128] = 0.0
        b[:128, -128:] = 0.0
    a8, sfa = ref.per_token_cast_to_fp8(a)
    b8, sfb = ref.per_block_cast_to_fp8(b)
    return a8, sfa, b8, sfb


def to_dev(x):
    return DeviceArray.from_numpy(np.ascontiguousarray(x), device=0, stream=0)


def to_torch(torch, x, dev):
    """A numpy operand as a torch tensor on ``dev`` (E4M3 as torch.float8_e4m3fn)."""
    x = np.ascontiguousarray(x)
    if x.dtype == np.dtype(ml_dtypes.float8_e4m3fn):
        return torch.from_numpy(x.view(np.uint8)).to(dev).view(torch.float8_e4m3fn)
    return torch.from_numpy(x).to(dev)


def gemm_on_grid(num_sms, a8, sfa, b8, sfb, out, c=None):
    """fp8_gemm_nt of numpy operands into ``out`` with the kernels' grid limited to ``num_sms`` SMs."""
    try:
        fg.set_num_sms(num_sms)
        fg.fp8_gemm_nt((to_dev(a8), to_dev(sfa)), (to_dev(b8), to_dev(sfb)), out,
                       c=None if c is None else to_dev(c))
    finally:
        fg.set_num_sms(None)


def poisoned(shape, dtype):
    return to_dev(np.full(shape, np.nan, dtype=dtype))


def rel_err(x, y):
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    return float(np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-30))


def check_against_reference(a8, sfa, b8, sfb, out, *, c=None, out_dtype=BF16, rng=None, seed=None,
                            max_ref_rows=512):
    got = out.to_numpy() if isinstance(out, DeviceArray) else np.asarray(out)
    assert not np.isnan(got.astype(np.float32)).any(), f"unwritten (poisoned) outputs, seed {seed}"
    m = a8.shape[0]
    # The reference is row-independent: on large M check a random subset of rows
    # (plus the first and last) to keep the CPU time reasonable.
    rows = np.arange(m) if m <= max_ref_rows else np.unique(np.concatenate(
        [[0, m - 1], rng.choice(m, max_ref_rows, replace=False)]))
    # Compare with the fp32 reference: bf16 output rounding costs up to 2^-9 relative per
    # element and the tensor cores' reduced-precision FP8 accumulation inside each 128-wide
    # K group ~1e-4 of the terms' magnitude, which can be more of a small (cancelling) result.
    # Large outputs land at 1.7e-3 (measured); a 16-element output once measured 2.54e-3.
    # Bounds: one bf16 ulp (2^-8) for bf16 out, 5e-4 for fp32 out.
    want = ref.fp8_gemm_nt(a8[rows], sfa[rows], b8, sfb, c=None if c is None else c[rows],
                           out_dtype=np.float32)
    err = rel_err(got[rows].astype(np.float32), want)
    bound = 2.0**-8 if out_dtype == BF16 else 5e-4
    assert err < bound, f"relative error {err:.3g} >= {bound} (seed {seed})"
    ERRORS.append(err)
    return err


# --------------------------------------------------------------------------- validation (CPU)


def test_rejects_mismatched_k():
    a = np.zeros((4, 256), ml_dtypes.float8_e4m3fn)
    b = np.zeros((16, 128), ml_dtypes.float8_e4m3fn)
    with pytest.raises(ValueError, match="b\\[0\\]"):
        fg.fp8_gemm_nt((a, np.ones((4, 2), np.float32)), (b, np.ones((1, 1), np.float32)))


def test_rejects_wrong_data_dtype():
    a = np.zeros((4, 128), np.float32)
    b = np.zeros((16, 128), ml_dtypes.float8_e4m3fn)
    with pytest.raises(TypeError, match="a\\[0\\]"):
        fg.fp8_gemm_nt((a, np.ones((4, 1), np.float32)), (b, np.ones((1, 1), np.float32)))


def test_rejects_wrong_scale_shape():
    a = np.zeros((4, 256), ml_dtypes.float8_e4m3fn)
    b = np.zeros((16, 256), ml_dtypes.float8_e4m3fn)
    with pytest.raises(ValueError, match="a\\[1\\].*\\(4, 2\\)"):
        fg.fp8_gemm_nt((a, np.ones((4, 1), np.float32)), (b, np.ones((1, 2), np.float32)))


def test_rejects_bad_out_dtype():
    a = np.zeros((4, 128), ml_dtypes.float8_e4m3fn)
    b = np.zeros((16, 128), ml_dtypes.float8_e4m3fn)
    with pytest.raises(ValueError, match="out_dtype"):
        fg.fp8_gemm_nt((a, np.ones((4, 1), np.float32)), (b, np.ones((1, 1), np.float32)),
                       out_dtype="fp16")


def test_rejects_non_pair():
    with pytest.raises(TypeError, match="a: expected a pair"):
        fg.fp8_gemm_nt(np.zeros((4, 128)), (None, None))


# --------------------------------------------------------------------------- numerics (GPU)


@requires_gpu
@pytest.mark.parametrize("m", [1, 7, 64, 100, 128, 1000, 4096])
@pytest.mark.parametrize("n,k", BRIEF_NK)
def test_brief_shapes(m, n, k):
    rng, seed = _rng()
    a8, sfa, b8, sfb = make_operands(rng, m, n, k)
    out = poisoned((m, n), BF16)
    res = fg.fp8_gemm_nt((to_dev(a8), to_dev(sfa)), (to_dev(b8), to_dev(sfb)), out)
    assert res is out
    check_against_reference(a8, sfa, b8, sfb, out, rng=rng, seed=seed)


@requires_gpu
@pytest.mark.parametrize("m,n,k", [(1, 16, 128), (7, 100, 272), (100, 250, 4096), (257, 14336, 4096),
                                   (1000, 4096, 14336), (4097, 6144, 4096), (65, 2, 16),
                                   (129, 1000, 1000 - 1000 % 16)])
def test_odd_shapes(m, n, k):
    rng, seed = _rng()
    a8, sfa, b8, sfb = make_operands(rng, m, n, k)
    out = poisoned((m, n), BF16)
    fg.fp8_gemm_nt((to_dev(a8), to_dev(sfa)), (to_dev(b8), to_dev(sfb)), out)
    check_against_reference(a8, sfa, b8, sfb, out, rng=rng, seed=seed)


# Forced in the tests below beside the large tiles: 128x256 (two n-waves; not chosen yet).
FORCED_TILES = list(dict.fromkeys([*heuristics.LARGE_TILE_SPEED, (128, 256)]))


@requires_gpu
@pytest.mark.parametrize("tile", FORCED_TILES)
@pytest.mark.parametrize("out_dtype", [np.dtype(np.float32), BF16])
def test_each_large_tile(tile, out_dtype, monkeypatch):
    # Each tile the large-shape rule can pick, forced on a shape with partial last tiles in
    # M and N, with C (of out's dtype) accumulated: fp32 out goes through register stores on
    # 256x128 tiles (no room to stage it), bf16 through the TMA-store epilogue. Distinct M per
    # tile and dtype: plans are cached per shape.
    monkeypatch.setattr(heuristics, "LARGE_TILE_SPEED", {tile: 1.0})
    monkeypatch.setattr(heuristics, "N_WAVES_MIN_K", 0)
    rng, seed = _rng()
    # (M-blocks even for 256-row tiles, which run only as CTA pairs.)
    m = 1031 + 64 * FORCED_TILES.index(tile) + 8 * (out_dtype == BF16)
    n, k = 2112 - 16, 1536 + 128
    a8, sfa, b8, sfb = make_operands(rng, m, n, k)
    c = rng.standard_normal((m, n)).astype(np.float32).astype(out_dtype)
    out = poisoned((m, n), out_dtype)
    fg.fp8_gemm_nt((to_dev(a8), to_dev(sfa)), (to_dev(b8), to_dev(sfb)), out, c=to_dev(c))
    check_against_reference(a8, sfa, b8, sfb, out, c=c.astype(np.float32), out_dtype=out_dtype, rng=rng,
                            seed=seed)


@requires_gpu
@pytest.mark.parametrize("tile", FORCED_TILES)
@pytest.mark.parametrize("out_dtype", [BF16, np.dtype(np.float32)])
@pytest.mark.parametrize("num_sms,k", [(2, 128), (6, 384), (60, 640), (None, 1664)])
def test_tiles_store_in_the_next_tiles_shadow(tile, out_dtype, num_sms, k, monkeypatch):
    # No C, output staged for TMA: each tile's result is staged while the next tile's
    # first K block runs and stored by the storer warp, the last tile's after the walk.
    # Walks of many tiles per CTA (2 and 6 SMs), of two (60 SMs: with the overlapped loop
    # on 128-wide tiles) and of one; one K block (the first block only) and more; partial
    # last tiles in M and N. (256x128 with fp32 out has no room to stage: register stores.)
    # A streams with B here (resident A: test_resident_a).
    monkeypatch.setattr(heuristics, "LARGE_TILE_SPEED", {tile: 1.0})
    monkeypatch.setattr(heuristics, "N_WAVES_MIN_K", 0)
    monkeypatch.setattr(heuristics, "RESIDENT_A_MAX_K_BLOCKS", 0)
    rng, seed = _rng()
    # Distinct shapes per tile and dtype (plans are cached); M-blocks even for 256-row tiles.
    m = 1100 + 64 * FORCED_TILES.index(tile) + 16 * (out_dtype == BF16) + 1
    n = 1040
    a8, sfa, b8, sfb = make_operands(rng, m, n, k)
    out = poisoned((m, n), out_dtype)
    gemm_on_grid(num_sms, a8, sfa, b8, sfb, out)
    check_against_reference(a8, sfa, b8, sfb, out, out_dtype=out_dtype, rng=rng, seed=seed)


RESIDENT_TILES = [(128, 256), (256, 128), (192, 128)]


@requires_gpu
@pytest.mark.parametrize("tile", RESIDENT_TILES)
@pytest.mark.parametrize("num_sms,k,with_c", [(None, 512, False), (6, 384, True), (2, 208, False),
                                              (10, 128, False), (None, 464, True)])
def test_resident_a(tile, num_sms, k, with_c, monkeypatch):
    # K <= 512: A's K blocks stay in shared memory while a CTA runs along N. Runs that end
    # inside an M-block row and continue in the next (A reloaded once the consumers are done
    # with the old one: 2, 6 and 10 SMs), partial last tiles in M and N, K not a multiple of
    # 128 (TMA zero fill), with C.
    monkeypatch.setattr(heuristics, "LARGE_TILE_SPEED", {tile: 1.0})
    monkeypatch.setattr(heuristics, "N_WAVES_MIN_K", 0)
    chosen = gemm.choose_gemm_config

    def resident_on_any_grid(m, n, k, num_sms, staged=0, **kw):  # (the heuristics keep runs in step)
        cfg = chosen(m, n, k, num_sms, staged, **kw)
        return heuristics.with_resident_a(cfg, -(-k // 128), -(-n // cfg.block_n)) or cfg

    monkeypatch.setattr(gemm, "choose_gemm_config", resident_on_any_grid)
    rng, seed = _rng()
    m = 1500 + 8 * RESIDENT_TILES.index(tile) + 4 * with_c  # plans: per shape; M-blocks even or >= 8
    n = 2112 - 16
    a8, sfa, b8, sfb = make_operands(rng, m, n, k)
    c = rng.standard_normal((m, n)).astype(np.float32).astype(BF16) if with_c else None
    out = poisoned((m, n), BF16)
    cfg = resident_on_any_grid(m, n, k, num_sms or fg.get_num_sms(), 2)
    # (256x128 keeps at most three K blocks: four would leave room for two B stages only.)
    resident = 0 if tile == (256, 128) and k > 384 else -(-k // 128)
    assert (cfg.block_m, cfg.block_n, cfg.cluster_m, cfg.resident_a) == (*tile, 2, resident), cfg
    gemm_on_grid(num_sms, a8, sfa, b8, sfb, out, c)
    check_against_reference(a8, sfa, b8, sfb, out, c=None if c is None else c.astype(np.float32), rng=rng,
                            seed=seed)


@requires_gpu
@pytest.mark.parametrize("m,n,k,out_dtype,c_dtype", [
    (64, 576, 7168, BF16, None), (128, 1536, 7168, np.dtype(np.float32), None),
    (100, 2112, 7168, BF16, np.dtype(np.float32)), (256, 2112, 7168, np.dtype(np.float32), BF16),
    (1, 2112, 7168, BF16, None), (200, 2096, 7232, BF16, BF16), (72, 1552, 7232, BF16, None)])
def test_split_k_shapes(m, n, k, out_dtype, c_dtype):
    # Small M, long K: the heuristics split each tile's K blocks over a CTA pair and add the
    # partial tiles through distributed shared memory (odd M and N, K not a multiple of 128, C).
    # (As on a 132-SM H100 / H200; fewer SMs may leave some of these shapes unsplit.)
    assert heuristics.choose_gemm_config(m, n, k, 132, 2).split_k == 2
    rng, seed = _rng()
    a8, sfa, b8, sfb = make_operands(rng, m, n, k)
    c = None if c_dtype is None else rng.standard_normal((m, n)).astype(np.float32).astype(c_dtype)
    out = poisoned((m, n), out_dtype)
    fg.fp8_gemm_nt((to_dev(a8), to_dev(sfa)), (to_dev(b8), to_dev(sfb)), out,
                   c=None if c is None else to_dev(c))
    check_against_reference(a8, sfa, b8, sfb, out, c=None if c is None else c.astype(np.float32),
                            out_dtype=out_dtype, rng=rng, seed=seed)


@requires_gpu
@pytest.mark.parametrize("tile", [(64, 16), (64, 128), (128, 64), (128, 192)])
@pytest.mark.parametrize("num_sms,k", [(2, 7168), (6, 384), (None, 128), (4, 1008)])
def test_split_k_any_grid(tile, num_sms, k, monkeypatch):
    # Split-K forced on other grids: clusters that walk several tiles (their partial-tile slots
    # reused tile after tile), a CTA with one K block or none (K = 128), K tails.
    def split_k(m, n, k, num_sms, staged=0, **kw):
        bm, bn = tile
        tiles = -(-m // bm) * -(-n // bn)
        return heuristics.GemmConfig(bm, bn, heuristics.stages_for(bm, bn, 4), 4, min(2 * tiles, num_sms // 2 * 2),
                                     overlap=heuristics.uses_overlap(bm, bn), split_k=2)

    monkeypatch.setattr(gemm, "choose_gemm_config", split_k)
    rng, seed = _rng()
    m, n = 300 + tile[1] // 16, 1000 + 2 * tile[0]  # plans: per shape
    a8, sfa, b8, sfb = make_operands(rng, m, n, k)
    out = poisoned((m, n), BF16)
    gemm_on_grid(num_sms, a8, sfa, b8, sfb, out)
    check_against_reference(a8, sfa, b8, sfb, out, rng=rng, seed=seed)


@requires_gpu
@pytest.mark.parametrize("out_dtype", [BF16, np.dtype(np.float32)])
@pytest.mark.parametrize("c_dtype", [None, np.dtype(np.float32), BF16])
def test_out_dtypes_and_accumulate(out_dtype, c_dtype):
    rng, seed = _rng()
    m, n, k = 300, 7168, 2048
    a8, sfa, b8, sfb = make_operands(rng, m, n, k)
    c = None if c_dtype is None else rng.standard_normal((m, n), np.float32).astype(c_dtype)
    out = poisoned((m, n), out_dtype)
    fg.fp8_gemm_nt((to_dev(a8), to_dev(sfa)), (to_dev(b8), to_dev(sfb)), out,
                   c=None if c is None else to_dev(c))
    check_against_reference(a8, sfa, b8, sfb, out, c=c, out_dtype=out_dtype, rng=rng, seed=seed)


@requires_gpu
@pytest.mark.parametrize("out_dtype", [BF16, np.dtype(np.float32)])
@pytest.mark.parametrize("pad", [8, 2])  # 8: 16-byte aligned rows (TMA-store epilogue); 2: register stores
def test_padded_output_rows(out_dtype, pad):
    rng, seed = _rng()
    m, n, k = 200, 1040, 1024  # N not a multiple of the tile: the last tile is clipped
    a8, sfa, b8, sfb = make_operands(rng, m, n, k)
    buf = poisoned((m, n + pad), out_dtype)
    fg.fp8_gemm_nt((to_dev(a8), to_dev(sfa)), (to_dev(b8), to_dev(sfb)), StridedView(buf, (m, n), (n + pad, 1)))
    full = buf.to_numpy()
    check_against_reference(a8, sfa, b8, sfb, full[:, :n], out_dtype=out_dtype, rng=rng, seed=seed)
    assert np.isnan(full[:, n:].astype(np.float32)).all(), "wrote past the output's columns"


@requires_gpu
def test_accumulate_in_place():
    rng, seed = _rng()
    m, n, k = 200, 4096, 1024
    a8, sfa, b8, sfb = make_operands(rng, m, n, k)
    c = rng.standard_normal((m, n), np.float32)
    buf = to_dev(c)
    fg.fp8_gemm_nt((to_dev(a8), to_dev(sfa)), (to_dev(b8), to_dev(sfb)), buf, c=buf)
    check_against_reference(a8, sfa, b8, sfb, buf, c=c, out_dtype=np.dtype(np.float32), rng=rng,
                            seed=seed)


@requires_gpu
def test_outliers_and_zero_blocks():
    rng, seed = _rng()
    m, n, k = 333, 2112, 7168
    a8, sfa, b8, sfb = make_operands(rng, m, n, k, outliers=True, zero_blocks=True)
    out = poisoned((m, n), BF16)
    fg.fp8_gemm_nt((to_dev(a8), to_dev(sfa)), (to_dev(b8), to_dev(sfb)), out)
    check_against_reference(a8, sfa, b8, sfb, out, rng=rng, seed=seed)


@requires_gpu
@pytest.mark.parametrize("m, ld", [(130, 130), (1000, 1000), (1100, 1104), (1001, 1001)])
def test_scale_layouts_row_and_column_major(m, ld):
    # M-major sfa with 16-byte aligned columns (ld % 4 == 0) is copied in bulk for the full
    # tiles of large tile shapes (m = 1000, 1100 here); there other layouts (row-major, and
    # M-major with ld = 1001) are first copied M-major by the library; partial tiles and
    # small tiles (m = 130) take the per-row path: results must agree.
    rng, seed = _rng()
    n, k = 4096, 7168
    a8, sfa, b8, sfb = make_operands(rng, m, n, k)
    # M-major sfa: a [K/128, ld] buffer seen through transposed strides.
    buf = np.zeros((sfa.shape[1], ld), np.float32)
    buf[:, :m] = sfa.T
    sfa_mmajor = StridedView(to_dev(buf), (m, sfa.shape[1]), (1, ld))
    out1, out2 = poisoned((m, n), BF16), poisoned((m, n), BF16)
    fg.fp8_gemm_nt((to_dev(a8), to_dev(sfa)), (to_dev(b8), to_dev(sfb)), out1)
    fg.fp8_gemm_nt((to_dev(a8), sfa_mmajor), (to_dev(b8), to_dev(sfb)), out2)
    check_against_reference(a8, sfa, b8, sfb, out2, rng=rng, seed=seed)
    assert np.array_equal(out1.to_numpy().view(np.uint16), out2.to_numpy().view(np.uint16))


@requires_gpu
def test_row_major_scales_are_copied_m_major_for_large_tiles():
    # Row-major sfa with padded rows (row stride 60 > 56 K blocks) at a large shape: the call
    # reads an M-major copy (the plan says so) and matches the reference; the caller's sfa
    # is left as it was.
    from fp8gemm_core import gemm
    rng, seed = _rng()
    m, n, k = 1003, 2048, 7168
    a8, sfa, b8, sfb = make_operands(rng, m, n, k)
    padded = np.zeros((m, 60), np.float32)
    padded[:, :sfa.shape[1]] = sfa
    buf = to_dev(padded)
    sfa_view = StridedView(buf, sfa.shape, (60, 1))
    out = poisoned((m, n), BF16)
    gemm._calls.clear()
    fg.fp8_gemm_nt((to_dev(a8), sfa_view), (to_dev(b8), to_dev(sfb)), out)
    (call,) = gemm._calls.values()
    assert call.sfa_ld == 1004 and call.plan.config.block_m >= 128, call
    check_against_reference(a8, sfa, b8, sfb, out, rng=rng, seed=seed)
    assert np.array_equal(buf.to_numpy(), padded)


@requires_gpu
@pytest.mark.parametrize("m,n,k", [(4096, 4096, 7168), (128, 2112, 7168)])  # (the second: split-K)
def test_deterministic(m, n, k):
    rng, seed = _rng()
    a8, sfa, b8, sfb = make_operands(rng, m, n, k)
    args = ((to_dev(a8), to_dev(sfa)), (to_dev(b8), to_dev(sfb)))
    first = fg.fp8_gemm_nt(*args, out_dtype="fp32").to_numpy().view(np.uint32)
    for _ in range(3):
        assert np.array_equal(fg.fp8_gemm_nt(*args, out_dtype="fp32").to_numpy().view(np.uint32), first)


@requires_gpu
def test_numpy_in_numpy_out():
    rng, seed = _rng()
    a8, sfa, b8, sfb = make_operands(rng, 50, 512, 384)
    got = fg.fp8_gemm_nt((a8, sfa), (b8, sfb))
    assert isinstance(got, np.ndarray) and got.dtype == BF16
    check_against_reference(a8, sfa, b8, sfb, got, rng=rng, seed=seed)


@requires_gpu
def test_set_num_sms():
    rng, seed = _rng()
    a8, sfa, b8, sfb = make_operands(rng, 512, 4096, 1024)
    try:
        fg.set_num_sms(7)
        out = poisoned((512, 4096), BF16)
        fg.fp8_gemm_nt((to_dev(a8), to_dev(sfa)), (to_dev(b8), to_dev(sfb)), out)
    finally:
        fg.set_num_sms(None)
    check_against_reference(a8, sfa, b8, sfb, out, rng=rng, seed=seed)


# --------------------------------------------------------------------------- torch interop (GPU)


@requires_gpu
@pytest.mark.parametrize("m,n,k", [(256, 7168, 2048), (128, 2112, 7168)])  # (the second: split-K)
def test_torch_side_stream_and_graph_replay(m, n, k):
    torch = pytest.importorskip("torch")
    rng, seed = _rng()
    a8, sfa, b8, sfb = make_operands(rng, m, n, k)
    dev = torch.device("cuda:0")
    t = lambda x: to_torch(torch, x, dev)  # noqa: E731
    A, SA, B, SB = t(a8), t(sfa), t(b8), t(sfb)
    out = torch.full((m, n), float("nan"), dtype=torch.bfloat16, device=dev)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        # Delay the side stream, then write the real inputs: a kernel launched on any
        # other stream would read the stale (zeroed) copies.
        A_late = torch.zeros_like(A.view(torch.uint8))
        torch.cuda._sleep(50_000_000)
        A_late.copy_(A.view(torch.uint8))
        fg.fp8_gemm_nt((A_late, SA), (B, SB), out, stream=side)
    side.synchronize()
    check_against_reference(a8, sfa, b8, sfb, out.view(torch.int16).cpu().numpy().view(BF16),
                            rng=rng, seed=seed)

    # Graph capture: record once, then replay on new data written into the same buffers.
    fg.fp8_gemm_nt((A, SA), (B, SB), out)  # warm: compile and plan outside the capture
    graph = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    with torch.cuda.graph(graph, stream=s):
        fg.fp8_gemm_nt((A, SA), (B, SB), out, stream=s)
    for _ in range(2):
        a8, sfa, b8, sfb = make_operands(rng, m, n, k)
        A.view(torch.uint8).copy_(t(a8).view(torch.uint8))
        SA.copy_(t(sfa))
        B.view(torch.uint8).copy_(t(b8).view(torch.uint8))
        SB.copy_(t(sfb))
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        check_against_reference(a8, sfa, b8, sfb, out.view(torch.int16).cpu().numpy().view(BF16),
                                rng=rng, seed=seed)


@requires_gpu
def test_inputs_on_second_gpu():
    from gpu_support import gpu_count
    if gpu_count() < 2:
        pytest.skip("needs 2 GPUs")
    from cuda.bindings import driver as cu
    from fp8gemm_core import driver
    rng, seed = _rng()
    a8, sfa, b8, sfb = make_operands(rng, 300, 2112, 7168)
    dev1 = [DeviceArray.from_numpy(np.ascontiguousarray(x), device=1, stream=0) for x in (a8, sfa, b8, sfb)]
    with driver.get_device(0).activate():  # the caller's current GPU is 0 ...
        out = fg.fp8_gemm_nt((dev1[0], dev1[1]), (dev1[2], dev1[3]))
        assert out.device == 1  # ... the work and its output follow the inputs to GPU 1
        assert int(driver.call(cu.cuCtxGetCurrent)) == int(driver.get_device(0).context)
    check_against_reference(a8, sfa, b8, sfb, out, rng=rng, seed=seed)
    mixed = DeviceArray.from_numpy(np.ascontiguousarray(sfb), device=0, stream=0)
    with pytest.raises(ValueError, match="b\\[1\\]"):
        fg.fp8_gemm_nt((dev1[0], dev1[1]), (dev1[2], mixed))


@requires_gpu
def test_torch_and_cupy_inputs_on_second_gpu():
    """Framework arrays on GPU 1 while the framework's current device is 0: the call runs on
    GPU 1, on the given stream of GPU 1 (torch) or GPU 1's default stream (CuPy)."""
    from gpu_support import gpu_count
    if gpu_count() < 2:
        pytest.skip("needs 2 GPUs")
    torch = pytest.importorskip("torch")
    rng, seed = _rng()
    m, n, k = 200, 1024, 1536
    a8, sfa, b8, sfb = make_operands(rng, m, n, k)
    dev = torch.device("cuda:1")
    t = lambda x: to_torch(torch, x, dev)  # noqa: E731
    torch.cuda.set_device(0)
    A, SA, B, SB = t(a8), t(sfa), t(b8), t(sfb)
    out = torch.full((m, n), float("nan"), dtype=torch.bfloat16, device=dev)
    side = torch.cuda.Stream(device=dev)
    with torch.cuda.stream(side):
        # Late inputs on GPU 1's side stream: a launch not ordered after it reads zeros.
        A_late = torch.zeros_like(A.view(torch.uint8))
        torch.cuda._sleep(50_000_000)
        A_late.copy_(A.view(torch.uint8))
    assert torch.cuda.current_device() == 0
    fg.fp8_gemm_nt((A_late, SA), (B, SB), out, stream=side)
    assert torch.cuda.current_device() == 0
    torch.cuda.synchronize(dev)
    check_against_reference(a8, sfa, b8, sfb, out.view(torch.int16).cpu().numpy().view(BF16),
                            rng=rng, seed=seed)

    cupy = pytest.importorskip("cupy")
    with cupy.cuda.Device(1):
        c = [cupy.asarray(np.ascontiguousarray(x).view(np.uint8) if x.dtype.itemsize == 1 else x)
             for x in (a8, sfa, b8, sfb)]
        cout = cupy.full((m, n), np.nan, dtype=cupy.float32)
    fg.fp8_gemm_nt((c[0], c[1]), (c[2], c[3]), cout, out_dtype="fp32")
    cupy.cuda.Device(1).synchronize()
    check_against_reference(a8, sfa, b8, sfb, cupy.asnumpy(cout), out_dtype=np.dtype(np.float32),
                            rng=rng, seed=seed)
