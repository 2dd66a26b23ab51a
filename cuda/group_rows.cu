// Row ranges of the groups of a contiguous M-grouped GEMM, from DeepGEMM's per-row
// form: m_indices[r] is row r's group, or -1 for a padding row. Writes starts[g] and
// ends[g], the one run of rows of group g ([0, 0) for a group with no rows), which is
// what the grouped GEMM kernel walks. starts, ends and runs must be zeroed first.
//
// A malformed index array cannot be reported without synchronizing with the host,
// and computing on it would be silently wrong, so it traps: a group index outside
// [-1, num_groups) or a group whose rows are not one contiguous run makes the launch
// fail (the CUDA context is then unusable). Validate on the host if unsure.
extern "C" __global__ void group_rows_from_indices(const int* __restrict__ m_indices, int rows,
                                                   int num_groups, int* starts, int* ends, int* runs) {
  for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += gridDim.x * blockDim.x) {
    const int g = m_indices[r];
    if (g < -1 || g >= num_groups) __trap();
    if (g < 0) continue;
    if (r == 0 || m_indices[r - 1] != g) {
      starts[g] = r;
      if (atomicAdd(runs + g, 1) != 0) __trap();  // a second run of the same group
    }
    if (r == rows - 1 || m_indices[r + 1] != g) ends[g] = r + 1;
  }
}
