"""Source generated per kernel configuration and placed in front of a kernel file.

``wgmma`` names every accumulator register in its operand list, so an
``m64nNk32`` instruction for a given N needs an asm statement with N/2 outputs:
C++ templates cannot spell that, a few lines of Python can.
"""

from __future__ import annotations

__all__ = ["wgmma_fp8_source"]


def wgmma_fp8_source(n: int) -> str:
    """``WgmmaFp8<n>::mma(d, desc_a, desc_b, accumulate)``: one FP8 E4M3 m64{n}k32 wgmma, fp32 accumulators.

    ``accumulate`` false overwrites ``d`` (scale-d = 0), which saves zeroing it first.
    """
    if n % 8 or not 8 <= n <= 256:
        raise ValueError(f"n: expected a multiple of 8 in [8, 256], got {n}")
    regs = n // 2
    outs = ", ".join(f"%{i}" for i in range(regs))
    operands = ", ".join(f'"+f"(d[{i}])' for i in range(regs))
    return f"""template <int N> struct WgmmaFp8;
template <> struct WgmmaFp8<{n}> {{
  static __device__ __forceinline__ void mma(float (&d)[{regs}], unsigned long long desc_a,
                                             unsigned long long desc_b, bool accumulate) {{
    asm volatile(
        "{{\\n .reg .pred p;\\n setp.ne.b32 p, %{regs + 2}, 0;\\n"
        " wgmma.mma_async.sync.aligned.m64n{n}k32.f32.e4m3.e4m3 {{{outs}}}, %{regs}, %{regs + 1}, p, 1, 1;\\n}}\\n"
        : {operands}
        : "l"(desc_a), "l"(desc_b), "r"(int(accumulate)));
  }}
}};
"""
