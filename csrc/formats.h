// The kernels' weight formats and the GGML file types they are made from: type ids, block sizes,
// where each part of a repacked block is, and the float16 conversions every tier shares.
//
// Repacked layout ("x4"): rows are taken four at a time (N a multiple of 4); for each group of
// four rows, each block position b holds the four rows' block b side by side, scales first:
//   Q4_0x4  d[4] f16 | qs[4][16]                                   72 bytes
//   Q4_1x4  d[4] f16 | m[4] f16 | qs[4][16]                        80 bytes
//   Q8_0x4  d[4] f16 | qs[4][32]                                  136 bytes
//   K8x4    d[4] f16 | sc[4][2] int8 | m[4] f32 | qs[4][32] int8   160 bytes
// (group g, block b) is at (g * blocks_per_row + b) * size. For Q4_0, Q4_1 and Q8_0 these are
// the file's bytes in another order (tests/references.py's repack is the permutation); the
// K-quants, Q5_0 and Q5_1 are rewritten once at load (repack.h).
// K8 (not a GGML type) weighs each half block by its own integer scale: w = d * sc[i / 16] * q + m.
// So one load brings the four rows' scales, one conversion makes them floats, and one
// horizontal add turns four rows' integer sums into one vector.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include <c10/util/Half.h>

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

// Where the parts of a four-row block are.
template <QType T>
struct Group {
  static constexpr bool bytes = T == QType::Q8_0 || T == QType::K8;  // a byte per value, not a nibble
  static constexpr int scales = T == QType::Q4_1 ? 16 : T == QType::K8 ? 32 : 8;  // bytes before the quants
  static constexpr int quant_bytes = bytes ? 32 : 16;  // per row
  static constexpr int size = scales + 4 * quant_bytes;
};

constexpr int K8_SC = 8, K8_M = 16;  // where a K8 block's sub-block scales and offsets are

inline float half_to_float(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      uint32_t m = mantissa;
      do {
        ++e;
        m <<= 1;
      } while ((m & 0x400) == 0);
      bits = sign | ((127 - 15 - e) << 23) | ((m & 0x3FF) << 13);
    }
  } else if (exponent == 31) {
    bits = sign | 0x7F800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t float_to_half(float f) {  // round to nearest, ties to even (c10's conversion)
  return c10::Half(f).x;
}

inline uint16_t f16_at(const uint8_t* p, int i) {
  uint16_t h;
  std::memcpy(&h, p + 2 * i, 2);
  return h;
}

inline float f32_at(const uint8_t* p, int i) {
  float f;
  std::memcpy(&f, p + 4 * i, 4);
  return f;
}

}  // namespace autan
