// Small kernels for the JIT tests (tests/test_jit.py): a template, so name
// expressions and lowered (mangled) names get exercised, an extern "C" kernel
// with a plain name, and one that uses more than 48 KiB of dynamic shared
// memory, which needs the opt-in attribute set before launch.
// Self-contained: no headers, as every source under cuda/ (NVRTC from the pip
// wheel has no CUDA toolkit headers).

// A prelude may define SELFTEST_BIAS to check that Python-generated code in
// front of a source reaches the compiler (and the cache key).
#ifndef SELFTEST_BIAS
#define SELFTEST_BIAS 0.0f
#endif

// x[i] = x[i] * a + SELFTEST_BIAS for the first N elements.
template <int N>
__global__ void scale_kernel(float* x, float a) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < N) x[i] = x[i] * a + SELFTEST_BIAS;
}

// x[i] += 1 for i < n.
extern "C" __global__ void add_one(float* x, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] += 1.0f;
}

// One block: fills `count` floats of dynamic shared memory with x[0..count),
// then writes them back reversed, x[i] = old x[count - 1 - i].
extern "C" __global__ void smem_reverse(float* x, int count) {
  extern __shared__ float buf[];
  for (int i = threadIdx.x; i < count; i += blockDim.x) buf[i] = x[i];
  __syncthreads();
  for (int i = threadIdx.x; i < count; i += blockDim.x) x[i] = buf[count - 1 - i];
}
