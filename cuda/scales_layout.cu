// Copies per-token scales sfa [groups, rows, cols] (fp32, any element strides; typically
// the row-major [M, ceil(K/128)] a quantizer writes, groups = 1) into the M-major layout
// the GEMMs read fastest: out[g * out_stride_g + c * ld + r] = sfa[g][r][c]. With M-major
// scales a 128- or 256-row tile takes its A scales of one K block as one contiguous bulk
// copy; row-major ones cost one 32-byte L2 sector per row per K block (measured 11-13% of
// large GEMMs, docs/perf-log.md).
//
// One 32 x 32 tile of one group per 256-thread block, through shared memory, so that both
// the reads (along a row) and the writes (along a column of sfa) are coalesced.
extern "C" __global__ void __launch_bounds__(256) scales_to_m_major(
    const float* __restrict__ sfa, long long stride_g, long long stride_r, long long stride_c,
    int rows, int cols, float* __restrict__ out, int ld, long long out_stride_g) {
  __shared__ float tile[32][33];  // +1: no bank conflicts on the transposed read
  const int tiles_c = (cols + 31) / 32, tiles = (rows + 31) / 32 * tiles_c;
  const int g = blockIdx.x / tiles, t = blockIdx.x % tiles;
  const int r0 = t / tiles_c * 32, c0 = t % tiles_c * 32;
  const int x = threadIdx.x % 32, y = threadIdx.x / 32;
  sfa += g * stride_g;
  out += g * out_stride_g;
  for (int i = y; i < 32; i += 8) {
    const int r = r0 + i, c = c0 + x;
    if (r < rows && c < cols) tile[i][x] = sfa[r * stride_r + c * stride_c];
  }
  __syncthreads();
  for (int i = y; i < 32; i += 8) {
    const int c = c0 + i, r = r0 + x;
    if (r < rows && c < cols) out[(long long)c * ld + r] = tile[x][i];
  }
}
