"""Every kernel configuration the library can launch compiles for sm_90a with no
register spills, no local memory, no serialized wgmma and no loads inside a wgmma batch
(compile-only: runs without a GPU)."""

from __future__ import annotations

import pytest

from fp8gemm_core import jit, sass
from fp8gemm_core.gemm import gemm_kernel_configs
from fp8gemm_core.quant import quant_kernel_configs

SHIPPED = gemm_kernel_configs() + [("tma_copy.cu", "tma_copy<2>", ""), ("tma_copy.cu", "tma_copy<3>", ""),
                                   ("group_rows.cu", "group_rows_from_indices", ""),
                                   ("scales_layout.cu", "scales_to_m_major", "")] + quant_kernel_configs()


@pytest.mark.parametrize("source,name,prelude", SHIPPED, ids=[name for _, name, _ in SHIPPED])
def test_no_spills_no_local_memory(source, name, prelude):
    compiled = jit.compile_kernel(source, name, prelude=prelude)
    jit.check_no_spills(compiled)
    assert compiled.registers > 0
    # ptxas note C7514: it made every wgmma wait for the previous one (a register of an
    # in-flight wgmma is touched), silently costing the overlap of MMA and promotion.
    serialized = [line for line in compiled.log.splitlines() if "C7514" in line]
    assert not serialized, f"{name}: wgmma serialized by ptxas:\n" + "\n".join(serialized)
    # The GEMM's scale loads belong after its four wgmma: between them, the product waiting
    # for a load holds back the last wgmma (v18, docs/perf-log.md session 9).
    inside = sass.loads_between_wgmma(compiled.cubin)
    assert inside == 0, f"{name}: {inside} LDS/FMUL between the wgmma of a batch"
