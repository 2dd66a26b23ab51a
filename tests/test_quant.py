"""FP8 quantization kernels: bit-identical to the numpy reference (GPU); dispatch and errors (CPU)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import fp8gemm_core as fg
from fp8gemm_core import reference as ref
from fp8gemm_core.arrays import DeviceArray

from gpu_support import requires_gpu

BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = [np.dtype(np.float32), BF16, np.dtype(np.float16)]


def _rng():
    seed = np.random.SeedSequence().entropy % 2**32
    return np.random.default_rng(seed), seed


def make_input(rng, shape, dtype, *, outliers=False, zero_rows=False):
    x = rng.standard_normal(shape, dtype=np.float32) * rng.uniform(0.01, 100.0)
    if outliers:
        x.flat[rng.integers(0, x.size, size=max(1, x.size // 500))] *= 300.0
    if zero_rows:
        x[..., : max(1, shape[-2] // 4), :] = 0.0
    if dtype == np.float16:
        x = np.clip(x, -60000, 60000)
    return x.astype(dtype)


def to_dev(x):
    return DeviceArray.from_numpy(np.ascontiguousarray(x), device=0, stream=0)


def token_scales_to_numpy(sf):
    """Our per-token scales (an M-major view of a [..., kg, M] buffer) as [..., M, kg]."""
    return np.swapaxes(sf.base.to_numpy(), -1, -2)


def assert_same_bits(got_q, got_sf, want_q, want_sf, seed):
    assert got_q.shape == want_q.shape and got_sf.shape == want_sf.shape
    assert np.array_equal(got_sf.view(np.uint32), want_sf.view(np.uint32)), f"scales differ (seed {seed})"
    diff = np.flatnonzero(got_q.view(np.uint8) != want_q.view(np.uint8))
    assert diff.size == 0, f"{diff.size} E4M3 bytes differ, first at flat index {diff[:5]} (seed {seed})"


# --------------------------------------------------------------------------- CPU


def test_numpy_input_runs_the_reference():
    x = np.random.default_rng(0).standard_normal((9, 300)).astype(np.float32)
    for ours, theirs in ((fg.per_token_cast_to_fp8, ref.per_token_cast_to_fp8),
                         (fg.per_block_cast_to_fp8, ref.per_block_cast_to_fp8)):
        (q, sf), (wq, wsf) = ours(x, ue8m0=True), theirs(x, ue8m0=True)
        assert_same_bits(q, sf, wq, wsf, 0)


def test_numpy_input_rejects_device_only_options():
    x = np.zeros((4, 128), np.float32)
    with pytest.raises(TypeError, match="neither masked_m nor out"):
        fg.per_token_cast_to_fp8(x, masked_m=np.zeros(1, np.int32))
    with pytest.raises(TypeError, match="takes no out"):
        fg.per_block_cast_to_fp8(x, out=(x, x))


# --------------------------------------------------------------------------- GPU: bit-exact


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(1, 128), (7, 1000), (5, 1001), (300, 7168), (3, 50, 640)])
@pytest.mark.parametrize("ue8m0", [False, True])
def test_per_token_bit_exact(dtype, shape, ue8m0):
    rng, seed = _rng()
    x = make_input(rng, shape, dtype, outliers=True, zero_rows=True)
    q, sf = fg.per_token_cast_to_fp8(to_dev(x), ue8m0=ue8m0)
    want_q, want_sf = ref.per_token_cast_to_fp8(x, ue8m0=ue8m0)
    assert q.dtype == np.dtype(ml_dtypes.float8_e4m3fn)
    assert_same_bits(q.to_numpy(), token_scales_to_numpy(sf), want_q, want_sf, seed)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(128, 128), (130, 1000), (257, 1001), (2112, 7168), (3, 200, 384)])
@pytest.mark.parametrize("ue8m0", [False, True])
def test_per_block_bit_exact(dtype, shape, ue8m0):
    rng, seed = _rng()
    x = make_input(rng, shape, dtype, outliers=True, zero_rows=True)
    q, sf = fg.per_block_cast_to_fp8(to_dev(x), ue8m0=ue8m0)
    want_q, want_sf = ref.per_block_cast_to_fp8(x, ue8m0=ue8m0)
    assert_same_bits(q.to_numpy(), sf.to_numpy(), want_q, want_sf, seed)


def _division_sweep(dtype, rng) -> np.ndarray:
    """Rows of 128 values that exercise x / scale over the whole E4M3 range: every finite
    bf16 value (or 2^20 random fp32 bit patterns), grouped by magnitude (so quotients
    span [0, 448]), grouped with a half-group shift, and shuffled."""
    if dtype == BF16:
        bits = np.arange(1 << 16, dtype=np.uint32) << 16
    else:
        bits = rng.integers(0, 1 << 32, size=1 << 20, dtype=np.uint64).astype(np.uint32)
        bits = (bits & 0x807FFFFF) | (rng.integers(60, 190, size=bits.size).astype(np.uint32) << 23)
    v = bits.view(np.float32)
    v = v[np.isfinite(v)]
    v = v[np.argsort(np.abs(v), kind="stable")]
    v = v[: v.size // 128 * 128]
    rows = np.concatenate([v, np.roll(v, 64), rng.permutation(v)]).reshape(-1, 128)
    return rows.astype(dtype)


@requires_gpu
@pytest.mark.parametrize("dtype", [BF16, np.dtype(np.float32)], ids=str)
def test_division_matches_ieee_on_a_value_sweep(dtype):
    # The kernels divide by the scale with a reciprocal and one FMA correction: it must
    # give IEEE division's quotient (hence the same E4M3 byte) for every input.
    rng, seed = _rng()
    x = _division_sweep(dtype, rng)
    q, sf = fg.per_token_cast_to_fp8(to_dev(x))
    want_q, want_sf = ref.per_token_cast_to_fp8(x)
    assert_same_bits(q.to_numpy(), token_scales_to_numpy(sf), want_q, want_sf, seed)
    q, sf = fg.per_block_cast_to_fp8(to_dev(x))
    want_q, want_sf = ref.per_block_cast_to_fp8(x)
    assert_same_bits(q.to_numpy(), sf.to_numpy(), want_q, want_sf, seed)


@requires_gpu
def test_per_token_masked_leaves_other_rows():
    rng, seed = _rng()
    G, max_m, K = 6, 40, 896
    x = make_input(rng, (G, max_m, K), BF16)
    masked = rng.integers(0, max_m + 1, size=G).astype(np.int32)
    masked[0], masked[-1] = 0, max_m
    q, sf = fg.per_token_cast_to_fp8(to_dev(x), masked_m=to_dev(masked))
    want_q, want_sf = ref.per_token_cast_to_fp8(x)
    got_q, got_sf = q.to_numpy(), token_scales_to_numpy(sf)
    for g, m in enumerate(masked):
        assert_same_bits(got_q[g, :m], got_sf[g, :m], want_q[g, :m], want_sf[g, :m], seed)
        assert not got_q[g, m:].view(np.uint8).any() and not got_sf[g, m:].any(), f"group {g} rows past masked_m"


@requires_gpu
def test_per_token_into_given_row_major_outputs():
    rng, seed = _rng()
    x = make_input(rng, (33, 512), np.dtype(np.float32))
    q = to_dev(np.zeros((33, 512), np.uint8))
    sf = to_dev(np.zeros((33, 4), np.float32))
    res = fg.per_token_cast_to_fp8(to_dev(x), out=(q, sf))
    assert res[0] is q and res[1] is sf
    want_q, want_sf = ref.per_token_cast_to_fp8(x)
    assert_same_bits(q.to_numpy(), sf.to_numpy(), want_q, want_sf, seed)


@requires_gpu
def test_rejects_bad_input():
    with pytest.raises(TypeError, match="x: expected float32, bfloat16 or float16, got int32"):
        fg.per_token_cast_to_fp8(to_dev(np.zeros((4, 128), np.int32)))
    with pytest.raises(ValueError, match="group: the GPU kernel supports 128"):
        fg.per_token_cast_to_fp8(to_dev(np.zeros((4, 128), np.float32)), group=64)
    with pytest.raises(ValueError, match=r"out\[1\]"):
        fg.per_token_cast_to_fp8(to_dev(np.zeros((4, 256), np.float32)),
                                 out=(to_dev(np.zeros((4, 256), np.uint8)), to_dev(np.zeros((4, 3), np.float32))))


# --------------------------------------------------------------------------- GPU: end to end


@requires_gpu
def test_end_to_end_against_bf16_matmul():
    """bf16 activations and weights -> our casts -> our GEMM, against the product of the bf16 values."""
    rng, seed = _rng()
    m, n, k = 512, 2048, 4096
    a = rng.standard_normal((m, k), dtype=np.float32).astype(BF16)
    b = (rng.standard_normal((n, k), dtype=np.float32) * 0.02).astype(BF16)
    qa, sfa = fg.per_token_cast_to_fp8(to_dev(a))
    qb, sfb = fg.per_block_cast_to_fp8(to_dev(b))
    d = fg.fp8_gemm_nt((qa, sfa), (qb, sfb)).to_numpy().astype(np.float64)
    exact = a.astype(np.float64) @ b.astype(np.float64).T
    err = float(np.linalg.norm(d - exact) / np.linalg.norm(exact))
    print(f"\nFP8 recipe relative error vs the bf16 product ({m}x{n}x{k}): {err:.4f}")
    # E4M3 keeps 3 mantissa bits: each element is off by up to 1/16 relative (rms ~2.5%), a
    # product of two by ~3.5%, and so, for data without structure, is the result.
    assert err < 0.08, f"relative error {err:.3g} (seed {seed})"


@requires_gpu
def test_casts_on_second_gpu():
    """Input on GPU 1, caller's current GPU 0: the casts run on GPU 1 and allocate there."""
    from gpu_support import gpu_count
    if gpu_count() < 2:
        pytest.skip("needs 2 GPUs")
    from cuda.bindings import driver as cu
    from fp8gemm_core import driver
    rng, seed = _rng()
    x = make_input(rng, (130, 1000), BF16, outliers=True)
    x1 = DeviceArray.from_numpy(x, device=1, stream=0)
    with driver.get_device(0).activate():
        tq, tsf = fg.per_token_cast_to_fp8(x1)
        bq, bsf = fg.per_block_cast_to_fp8(x1)
        assert int(driver.call(cu.cuCtxGetCurrent)) == int(driver.get_device(0).context)
    assert tq.device == 1 and tsf.base.device == 1 and bq.device == 1 and bsf.device == 1
    assert_same_bits(tq.to_numpy(), token_scales_to_numpy(tsf), *ref.per_token_cast_to_fp8(x), seed)
    assert_same_bits(bq.to_numpy(), bsf.to_numpy(), *ref.per_block_cast_to_fp8(x), seed)
