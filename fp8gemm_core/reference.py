"""Numpy reference of fp8gemm_core's math: the ground truth every GPU kernel is checked against.

Contract (BRIEF.md section 1):

* FP8 is E4M3 "fn" (``ml_dtypes.float8_e4m3fn``): no infinities, max finite 448.
* Activations A [M, K]: one fp32 scale per row per 128-wide K group (``per_token_cast_to_fp8``).
* Weights B [N, K]: one fp32 scale per 128x128 block (``per_block_cast_to_fp8``).
* ``D[m, n] = sum_g sfa[m, g] * sfb[n // 128, g] * (sum_{k in g} A8[m, k] * B8[n, k])`` (``fp8_gemm_nt``).

The quantizers are meant to be matched BIT-EXACTLY by GPU kernels, so every arithmetic step below is a
single fp32 IEEE operation in a fixed order, written down in the comments. The GEMM is matched to a
tolerance (tensor-core accumulation order is not ours to fix), but its order is documented as well.

Inputs are assumed finite; the quantizers reject NaN/inf rather than produce NaN.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

__all__ = [
    "FP8_MAX",
    "AMAX_FLOOR",
    "GROUP",
    "per_token_cast_to_fp8",
    "per_block_cast_to_fp8",
    "dequantize_per_token",
    "dequantize_per_block",
    "fp8_gemm_nt",
    "m_grouped_fp8_gemm_nt_contiguous",
    "m_grouped_fp8_gemm_nt_masked",
]

FP8_MAX = 448.0  # largest finite float8_e4m3fn
AMAX_FLOOR = 1e-4  # amax is clamped to this (as fp32) so no scale is 0 and 0/0 never happens
GROUP = 128  # K group of the scales (and N block of B's scales) that the GEMM assumes

E4M3 = np.dtype(ml_dtypes.float8_e4m3fn)
BF16 = np.dtype(ml_dtypes.bfloat16)
_F32 = np.dtype(np.float32)
_INPUT_DTYPES = (_F32, np.dtype(np.float16), BF16)

# Exact e4m3 -> float64 upcast by table lookup on the raw byte (faster than a dtype conversion).
_E4M3_TO_F64 = np.arange(256, dtype=np.uint8).view(E4M3).astype(np.float64)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# ----------------------------------------------------------------------------------------------
# Validation helpers: every message names the argument, what was expected and what was given.
# ----------------------------------------------------------------------------------------------

def _check_array(name: str, x, dtypes, ndims=None, shape=None) -> None:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(x).__name__}")
    dtypes = tuple(np.dtype(d) for d in dtypes)
    if x.dtype not in dtypes:
        want = " or ".join(str(d) for d in dtypes)
        raise TypeError(f"{name}: expected dtype {want}, got {x.dtype}")
    if ndims is not None and x.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name}: expected a {want} array, got shape {x.shape} ({x.ndim}-D)")
    if shape is not None and tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(x.shape)}")


def _check_positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
        raise ValueError(f"{name}: expected a positive int, got {v!r}")
    return int(v)


def _check_int_array(name: str, x, shape) -> None:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(x).__name__}")
    if x.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer dtype (int32), got {x.dtype}")
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(x.shape)}")


def _check_out_dtype(out_dtype) -> np.dtype:
    try:
        dt = np.dtype(out_dtype)
    except TypeError:
        dt = None
    if dt not in (BF16, _F32):
        raise TypeError(f"out_dtype: expected ml_dtypes.bfloat16 or numpy.float32, got {out_dtype!r}")
    return dt


def _input_to_f32(name: str, x, ndims) -> np.ndarray:
    _check_array(name, x, _INPUT_DTYPES, ndims=ndims)
    x32 = x.astype(np.float32)  # exact for fp16 and bf16
    if not np.isfinite(x32).all():
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return x32


# ----------------------------------------------------------------------------------------------
# Quantization
# ----------------------------------------------------------------------------------------------

def _scale_from_amax(amax: np.ndarray, ue8m0: bool) -> np.ndarray:
    """fp32 amax (any shape, >= 0) -> fp32 scale. Order: floor, then one fp32 division by 448."""
    amax = np.maximum(amax, np.float32(AMAX_FLOOR))  # 1e-4 as fp32, i.e. 9.99999974738e-05
    sf = amax / np.float32(FP8_MAX)  # fp32 IEEE division, correctly rounded
    if ue8m0:
        # 2**ceil(log2(sf)) exactly: sf = mant * 2**exp with mant in [0.5, 1); mant == 0.5 means sf is
        # already a power of two (2**(exp-1)), anything else rounds up to 2**exp. No log2 rounding.
        mant, exp = np.frexp(sf)
        exp = np.where(mant == np.float32(0.5), exp - 1, exp)
        sf = np.ldexp(np.float32(1.0), exp).astype(np.float32)
    return sf


def _e4m3_saturate(x_f32: np.ndarray) -> np.ndarray:
    """fp32 -> e4m3 with saturation: clip to [-448, 448], then round to nearest even.

    The clip is needed: ml_dtypes' float32 -> float8_e4m3fn cast rounds |x| <= 464 to 448 but
    returns NaN above 464 (e4m3fn has no infinity).
    """
    return np.clip(x_f32, np.float32(-FP8_MAX), np.float32(FP8_MAX)).astype(E4M3)


def _expand(sf: np.ndarray, axis: int, size: int, reps: int) -> np.ndarray:
    """Repeat each scale `reps` times along `axis` and cut to `size` (the last group may be short)."""
    return np.take(np.repeat(sf, reps, axis=axis), np.arange(size), axis=axis)


def _pad_to(x: np.ndarray, axis: int, multiple: int) -> np.ndarray:
    """Zero-pad `axis` to a multiple; zeros never change |x|'s max (amax >= 0 anyway)."""
    pad = _ceil_div(x.shape[axis], multiple) * multiple - x.shape[axis]
    if pad == 0:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, pad)
    return np.pad(x, widths)


def per_token_cast_to_fp8(x: np.ndarray, *, group: int = GROUP, ue8m0: bool = False):
    """Quantize activations with one scale per row per 1 x `group` slice of K.

    Args:
        x: [M, K] or [G, M, K], float32 / float16 / ml_dtypes.bfloat16, finite.
        group: K group width (128 for the GEMM). If K % group != 0 the last group is shorter.
        ue8m0: round each scale up to a power of two (2**ceil(log2(amax/448)), exact).

    Returns:
        (x_fp8, sf): x_fp8 same shape as x, ml_dtypes.float8_e4m3fn;
        sf float32 [..., M, ceil(K/group)].

    Arithmetic (all fp32, in this order): amax = max|x| over the slice; amax = max(amax, fp32(1e-4));
    sf = amax / 448 (then the UE8M0 round-up if asked); x_fp8 = e4m3_rne(clip(x / sf, -448, 448)),
    where x / sf is an IEEE fp32 division (not a multiply by 1/sf).
    """
    group = _check_positive_int("group", group)
    x32 = _input_to_f32("x", x, ndims=(2, 3))
    K = x32.shape[-1]
    n_groups = _ceil_div(K, group)
    xp = _pad_to(np.abs(x32), -1, group)
    amax = xp.reshape(*x32.shape[:-1], n_groups, group).max(axis=-1, initial=np.float32(0))
    sf = _scale_from_amax(amax, ue8m0)
    x_fp8 = _e4m3_saturate(x32 / _expand(sf, -1, K, group))
    return x_fp8, sf


def per_block_cast_to_fp8(x: np.ndarray, *, block: int = GROUP, ue8m0: bool = False):
    """Quantize weights with one scale per `block` x `block` tile.

    Args:
        x: [N, K] or [G, N, K], float32 / float16 / ml_dtypes.bfloat16, finite.
        block: tile edge (128 for the GEMM). Edge tiles are shorter when N or K is not a multiple.
        ue8m0: round each scale up to a power of two (exact, see per_token_cast_to_fp8).

    Returns:
        (x_fp8, sf): x_fp8 same shape as x, ml_dtypes.float8_e4m3fn;
        sf float32 [..., ceil(N/block), ceil(K/block)].

    Arithmetic: as per_token_cast_to_fp8, with amax taken over the whole tile.
    """
    block = _check_positive_int("block", block)
    x32 = _input_to_f32("x", x, ndims=(2, 3))
    N, K = x32.shape[-2:]
    nb, kb = _ceil_div(N, block), _ceil_div(K, block)
    xp = _pad_to(_pad_to(np.abs(x32), -1, block), -2, block)
    tiles = xp.reshape(*x32.shape[:-2], nb, block, kb, block)
    amax = tiles.max(axis=(-3, -1), initial=np.float32(0))
    sf = _scale_from_amax(amax, ue8m0)
    sf_full = _expand(_expand(sf, -1, K, block), -2, N, block)
    x_fp8 = _e4m3_saturate(x32 / sf_full)
    return x_fp8, sf


def dequantize_per_token(x_fp8: np.ndarray, sf: np.ndarray, group: int = GROUP) -> np.ndarray:
    """Inverse of per_token_cast_to_fp8: float32 x_fp8 * sf (one fp32 multiply, so rounded).

    x_fp8: [..., M, K] float8_e4m3fn; sf: [..., M, ceil(K/group)] float32. Returns float32 [..., M, K].
    """
    group = _check_positive_int("group", group)
    _check_array("x_fp8", x_fp8, (E4M3,), ndims=(2, 3))
    K = x_fp8.shape[-1]
    _check_array("sf", sf, (_F32,), shape=(*x_fp8.shape[:-1], _ceil_div(K, group)))
    return x_fp8.astype(np.float32) * _expand(sf, -1, K, group)


def dequantize_per_block(x_fp8: np.ndarray, sf: np.ndarray, block: int = GROUP) -> np.ndarray:
    """Inverse of per_block_cast_to_fp8: float32 x_fp8 * sf (one fp32 multiply, so rounded).

    x_fp8: [..., N, K] float8_e4m3fn; sf: [..., ceil(N/block), ceil(K/block)] float32.
    Returns float32 [..., N, K].
    """
    block = _check_positive_int("block", block)
    _check_array("x_fp8", x_fp8, (E4M3,), ndims=(2, 3))
    N, K = x_fp8.shape[-2:]
    _check_array("sf", sf, (_F32,), shape=(*x_fp8.shape[:-2], _ceil_div(N, block), _ceil_div(K, block)))
    return x_fp8.astype(np.float32) * _expand(_expand(sf, -1, K, block), -2, N, block)


# ----------------------------------------------------------------------------------------------
# GEMM
# ----------------------------------------------------------------------------------------------

def _gemm_core(a_fp8, sfa, b_fp8, sfb, c, out_dtype) -> np.ndarray:
    """D = A8 B8^T with per-group promotion; arguments already validated.

    Per K group g (in increasing g):
      partial = sum_{k in g} A8[m, k] * B8[n, k], computed in float64 and rounded once to fp32.
        Why float64: e4m3 products are multiples of 2**-18 below 2**18, so a sum of <= 128 of them fits
        in 43 bits < 53: the float64 sum is EXACT in any summation order, and the fp32 partial is the
        correctly rounded true group sum. A float32 matmul would instead depend on the BLAS's order.
        (The GPU's tensor cores may round differently; GEMMs are compared to a tolerance, not bit-exactly.)
      scale   = sfa[m, g] * sfb[n // 128, g]            (one fp32 multiply)
      acc     = acc + partial * scale                    (fp32 multiply, then fp32 add; no FMA)
    Then acc = acc + fp32(c) if c is given, then one round-to-nearest-even cast to out_dtype.
    Only [M, 128] / [N, 128] slices and [M, N] buffers exist at a time, never [M, N, K].
    """
    M, K = a_fp8.shape
    N = b_fp8.shape[0]
    a_u8, b_u8 = a_fp8.view(np.uint8), b_fp8.view(np.uint8)
    sfb_n = _expand(sfb, 0, N, GROUP)  # [N, n_groups]: each column n's block scale
    acc = np.zeros((M, N), np.float32)
    partial64 = np.empty((M, N), np.float64)
    partial = np.empty((M, N), np.float32)
    scale = np.empty((M, N), np.float32)
    for g in range(_ceil_div(K, GROUP)):
        k0, k1 = g * GROUP, min(K, (g + 1) * GROUP)
        a_g = _E4M3_TO_F64[a_u8[:, k0:k1]]
        b_g = _E4M3_TO_F64[b_u8[:, k0:k1]]
        np.matmul(a_g, b_g.T, out=partial64)
        partial[...] = partial64  # the single fp32 rounding of the exact group sum
        np.multiply(sfa[:, g, None], sfb_n[None, :, g], out=scale)
        np.multiply(partial, scale, out=partial)
        np.add(acc, partial, out=acc)
    if c is not None:
        np.add(acc, c.astype(np.float32), out=acc)
    return acc if out_dtype == _F32 else acc.astype(out_dtype)


def _check_gemm_args(a_fp8, sfa, b_fp8, sfb, *, grouped: str | None = None):
    """Validate A/B/scales; grouped is None (dense), 'contiguous' or 'masked'. Returns (M, N, K)."""
    lead = () if grouped is None else ("G",)
    a_nd = 3 if grouped == "masked" else 2
    b_nd = 2 if grouped is None else 3
    _check_array("a_fp8", a_fp8, (E4M3,), ndims=(a_nd,))
    _check_array("b_fp8", b_fp8, (E4M3,), ndims=(b_nd,))
    M, K = a_fp8.shape[-2:]
    N, Kb = b_fp8.shape[-2:]
    if Kb != K:
        raise ValueError(f"b_fp8: expected K = {K} (a_fp8's last dim) in shape {(*lead, N, K)}, "
                         f"got {tuple(b_fp8.shape)}")
    if grouped == "masked" and a_fp8.shape[0] != b_fp8.shape[0]:
        raise ValueError(f"b_fp8: expected {a_fp8.shape[0]} groups (a_fp8's first dim), "
                         f"got shape {tuple(b_fp8.shape)}")
    nk = _ceil_div(K, GROUP)
    _check_array("sfa", sfa, (_F32,), shape=(*a_fp8.shape[:-1], nk))
    _check_array("sfb", sfb, (_F32,), shape=(*b_fp8.shape[:-2], _ceil_div(N, GROUP), nk))
    return M, N, K


def fp8_gemm_nt(a_fp8: np.ndarray, sfa: np.ndarray, b_fp8: np.ndarray, sfb: np.ndarray, *,
                c: np.ndarray | None = None, out_dtype=ml_dtypes.bfloat16) -> np.ndarray:
    """D = (A8 * sfa) @ (B8 * sfb)^T (+ C), the reference of the dense kernel.

    Args:
        a_fp8: [M, K] float8_e4m3fn (from per_token_cast_to_fp8).
        sfa:   [M, ceil(K/128)] float32.
        b_fp8: [N, K] float8_e4m3fn, "NT": B stored N by K (from per_block_cast_to_fp8).
        sfb:   [ceil(N/128), ceil(K/128)] float32.
        c:     optional [M, N] float32 or bfloat16, added in fp32 after the product.
        out_dtype: ml_dtypes.bfloat16 (default) or numpy.float32.

    Returns:
        D [M, N] of out_dtype. Arithmetic order: see _gemm_core (per-group exact partial rounded to
        fp32, fp32 scale = sfa * sfb, acc += partial * scale, then + C, then one cast).
    """
    out_dtype = _check_out_dtype(out_dtype)
    M, N, _ = _check_gemm_args(a_fp8, sfa, b_fp8, sfb)
    if c is not None:
        _check_array("c", c, (_F32, BF16), shape=(M, N))
    return _gemm_core(a_fp8, sfa, b_fp8, sfb, c, out_dtype)


def m_grouped_fp8_gemm_nt_contiguous(a_fp8: np.ndarray, sfa: np.ndarray, b_fp8: np.ndarray,
                                     sfb: np.ndarray, m_indices: np.ndarray, *,
                                     out_dtype=ml_dtypes.bfloat16) -> np.ndarray:
    """M-grouped GEMM, rows of all groups concatenated: D[m] = A[m] @ B[m_indices[m]]^T.

    Args:
        a_fp8: [M_total, K] float8_e4m3fn; sfa: [M_total, ceil(K/128)] float32.
        b_fp8: [G, N, K] float8_e4m3fn;   sfb: [G, ceil(N/128), ceil(K/128)] float32.
        m_indices: [M_total] int32, each row's group in [0, G), or -1 for a padding row.
        out_dtype: ml_dtypes.bfloat16 (default) or numpy.float32.

    Returns:
        D [M_total, N] of out_dtype; padding rows (-1) are 0. Each group is one dense fp8_gemm_nt
        computation on its rows (rows are independent, so the result does not depend on the grouping).
    """
    out_dtype = _check_out_dtype(out_dtype)
    M, N, _ = _check_gemm_args(a_fp8, sfa, b_fp8, sfb, grouped="contiguous")
    G = b_fp8.shape[0]
    _check_int_array("m_indices", m_indices, (M,))
    if M and (m_indices.min() < -1 or m_indices.max() >= G):
        raise ValueError(f"m_indices: expected values in [-1, {G}) (G = {G} groups), "
                         f"got min {m_indices.min()}, max {m_indices.max()}")
    out = np.zeros((M, N), out_dtype)
    for g in range(G):
        rows = np.flatnonzero(m_indices == g)
        if rows.size:
            out[rows] = fp8_gemm_nt(a_fp8[rows], sfa[rows], b_fp8[g], sfb[g], out_dtype=out_dtype)
    return out


def m_grouped_fp8_gemm_nt_masked(a_fp8: np.ndarray, sfa: np.ndarray, b_fp8: np.ndarray,
                                 sfb: np.ndarray, masked_m: np.ndarray, *,
                                 out_dtype=ml_dtypes.bfloat16) -> np.ndarray:
    """M-grouped GEMM with per-group row counts: D[g, :masked_m[g]] = A[g, :masked_m[g]] @ B[g]^T.

    Args:
        a_fp8: [G, max_m, K] float8_e4m3fn; sfa: [G, max_m, ceil(K/128)] float32.
        b_fp8: [G, N, K] float8_e4m3fn;     sfb: [G, ceil(N/128), ceil(K/128)] float32.
        masked_m: [G] int (int32 on the GPU), 0 <= masked_m[g] <= max_m.
        out_dtype: ml_dtypes.bfloat16 (default) or numpy.float32.

    Returns:
        D [G, max_m, N] of out_dtype; rows >= masked_m[g] are 0. Same per-group math as fp8_gemm_nt.
    """
    out_dtype = _check_out_dtype(out_dtype)
    max_m, N, _ = _check_gemm_args(a_fp8, sfa, b_fp8, sfb, grouped="masked")
    G = b_fp8.shape[0]
    _check_int_array("masked_m", masked_m, (G,))
    if G and (masked_m.min() < 0 or masked_m.max() > max_m):
        raise ValueError(f"masked_m: expected values in [0, {max_m}] (max_m = a_fp8.shape[1]), "
                         f"got min {masked_m.min()}, max {masked_m.max()}")
    out = np.zeros((G, max_m, N), out_dtype)
    for g in range(G):
        m = int(masked_m[g])
        if m:
            out[g, :m] = fp8_gemm_nt(a_fp8[g, :m], sfa[g, :m], b_fp8[g], sfb[g], out_dtype=out_dtype)
    return out
