"""fp8gemm_core: FP8 GEMMs with fine-grained scaling for NVIDIA Hopper (sm_90a).

Pure Python over cuda-python: kernels are compiled at run time with NVRTC (and
cached on disk), launched on raw device pointers on the caller's stream. Arrays
come in through DLPack or ``__cuda_array_interface__`` (PyTorch, JAX, CuPy) or
as numpy arrays on the host. No framework is imported by the package.
"""

from . import reference
from .arrays import DeviceArray
from .driver import CudaError, CudaUnavailableError, UnsupportedDeviceError, is_available
from .gemm import fp8_gemm_nt
from .grouped import (get_m_alignment_for_contiguous_layout, m_grouped_fp8_gemm_nt_contiguous,
                      m_grouped_fp8_gemm_nt_masked)
from .heuristics import get_num_sms, set_num_sms
from .quant import per_block_cast_to_fp8, per_token_cast_to_fp8

__version__ = "0.1.0"

__all__ = [
    "fp8_gemm_nt", "m_grouped_fp8_gemm_nt_contiguous", "m_grouped_fp8_gemm_nt_masked",
    "get_m_alignment_for_contiguous_layout", "per_token_cast_to_fp8", "per_block_cast_to_fp8",
    "set_num_sms", "get_num_sms", "DeviceArray", "reference", "is_available",
    "CudaError", "CudaUnavailableError", "UnsupportedDeviceError", "__version__",
]
