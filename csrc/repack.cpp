// Repacking the file's blocks into four-row groups, and reading groups back as floats (repack.h).

#include "repack.h"

#include <cstring>

namespace autan {
namespace {

// Sub-block j's 6-bit scale and min in a Q4_K/Q5_K super-block's 12 scale bytes (ggml's
// get_scale_min_k4): scales and mins 0-3 in the low 6 bits of bytes 0-3 and 4-7; 4-7 keep
// their low 4 bits in bytes 8-11 and their top 2 in the top bits of bytes 0-3 (scales), 4-7 (mins).
void k_scale_min(const uint8_t* q, int j, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Block j (of eight) of a K-quant super-block, or a Q5_0/Q5_1 block (j = 0), as K8: d, the two
// half-block scales, m, 32 values.
void k8_block(FileType file, const uint8_t* src, int j, uint8_t* d, int8_t* sc, float& m, int8_t* q) {
  if (file == FileType::Q5_0 || file == FileType::Q5_1) {  // d | (m) | qh: bit e for value e | qs
    const bool offset = file == FileType::Q5_1;
    const uint8_t *qh = src + (offset ? 4 : 2), *qs = qh + 4;
    uint32_t high;
    std::memcpy(&high, qh, 4);
    for (int e = 0; e < QBLOCK; ++e) {
      const int low = e < 16 ? qs[e] & 0xF : qs[e - 16] >> 4;
      q[e] = static_cast<int8_t>((low | ((high >> e) & 1) << 4) - (offset ? 0 : 16));
    }
    sc[0] = sc[1] = 1;
    std::memcpy(d, src, 2);
    m = offset ? half_to_float(f16_at(src, 1)) : 0.0f;
    return;
  }
  if (file == FileType::Q6_K) {  // ql[128] | qh[64] | scales[16] int8 | d: ggml's dequantize_row_q6_K
    const int half = j / 4, part = j % 4;  // a half of 128 values holds four blocks
    const uint8_t *ql = src + 64 * half + 32 * (part % 2), *qh = src + 128 + 32 * half;
    for (int e = 0; e < QBLOCK; ++e) {
      const int low = part < 2 ? ql[e] & 0xF : ql[e] >> 4, high = (qh[e] >> (2 * part)) & 3;
      q[e] = static_cast<int8_t>((low | high << 4) - 32);
    }
    sc[0] = static_cast<int8_t>(src[192 + 2 * j]);
    sc[1] = static_cast<int8_t>(src[192 + 2 * j + 1]);
    std::memcpy(d, src + 208, 2);
    m = 0.0f;
    return;
  }
  // Q5_K: d | dmin | scales[12] | qh[32] | qs[128]
  int scale, min;
  k_scale_min(src + 4, j, scale, min);
  const uint8_t *qs = src + 48 + 32 * (j / 2), *qh = src + 16;
  for (int e = 0; e < QBLOCK; ++e) {
    q[e] = static_cast<int8_t>(((qs[e] >> (4 * (j % 2))) & 0xF) | ((qh[e] >> j) & 1) << 4);
  }
  sc[0] = sc[1] = static_cast<int8_t>(scale);
  std::memcpy(d, src, 2);
  m = -(half_to_float(f16_at(src, 1)) * static_cast<float>(min));
}

}  // namespace

void repack_group(FileType file, const uint8_t* const* rows, int64_t values, uint8_t* out) {
  const QType type = kernel_type(file);
  const int64_t size = static_cast<int64_t>(group_block_bytes(type)), src_size = file_block_bytes(file);
  const int64_t per_block = file_block_values(file) / QBLOCK;  // blocks of 32 in one of the file's blocks
  for (int64_t b = 0; b < values / QBLOCK; ++b) {
    uint8_t* dst = out + b * size;
    for (int r = 0; r < GROUP_ROWS; ++r) {
      const uint8_t* src = rows[r] + (b / per_block) * src_size;
      const int j = static_cast<int>(b % per_block);
      switch (file) {
        case FileType::Q4_0:
        case FileType::Q8_0:  // d | qs: the file's bytes, regrouped
          std::memcpy(dst + 2 * r, src, 2);
          std::memcpy(dst + 8 + r * (src_size - 2), src + 2, src_size - 2);
          break;
        case FileType::Q4_1:  // d | m | qs
          std::memcpy(dst + 2 * r, src, 2);
          std::memcpy(dst + 8 + 2 * r, src + 2, 2);
          std::memcpy(dst + 16 + 16 * r, src + 4, 16);
          break;
        case FileType::Q4_K: {  // d | dmin | scales[12] | qs[128]: block j is nibble half j % 2 of 32 bytes
          int scale, min;
          k_scale_min(src + 4, j, scale, min);
          const float d = half_to_float(f16_at(src, 0)), dmin = half_to_float(f16_at(src, 1));
          const uint16_t dq = float_to_half(d * static_cast<float>(scale));
          const uint16_t mq = float_to_half(-(dmin * static_cast<float>(min)));
          std::memcpy(dst + 2 * r, &dq, 2);
          std::memcpy(dst + 8 + 2 * r, &mq, 2);
          const uint8_t* qs = src + 16 + 32 * (j / 2);
          const int shift = 4 * (j % 2);
          for (int i = 0; i < 16; ++i) {  // Q4_1's order: byte i holds values i and i + 16
            dst[16 + 16 * r + i] = static_cast<uint8_t>(((qs[i] >> shift) & 0xF) | ((qs[i + 16] >> shift) & 0xF) << 4);
          }
          break;
        }
        default: {  // Q5_0, Q5_1, Q5_K, Q6_K -> K8
          float m;
          k8_block(file, src, j, dst + 2 * r, reinterpret_cast<int8_t*>(dst + K8_SC + 2 * r), m,
                   reinterpret_cast<int8_t*>(dst + Group<QType::K8>::scales + 32 * r));
          std::memcpy(dst + K8_M + 4 * r, &m, 4);
        }
      }
    }
  }
}

void dequantize_groups(QType type, const uint8_t* w, int64_t g0, int64_t g1, int64_t k, float* out) {
  const int64_t blocks = k / QBLOCK;
  const size_t size = group_block_bytes(type);
  const int scales = type == QType::Q4_1 ? 16 : type == QType::K8 ? 32 : 8;
  const int quant_bytes = type == QType::Q8_0 || type == QType::K8 ? 32 : 16;
  for (int64_t g = g0; g < g1; ++g) {
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* block = w + (g * blocks + b) * size;
      for (int r = 0; r < GROUP_ROWS; ++r) {
        const float d = half_to_float(f16_at(block, r));
        const float m = type == QType::Q4_1 ? half_to_float(f16_at(block + 8, r)) : 0.0f;
        const uint8_t* qs = block + scales + r * quant_bytes;
        float* row = out + ((g - g0) * GROUP_ROWS + r) * k + b * QBLOCK;
        if (type == QType::Q8_0) {
          for (int i = 0; i < QBLOCK; ++i) row[i] = d * static_cast<float>(static_cast<int8_t>(qs[i]));
        } else if (type == QType::K8) {  // as gguf-py: (d * sc) q - dmin m, the offset stored negated
          const auto* sc = reinterpret_cast<const int8_t*>(block + K8_SC + 2 * r);
          const float offset = f32_at(block + K8_M, r);
          for (int i = 0; i < QBLOCK; ++i) {
            const float scale = d * static_cast<float>(sc[i / 16]);
            row[i] = scale * static_cast<float>(static_cast<int8_t>(qs[i])) + offset;
          }
        } else {
          const float offset = type == QType::Q4_0 ? -8.0f : 0.0f;
          for (int i = 0; i < 16; ++i) {  // byte i: element i (low nibble) and i + 16 (high)
            const float lo = static_cast<float>(qs[i] & 0x0F) + offset, hi = static_cast<float>(qs[i] >> 4) + offset;
            row[i] = type == QType::Q4_1 ? d * lo + m : d * lo;
            row[i + 16] = type == QType::Q4_1 ? d * hi + m : d * hi;
          }
        }
      }
    }
  }
}

}  // namespace autan
