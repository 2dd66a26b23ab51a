"""Tests of fp8gemm_core.reference (CPU, numpy only).

Random inputs use a fresh seed each run; it is in every assertion message. Set FP8GEMM_TEST_SEED to
replay a failing run.
"""

import math
import os

import ml_dtypes
import numpy as np
import pytest

from fp8gemm_core import reference as ref
from fp8gemm_core.reference import (
    AMAX_FLOOR,
    FP8_MAX,
    dequantize_per_block,
    dequantize_per_token,
    fp8_gemm_nt,
    m_grouped_fp8_gemm_nt_contiguous,
    m_grouped_fp8_gemm_nt_masked,
    per_block_cast_to_fp8,
    per_token_cast_to_fp8,
)

E4M3 = ml_dtypes.float8_e4m3fn
BF16 = ml_dtypes.bfloat16
F32 = np.float32

# All finite e4m3 values by bit pattern (0x7f / 0xff are NaN), for an independent rounding model.
_BITS = np.array([b for b in range(256) if b & 0x7F != 0x7F], dtype=np.uint8)
_VALUES = _BITS.view(E4M3).astype(np.float64)


class _SeededRng(np.random.Generator):
    """A Generator that remembers its seed, for assertion messages."""


@pytest.fixture
def rng():
    seed = int(os.environ.get("FP8GEMM_TEST_SEED", np.random.SeedSequence().entropy))
    gen = _SeededRng(np.random.PCG64(seed))
    gen.seed = seed
    return gen


def _f32(v):
    return np.float32(v)


# ---------------------------------------------------------------------------------------------
# Independent models (plain loops / brute force), deliberately not sharing code with the module.
# ---------------------------------------------------------------------------------------------

def _loop_scale(amax_py: float, ue8m0: bool) -> np.float32:
    amax = max(_f32(amax_py), _f32(AMAX_FLOOR))
    sf = _f32(amax) / _f32(448.0)
    if not ue8m0:
        return sf
    p = 2.0 ** math.ceil(math.log2(float(sf)))  # may be off by one step: fix up by comparison
    while p < sf:
        p *= 2.0
    while p / 2.0 >= sf:
        p /= 2.0
    return _f32(p)


def _loop_token_scales(x32, group, ue8m0):
    M, K = x32.shape
    ng = -(-K // group)
    sf = np.zeros((M, ng), F32)
    for m in range(M):
        for g in range(ng):
            sl = x32[m, g * group:(g + 1) * group]
            sf[m, g] = _loop_scale(max(abs(float(v)) for v in sl), ue8m0)
    return sf


def _loop_block_scales(x32, block, ue8m0):
    N, K = x32.shape
    nb, kb = -(-N // block), -(-K // block)
    sf = np.zeros((nb, kb), F32)
    for i in range(nb):
        for j in range(kb):
            tile = x32[i * block:(i + 1) * block, j * block:(j + 1) * block]
            sf[i, j] = _loop_scale(max(abs(float(v)) for v in tile.ravel()), ue8m0)
    return sf


def _rne_e4m3_bruteforce(v32):
    """Nearest finite e4m3 by exhaustive search; ties to the even bit pattern; saturate at 448."""
    v = np.clip(v32.astype(np.float64).ravel(), -448.0, 448.0)
    even = (_BITS & 1) == 0  # even mantissa LSB
    out = np.empty_like(v)
    for i in range(0, v.size, 2048):  # chunks keep the [n, 254] distance table small
        dist = np.abs(v[i:i + 2048, None] - _VALUES[None, :])
        cand = dist == dist.min(axis=1, keepdims=True)  # one candidate, or two at an exact tie
        cand_even = cand & even[None, :]
        pick = np.where(cand_even.any(axis=1), np.argmax(cand_even, axis=1), np.argmax(cand, axis=1))
        out[i:i + 2048] = _VALUES[pick]
    return out.reshape(v32.shape)


def _dequant64_token(x8, sf, group=128):
    K = x8.shape[-1]
    return x8.astype(np.float64) * np.repeat(sf.astype(np.float64), group, axis=-1)[..., :K]


def _dequant64_block(x8, sf, block=128):
    N, K = x8.shape
    full = np.repeat(np.repeat(sf.astype(np.float64), block, axis=0), block, axis=1)
    return x8.astype(np.float64) * full[:N, :K]


def _relfro(x, y):
    return float(np.linalg.norm(np.asarray(x, np.float64) - y) / np.linalg.norm(y))


def _random_operands(rng, M, N, K, scale=1.0):
    a = (rng.standard_normal((M, K)) * scale).astype(F32)
    b = (rng.standard_normal((N, K)) * scale).astype(F32)
    a8, sfa = per_token_cast_to_fp8(a)
    b8, sfb = per_block_cast_to_fp8(b)
    return a8, sfa, b8, sfb


# ---------------------------------------------------------------------------------------------
# Quantization
# ---------------------------------------------------------------------------------------------

def test_constants():
    assert FP8_MAX == 448.0 and AMAX_FLOOR == 1e-4 and ref.GROUP == 128


@pytest.mark.parametrize("ue8m0", [False, True])
def test_rne_at_exact_ties(ue8m0):
    # 448 in the row makes sf exactly 1 (both modes), so x / sf == x and the ties reach the cast exactly.
    ties = {
        1.0625: 1.0,       # between 1.0 (mantissa 000) and 1.125 (001): even is 1.0
        1.1875: 1.25,      # between 1.125 (001) and 1.25 (010): even is 1.25
        432.0: 448.0,      # between 416 (101) and 448 (110)
        400.0: 384.0,      # between 384 (100) and 416 (101)
        2.0 ** -10: 0.0,   # subnormal: between 0 and 2**-9 (mantissa 001)
        3 * 2.0 ** -10: 2.0 ** -8,  # between 2**-9 (001) and 2**-8 (010)
        2.0 ** -6 * 1.4375: 2.0 ** -6 * 1.5,  # smallest normal binade: between 1.375 (011) and 1.5 (100)
    }
    xs = np.array([448.0] + list(ties) + [-t for t in ties], F32)
    want = np.array([448.0] + list(ties.values()) + [-v for v in ties.values()], np.float64)
    x8, sf = per_token_cast_to_fp8(xs[None, :], ue8m0=ue8m0)
    assert sf[0, 0] == 1.0
    got = x8.astype(np.float64)[0]
    np.testing.assert_array_equal(got, want)
    # one ulp above a tie rounds up
    above = np.nextafter(F32(1.0625), F32(2))
    x8, _ = per_token_cast_to_fp8(np.array([[448.0, above]], F32), ue8m0=ue8m0)
    assert float(x8.astype(np.float64)[0, 1]) == 1.125


def test_division_not_reciprocal_multiply(rng):
    # Build rows [amax, x] where fl(x / sf) is exactly the tie 1.0625 (-> 1.0 by RNE) but
    # fl(x * fl(1 / sf)) lands above it (-> 1.125): only a true fp32 division gives 1.0.
    amax = rng.uniform(1.0, 1000.0, 20000).astype(F32)
    sf = amax / F32(448)
    x = F32(1.0625) * sf
    recip = x * (F32(1) / sf)
    pick = (x / sf == F32(1.0625)) & (recip > F32(1.0625))
    msg = f"seed={rng.seed}"
    assert pick.sum() >= 10, msg
    rows = np.stack([amax[pick], x[pick]], axis=1)
    x8, got_sf = per_token_cast_to_fp8(rows)
    np.testing.assert_array_equal(got_sf[:, 0], sf[pick], err_msg=msg)
    np.testing.assert_array_equal(x8[:, 1].astype(np.float64), 1.0, err_msg=msg)
    x8, _ = per_block_cast_to_fp8(rows[:1])  # one 1x2 tile, same amax
    assert float(x8.astype(np.float64)[0, 1]) == 1.0, msg


def test_saturation_helper_never_nan():
    # ml_dtypes gives NaN above 464 for e4m3fn; the module's cast must clip first.
    raw = np.array([449, 463.9, 464, 465, 480, 1e6, 3e38, -465, -1e30], F32)
    assert np.isnan(raw.astype(E4M3).astype(np.float64)).any()  # why the clip exists
    got = ref._e4m3_saturate(raw).astype(np.float64)
    np.testing.assert_array_equal(got, np.sign(raw) * 448.0)


def test_saturation_through_quantizer(rng):
    # amax / fl(amax / 448) is often a hair above 448 in fp32; that element must land on exactly +-448.
    amax = rng.uniform(1e-3, 1e4, 4000).astype(F32)
    over = amax / (amax / F32(448)) > F32(448)
    assert over.any(), f"seed={rng.seed}"
    x = np.stack([amax, -amax * F32(0.5)], axis=1)  # amax is the group max of each row
    x = np.concatenate([x, -x], axis=0)
    for ue8m0 in (False, True):
        x8, sf = per_token_cast_to_fp8(x, ue8m0=ue8m0)
        v = x8.astype(np.float64)
        assert not np.isnan(v).any(), f"seed={rng.seed}"
        assert np.all(np.abs(v) <= 448.0), f"seed={rng.seed}"
        if not ue8m0:
            np.testing.assert_array_equal(np.abs(v[:, 0]), 448.0, err_msg=f"seed={rng.seed}")


@pytest.mark.parametrize("ue8m0", [False, True])
def test_all_zero_rows_and_blocks(ue8m0):
    floor_sf = F32(AMAX_FLOOR) / F32(448)
    if ue8m0:
        floor_sf = F32(2.0 ** -22)  # 2**-23 < 1e-4/448 ~ 2.23e-7 <= 2**-22
    x = np.zeros((3, 300), F32)
    x[1, 5] = 3.0  # one non-zero group so zero and non-zero coexist
    x8, sf = per_token_cast_to_fp8(x, ue8m0=ue8m0)
    assert sf.dtype == F32 and sf.shape == (3, 3)
    mask = np.ones_like(sf, bool)
    mask[1, 0] = False
    assert np.all(sf[mask] == floor_sf)
    v = x8.astype(np.float64)
    assert not np.isnan(v).any() and np.count_nonzero(v) == 1
    w = np.zeros((200, 130), BF16)
    w8, sfb = per_block_cast_to_fp8(w, ue8m0=ue8m0)
    assert sfb.shape == (2, 2) and np.all(sfb == floor_sf)
    assert not np.isnan(w8.astype(np.float64)).any() and not np.any(w8.astype(np.float64))


def test_ue8m0_scales_are_powers_of_two(rng):
    x = (rng.standard_normal((16, 1024)) * np.exp(rng.uniform(-12, 12, (16, 1)))).astype(F32)
    x[3] = 0.0
    x8, sf = per_token_cast_to_fp8(x, ue8m0=True)
    _, sf_plain = per_token_cast_to_fp8(x)
    mant, _ = np.frexp(sf)
    msg = f"seed={rng.seed}"
    assert np.all(mant == 0.5), msg
    assert np.all(sf >= sf_plain) and np.all(sf < 2 * sf_plain.astype(np.float64)), msg
    # an exact power of two amax/448 maps to itself
    for k in (-20, -3, 0, 1, 7, 30):
        row = np.full((1, 128), F32(-0.3 * 448.0 * 2.0 ** k))  # smaller than the max below
        row[0, 7] = F32(448.0 * 2.0 ** k)
        _, s = per_token_cast_to_fp8(row, ue8m0=True)
        assert s[0, 0] == F32(2.0 ** k)
        _, s = per_block_cast_to_fp8(row, ue8m0=True)
        assert s[0, 0] == F32(2.0 ** k)
    # just above a power of two rounds up to the next one
    row = np.zeros((1, 10), F32)
    row[0, 0] = np.nextafter(F32(448.0), F32(1e9))
    _, s = per_token_cast_to_fp8(row, ue8m0=True)
    assert s[0, 0] == 2.0


@pytest.mark.parametrize("ue8m0", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, BF16])
def test_per_token_against_loop(rng, ue8m0, dtype):
    M, K = 12, 300  # K = 128 + 128 + 44
    x = (rng.standard_normal((M, K)) * rng.uniform(0.01, 100, (M, 1))).astype(dtype)
    x[2, 128:256] = 0
    x8, sf = per_token_cast_to_fp8(x, ue8m0=ue8m0)
    x32 = x.astype(F32)
    msg = f"seed={rng.seed}"
    assert x8.dtype == E4M3 and x8.shape == (M, K) and sf.dtype == F32 and sf.shape == (M, 3), msg
    want_sf = _loop_token_scales(x32, 128, ue8m0)
    np.testing.assert_array_equal(sf, want_sf, err_msg=msg)
    scaled = x32 / np.repeat(want_sf, 128, axis=1)[:, :K]  # fp32 division, as documented
    np.testing.assert_array_equal(x8.astype(np.float64), _rne_e4m3_bruteforce(scaled), err_msg=msg)


@pytest.mark.parametrize("ue8m0", [False, True])
def test_per_block_against_loop(rng, ue8m0):
    N, K = 300, 200
    x = (rng.standard_normal((N, K)) * 3).astype(F32)
    x[:128, 128:] = 0
    x8, sf = per_block_cast_to_fp8(x, ue8m0=ue8m0)
    msg = f"seed={rng.seed}"
    assert x8.shape == (N, K) and sf.shape == (3, 2) and sf.dtype == F32, msg
    want_sf = _loop_block_scales(x, 128, ue8m0)
    np.testing.assert_array_equal(sf, want_sf, err_msg=msg)
    full = np.repeat(np.repeat(want_sf, 128, 0), 128, 1)[:N, :K]
    np.testing.assert_array_equal(x8.astype(np.float64), _rne_e4m3_bruteforce(x / full), err_msg=msg)


def test_small_group_and_block_sizes(rng):
    x = rng.standard_normal((7, 10)).astype(F32)
    _, sf = per_token_cast_to_fp8(x, group=4)
    np.testing.assert_array_equal(sf, _loop_token_scales(x, 4, False), err_msg=f"seed={rng.seed}")
    _, sf = per_block_cast_to_fp8(x, block=3)
    np.testing.assert_array_equal(sf, _loop_block_scales(x, 3, False), err_msg=f"seed={rng.seed}")


def test_batched_3d_inputs_match_2d(rng):
    x = rng.standard_normal((3, 70, 260)).astype(F32)
    x8, sf = per_token_cast_to_fp8(x)
    w8, sfw = per_block_cast_to_fp8(x)
    assert sf.shape == (3, 70, 3) and sfw.shape == (3, 1, 3)
    for g in range(3):
        a8, s = per_token_cast_to_fp8(x[g])
        np.testing.assert_array_equal(x8[g].view(np.uint8), a8.view(np.uint8), err_msg=f"seed={rng.seed}")
        np.testing.assert_array_equal(sf[g], s)
        b8, s = per_block_cast_to_fp8(x[g])
        np.testing.assert_array_equal(w8[g].view(np.uint8), b8.view(np.uint8), err_msg=f"seed={rng.seed}")
        np.testing.assert_array_equal(sfw[g], s)
    np.testing.assert_array_equal(dequantize_per_token(x8, sf)[1], dequantize_per_token(x8[1], sf[1]))
    np.testing.assert_array_equal(dequantize_per_block(w8, sfw)[2], dequantize_per_block(w8[2], sfw[2]))


@pytest.mark.parametrize("ue8m0", [False, True])
def test_roundtrip_relative_error(rng, ue8m0):
    # e4m3 has 3 mantissa bits: RNE error < 2**-4 relative where the scaled value x/sf is in the normal
    # range (>= 2**-6); "tiny" elements (subnormal after scaling) only have an absolute bound.
    x = (rng.standard_normal((33, 390)) * np.exp(rng.uniform(-5, 5, (33, 1)))).astype(F32)
    msg = f"seed={rng.seed}"
    x8, sf = per_token_cast_to_fp8(x, ue8m0=ue8m0)
    y = dequantize_per_token(x8, sf)
    assert y.dtype == F32 and y.shape == x.shape
    sf_full = np.repeat(sf.astype(np.float64), 128, axis=1)[:, :390]
    normal = np.abs(x) / sf_full >= 2.0 ** -6
    assert normal.mean() > 0.9, msg
    rel = np.abs(y.astype(np.float64) - x)[normal] / np.abs(x[normal])
    assert rel.max() <= (1 / 16) * (1 + 1e-6), msg
    assert np.all(np.abs(y - x)[~normal] <= sf_full[~normal] * 2.0 ** -10 * (1 + 1e-6)), msg
    w8, sfw = per_block_cast_to_fp8(x, ue8m0=ue8m0)
    y = dequantize_per_block(w8, sfw)
    sf_full = np.repeat(np.repeat(sfw.astype(np.float64), 128, 0), 128, 1)[:33, :390]
    normal = np.abs(x) / sf_full >= 2.0 ** -6
    rel = np.abs(y.astype(np.float64) - x)[normal] / np.abs(x[normal])
    assert rel.max() <= (1 / 16) * (1 + 1e-6), msg
    assert np.all(np.abs(y - x)[~normal] <= sf_full[~normal] * 2.0 ** -10 * (1 + 1e-6)), msg


def test_quantizer_rejects_bad_input():
    with pytest.raises(TypeError, match=r"x: expected dtype .*got float64"):
        per_token_cast_to_fp8(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"x: expected a 2-D or 3-D array, got shape \(4,\)"):
        per_block_cast_to_fp8(np.zeros(4, F32))
    with pytest.raises(ValueError, match="x: expected finite"):
        per_token_cast_to_fp8(np.array([[1.0, np.inf]], F32))
    with pytest.raises(ValueError, match="group"):
        per_token_cast_to_fp8(np.zeros((2, 4), F32), group=0)
    with pytest.raises(ValueError, match=r"sf: expected shape \(2, 1\), got \(2, 2\)"):
        dequantize_per_token(np.zeros((2, 4), E4M3), np.ones((2, 2), F32))


# ---------------------------------------------------------------------------------------------
# GEMM
# ---------------------------------------------------------------------------------------------

BF16_U = 2.0 ** -8  # bf16 unit roundoff (8-bit significand): |rne(x) - x| <= 2**-8 |x| elementwise
FP32_BOUND = 1e-5
BF16_BOUND = BF16_U + FP32_BOUND  # ~3.9e-3 + fp32 error; elementwise bound carries over to Frobenius


@pytest.mark.parametrize("M,N,K", [(1, 100, 200), (7, 100, 200), (64, 256, 384), (33, 130, 129), (5, 16, 64)])
@pytest.mark.parametrize("with_c", [False, True])
def test_gemm_against_float64(rng, M, N, K, with_c):
    msg = f"seed={rng.seed} M={M} N={N} K={K}"
    a8, sfa, b8, sfb = _random_operands(rng, M, N, K)
    want = _dequant64_token(a8, sfa) @ _dequant64_block(b8, sfb).T
    c = None
    if with_c:
        c = (rng.standard_normal((M, N)) * 10).astype(BF16 if M % 2 else F32)
        want = want + c.astype(np.float64)
    d32 = fp8_gemm_nt(a8, sfa, b8, sfb, c=c, out_dtype=np.float32)
    assert d32.dtype == F32 and d32.shape == (M, N), msg
    assert _relfro(d32, want) < FP32_BOUND, msg
    d16 = fp8_gemm_nt(a8, sfa, b8, sfb, c=c)
    assert d16.dtype == BF16 and d16.shape == (M, N), msg
    assert _relfro(d16.astype(np.float64), want) < BF16_BOUND, msg
    # bf16 output is exactly the fp32 result rounded once (RNE) to bf16
    np.testing.assert_array_equal(d16.view(np.uint16), d32.astype(BF16).view(np.uint16), err_msg=msg)


def test_gemm_partials_follow_documented_order(rng):
    # Re-derive the documented arithmetic with plain per-group loops and require bit equality.
    M, N, K = 3, 140, 300
    a8, sfa, b8, sfb = _random_operands(rng, M, N, K)
    a, b = a8.astype(np.float64), b8.astype(np.float64)
    acc = np.zeros((M, N), F32)
    for g in range(3):
        ks = slice(128 * g, 128 * (g + 1))
        partial = (a[:, ks] @ b[:, ks].T).astype(F32)  # exact sum, one rounding
        for n in range(N):
            scale = sfa[:, g] * sfb[n // 128, g]
            acc[:, n] = acc[:, n] + partial[:, n] * scale
    got = fp8_gemm_nt(a8, sfa, b8, sfb, out_dtype=np.float32)
    np.testing.assert_array_equal(got, acc, err_msg=f"seed={rng.seed}")


def test_gemm_saturated_inputs_no_nan():
    a = np.full((2, 256), 1e30, F32)
    a[1] = 0
    b = np.full((130, 256), -3.0, F32)
    a8, sfa = per_token_cast_to_fp8(a)
    b8, sfb = per_block_cast_to_fp8(b)
    d = fp8_gemm_nt(a8, sfa, b8, sfb, out_dtype=np.float32)
    assert np.all(np.isfinite(d)) and np.all(d[1] == 0)
    np.testing.assert_allclose(d[0], -3e30 * 256, rtol=1e-6)


def test_grouped_contiguous_matches_dense(rng):
    G, N, K = 3, 100, 200
    msg = f"seed={rng.seed}"
    counts = [5, 0, 9]
    m_indices = np.concatenate(
        [np.full(c, g, np.int32) for g, c in enumerate(counts)] + [np.full(4, -1, np.int32)])
    m_indices = m_indices[rng.permutation(m_indices.size)]  # groups need not be sorted
    Mt = m_indices.size
    a8, sfa = per_token_cast_to_fp8(rng.standard_normal((Mt, K)).astype(F32))
    b8, sfb = per_block_cast_to_fp8(rng.standard_normal((G, N, K)).astype(F32))
    for out_dtype in (BF16, np.float32):
        d = m_grouped_fp8_gemm_nt_contiguous(a8, sfa, b8, sfb, m_indices, out_dtype=out_dtype)
        assert d.shape == (Mt, N) and d.dtype == np.dtype(out_dtype), msg
        assert not np.any(d[m_indices == -1].astype(np.float64)), msg
        for g in range(G):
            rows = m_indices == g
            want = fp8_gemm_nt(a8[rows], sfa[rows], b8[g], sfb[g], out_dtype=out_dtype)
            np.testing.assert_array_equal(d[rows].view(np.uint8), want.view(np.uint8), err_msg=msg)
        # nonzero rows really got computed
        assert np.count_nonzero(d[m_indices >= 0].astype(np.float64)) > 0.9 * 14 * N, msg


def test_grouped_masked_matches_dense(rng):
    G, max_m, N, K = 4, 9, 130, 129
    msg = f"seed={rng.seed}"
    masked_m = np.array([0, 9, 1, 4], np.int32)
    a8, sfa = per_token_cast_to_fp8(rng.standard_normal((G, max_m, K)).astype(F32))
    b8, sfb = per_block_cast_to_fp8(rng.standard_normal((G, N, K)).astype(F32))
    for out_dtype in (BF16, np.float32):
        d = m_grouped_fp8_gemm_nt_masked(a8, sfa, b8, sfb, masked_m, out_dtype=out_dtype)
        assert d.shape == (G, max_m, N) and d.dtype == np.dtype(out_dtype), msg
        for g in range(G):
            m = masked_m[g]
            assert not np.any(d[g, m:].astype(np.float64)), msg
            if m:
                want = fp8_gemm_nt(a8[g, :m], sfa[g, :m], b8[g], sfb[g], out_dtype=out_dtype)
                np.testing.assert_array_equal(d[g, :m].view(np.uint8), want.view(np.uint8), err_msg=msg)
                assert np.count_nonzero(want.astype(np.float64)) > 0.9 * m * N, msg


def test_gemm_validation_names_argument():
    M, N, K = 100, 130, 7000
    a8 = np.zeros((M, K), E4M3)
    b8 = np.zeros((N, K), E4M3)
    sfa = np.ones((M, 55), F32)
    sfb = np.ones((2, 55), F32)
    fp8_gemm_nt(a8, sfa, b8, sfb)  # valid
    with pytest.raises(ValueError, match=r"sfa: expected shape \(100, 55\), got \(100, 56\)"):
        fp8_gemm_nt(a8, np.ones((M, 56), F32), b8, sfb)
    with pytest.raises(ValueError, match=r"sfb: expected shape \(2, 55\), got \(1, 55\)"):
        fp8_gemm_nt(a8, sfa, b8, np.ones((1, 55), F32))
    with pytest.raises(TypeError, match=r"a_fp8: expected dtype float8_e4m3fn, got float32"):
        fp8_gemm_nt(a8.astype(F32), sfa, b8, sfb)
    with pytest.raises(TypeError, match=r"sfb: expected dtype float32, got float64"):
        fp8_gemm_nt(a8, sfa, b8, sfb.astype(np.float64))
    with pytest.raises(ValueError, match=r"b_fp8: expected K = 7000"):
        fp8_gemm_nt(a8, sfa, np.zeros((N, 6999), E4M3), sfb)
    with pytest.raises(ValueError, match=r"a_fp8: expected a 2-D array, got shape \(7000,\)"):
        fp8_gemm_nt(a8[0], sfa, b8, sfb)
    with pytest.raises(ValueError, match=r"c: expected shape \(100, 130\), got \(130, 100\)"):
        fp8_gemm_nt(a8, sfa, b8, sfb, c=np.zeros((N, M), F32))
    with pytest.raises(TypeError, match=r"c: expected dtype float32 or bfloat16, got float16"):
        fp8_gemm_nt(a8, sfa, b8, sfb, c=np.zeros((M, N), np.float16))
    with pytest.raises(TypeError, match="out_dtype"):
        fp8_gemm_nt(a8, sfa, b8, sfb, out_dtype=np.float16)
    with pytest.raises(TypeError, match="b_fp8: expected a numpy.ndarray, got list"):
        fp8_gemm_nt(a8, sfa, [[0]], sfb)


def test_grouped_validation_names_argument():
    G, N, K = 2, 16, 128
    a8 = np.zeros((6, K), E4M3)
    sfa = np.ones((6, 1), F32)
    b8 = np.zeros((G, N, K), E4M3)
    sfb = np.ones((G, 1, 1), F32)
    with pytest.raises(ValueError, match=r"m_indices: expected values in \[-1, 2\)"):
        m_grouped_fp8_gemm_nt_contiguous(a8, sfa, b8, sfb, np.array([0, 1, 2, 0, 0, -1], np.int32))
    with pytest.raises(ValueError, match=r"m_indices: expected shape \(6,\), got \(5,\)"):
        m_grouped_fp8_gemm_nt_contiguous(a8, sfa, b8, sfb, np.zeros(5, np.int32))
    with pytest.raises(TypeError, match="m_indices: expected an integer dtype"):
        m_grouped_fp8_gemm_nt_contiguous(a8, sfa, b8, sfb, np.zeros(6, F32))
    with pytest.raises(ValueError, match=r"sfb: expected shape \(2, 1, 1\), got \(1, 1\)"):
        m_grouped_fp8_gemm_nt_contiguous(a8, sfa, b8, sfb[0], np.zeros(6, np.int32))
    a3 = np.zeros((G, 3, K), E4M3)
    sfa3 = np.ones((G, 3, 1), F32)
    with pytest.raises(ValueError, match=r"masked_m: expected values in \[0, 3\]"):
        m_grouped_fp8_gemm_nt_masked(a3, sfa3, b8, sfb, np.array([1, 4], np.int32))
    with pytest.raises(ValueError, match=r"b_fp8: expected 2 groups"):
        m_grouped_fp8_gemm_nt_masked(a3, sfa3, np.zeros((3, N, K), E4M3), np.ones((3, 1, 1), F32),
                                     np.array([1, 1], np.int32))
    with pytest.raises(ValueError, match=r"a_fp8: expected a 3-D array"):
        m_grouped_fp8_gemm_nt_masked(a8, sfa, b8, sfb, np.array([1, 1], np.int32))
