// The file's blocks rewritten into the kernels' four-row groups (formats.h), once at load, and
// the groups read back as float32.
//
// For Q4_0, Q4_1 and Q8_0 a group's bytes are the file's in another order. The K-quants, whose
// super-blocks of 256 hold eight blocks of 32 with 6-bit scales, and Q5_0 and Q5_1 are rewritten
// (`repack_group`):
//   Q4_K -> Q4_1x4: each block's scale d * sc and offset -dmin * m rounded to f16 (a relative
//           2^-11 of the scale; the 4-bit values are kept)
//   Q5_K -> K8x4:   d, sc twice, m = -dmin * m: exact
//   Q6_K -> K8x4:   d, the two 16-value scales, m = 0, q - 32: exact
//   Q5_0, Q5_1 -> K8x4: d, scales 1, m = 0 or m, the 5-bit values (Q5_0's less 16): exact
#pragma once

#include <cstdint>

#include "formats.h"

namespace autan {

// Rows 4g .. 4g + 3 (pointers to the file's rows of `values` values) as repacked group g: `out`
// holds group_block_bytes(kernel_type(file)) * values / 32 bytes.
void repack_group(FileType file, const uint8_t* const* rows, int64_t values, uint8_t* out);

// The row groups [g0, g1) of a repacked W as float32 rows (4 (g1 - g0), k), as GGML defines the
// values: Q4_0 d (q - 8), Q4_1 d q + m, Q8_0 d q, in float32 (exact but for Q4_1's addition).
void dequantize_groups(QType type, const uint8_t* w, int64_t g0, int64_t g1, int64_t k, float* out);

}  // namespace autan
