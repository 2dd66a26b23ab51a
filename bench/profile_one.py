"""Run one GEMM shape a few times (for Nsight Compute): PYTHONPATH=. python bench/profile_one.py M N K"""

import sys

import ml_dtypes
import numpy as np

import fp8gemm_core as fg
from fp8gemm_core import driver
from fp8gemm_core.arrays import DeviceArray, transposed

m, n, k = (int(v) for v in sys.argv[1:4])
if "--no-cluster" in sys.argv:
    from fp8gemm_core import heuristics
    heuristics._cluster_m = lambda m_blocks, num_sms: 1
rng = np.random.default_rng()
sys.path.insert(0, "bench")
from timing import random_fp8_bytes  # noqa: E402

A = DeviceArray.from_numpy(random_fp8_bytes(rng, (m, k)), 0, 0)
B = DeviceArray.from_numpy(random_fp8_bytes(rng, (n, k)), 0, 0)
SA = transposed(DeviceArray.from_numpy(rng.uniform(0.5, 2, ((k + 127) // 128, m)).astype(np.float32) / 448, 0, 0))
SB = DeviceArray.from_numpy(rng.uniform(0.5, 2, ((n + 127) // 128, (k + 127) // 128)).astype(np.float32) / 448, 0, 0)
out = DeviceArray.empty((m, n), ml_dtypes.bfloat16, 0, 0)
for _ in range(3):
    fg.fp8_gemm_nt((A, SA), (B, SB), out)
with driver.get_device(0).activate():
    driver.stream_synchronize(0)
