// Products of float activations with GGML block-quantized weights, repacked four rows at a time.
//
//   y (M, N) = x (M, K) @ W^T,  W (N, K) in blocks of 32
//
// Repacked layout ("x4"): rows are taken four at a time (N a multiple of 4); for each group of
// four rows, each block position b holds the four rows' block b side by side, scales first:
//   Q4_0x4  d[4] f16 | qs[4][16]                                   72 bytes
//   Q4_1x4  d[4] f16 | m[4] f16 | qs[4][16]                        80 bytes
//   Q8_0x4  d[4] f16 | qs[4][32]                                  136 bytes
//   K8x4    d[4] f16 | sc[4][2] int8 | m[4] f32 | qs[4][32] int8   160 bytes
// (group g, block b) is at (g * blocks_per_row + b) * size. For Q4_0, Q4_1 and Q8_0 these are
// the file's bytes in another order (tests/references.py's repack is the permutation). The
// K-quants, whose super-blocks of 256 hold eight blocks of 32 with 6-bit scales, are rewritten
// once at load (`repack_group`):
//   Q4_K -> Q4_1x4: each block's scale d * sc and offset -dmin * m rounded to f16 (a relative
//           2^-11 of the scale; the 4-bit values are kept)
//   Q5_K -> K8x4:   d, sc twice, m = -dmin * m: exact
//   Q6_K -> K8x4:   d, the two 16-value scales, m = 0, q - 32: exact
//   Q5_0, Q5_1 -> K8x4: d, scales 1, m = 0 or m, the 5-bit values (Q5_0's less 16): exact
// K8 (not a GGML type) weighs each half block by its own integer scale: w = d * sc[i / 16] * q + m.
// So one load brings the four rows' scales, one conversion makes them floats, and one
// horizontal add turns four rows' integer sums into one vector.
//
// Activations are quantized once per call, per block of 32, to int8 with a float scale d and the
// block's sum s = d * sum(q) (llama.cpp's Q8_0/Q8_1 activations), so every weight block meets an
// integer dot product:
//   Q4_0  w = dw * (q - 8)    block dot = dw * dx * sum(q qx) - 8 dw * sx
//   Q4_1  w = dw * q + mw     block dot = dw * dx * sum(q qx) + mw * sx
//   Q8_0  w = dw * q          block dot = dw * dx * sum(q qx)
//   K8    w = dw * sc q + mw  block dot = dw * dx * (sc0 sum(q qx, first 16) + sc1 sum(rest)) + mw * sx
// A group's blocks stay in L1 while up to M activation rows meet them, so W is read from
// memory once per call whatever M is.
#pragma once

#include <cstddef>
#include <cstdint>

namespace autan {

constexpr int QBLOCK = 32;
constexpr int GROUP_ROWS = 4;

// The kernels' formats: GGML's type ids (ggml.h) where the file's blocks are kept, and K8.
enum class QType : int { Q4_0 = 2, Q4_1 = 3, Q8_0 = 8, K8 = 1008 };

// GGML's ids of the file types that repack_rows takes.
enum class FileType : int { Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q4_K = 12, Q5_K = 13, Q6_K = 14 };

bool supported(int qtype);  // a kernel format
bool repackable(int file_type);
QType kernel_type(FileType file);  // the format a file type is repacked into
size_t file_block_bytes(FileType file);  // bytes of one block of the file (32 or 256 values)
int64_t file_block_values(FileType file);
size_t group_block_bytes(QType type);  // four rows' blocks of 32, repacked

// Rows 4g .. 4g + 3 (pointers to the file's rows of `values` values) as repacked group g: `out`
// holds group_block_bytes(kernel_type(file)) * values / 32 bytes.
void repack_group(FileType file, const uint8_t* const* rows, int64_t values, uint8_t* out);

struct QuantizedRows {  // activations: M rows of K int8, with per-block scale and scaled sum
  const int8_t* q;
  const float* d;
  const float* s;
  int64_t k;
};

// x (m, k) float32 -> q (m, k) int8, d and s (m, k / 32): round to nearest, ties to even.
void quantize_rows(const float* x, int64_t m, int64_t k, int8_t* q, float* d, float* s);

// y (m, ·) columns [4 g0, 4 g1) = quantized x (m rows) times the row groups [g0, g1) of the
// repacked W; y's row stride is `ldy`.
void qgemm_groups(QType type, const uint8_t* w, int64_t g0, int64_t g1, const QuantizedRows& x, int64_t m, float* y,
                  int64_t ldy);

// The row groups [g0, g1) of a repacked W as float32 rows (4 (g1 - g0), k), as GGML defines the
// values: Q4_0 d (q - 8), Q4_1 d q + m, Q8_0 d q, in float32 (exact but for Q4_1's addition).
void dequantize_groups(QType type, const uint8_t* w, int64_t g0, int64_t g1, int64_t k, float* out);

}  // namespace autan
