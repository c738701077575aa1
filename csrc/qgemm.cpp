// Quantized products on four-row groups (see qgemm.h): a portable version and an AVX2 one,
// chosen at run time.
//
// AVX2, 4-bit weights: one 32-byte load holds two rows' 16 bytes of nibbles. Masked, it gives
// both rows' values 0-15 (low nibbles); shifted, their values 16-31. Against the activations'
// first and second 16 bytes broadcast to both lanes, _mm256_maddubs_epi16 makes pair sums (at
// most 15 * 127 * 2 each, and two of them added at most 7620: no saturation), and
// _mm256_madd_epi16 by ones turns them into int32: lanes 0-3 row one, 4-7 row two. One
// _mm256_hadd_epi32 of the two row pairs leaves [r0 r0 r2 r2 | r1 r1 r3 r3], scaled in float.
// 8-bit weights take the sign trick (|w| unsigned times sign(w) * x) row by row, and three
// hadds make [r0 r1 r2 r3 | r0 r1 r2 r3].

#include "qgemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include <c10/util/Half.h>

#include "cpu_features.h"

namespace autan {
namespace {

float half_to_float(uint16_t h) {
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

uint16_t f16_at(const uint8_t* p, int i) {
  uint16_t h;
  std::memcpy(&h, p + 2 * i, 2);
  return h;
}

// Where the parts of a four-row block are.
template <QType T>
struct Group {
  static constexpr bool bytes = T == QType::Q8_0 || T == QType::K8;  // a byte per value, not a nibble
  static constexpr int scales = T == QType::Q4_1 ? 16 : T == QType::K8 ? 32 : 8;  // bytes before the quants
  static constexpr int quant_bytes = bytes ? 32 : 16;  // per row
  static constexpr int size = scales + 4 * quant_bytes;
};

constexpr int K8_SC = 8, K8_M = 16;  // where a K8 block's sub-block scales and offsets are

float f32_at(const uint8_t* p, int i) {
  float f;
  std::memcpy(&f, p + 4 * i, 4);
  return f;
}

// ---- portable -------------------------------------------------------------------------------

void quantize_rows_scalar(const float* x, int64_t m, int64_t k, int8_t* q, float* d, float* s) {
  for (int64_t b = 0; b < m * k / QBLOCK; ++b) {
    const float* xb = x + b * QBLOCK;
    float amax = 0;
    for (int i = 0; i < QBLOCK; ++i) amax = std::max(amax, std::fabs(xb[i]));
    const float inverse = amax > 0 ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int i = 0; i < QBLOCK; ++i) {
      const int v = static_cast<int>(std::nearbyint(xb[i] * inverse));
      q[b * QBLOCK + i] = static_cast<int8_t>(v);
      sum += v;
    }
    d[b] = amax / 127.0f;
    s[b] = d[b] * static_cast<float>(sum);
  }
}

template <QType T>
void qgemm_scalar(const uint8_t* w, int64_t g0, int64_t g1, const QuantizedRows& x, int64_t m, float* y,
                  int64_t ldy) {
  using G = Group<T>;
  const int64_t blocks = x.k / QBLOCK;
  for (int64_t g = g0; g < g1; ++g) {
    for (int64_t r = 0; r < m; ++r) {
      float acc[4] = {0, 0, 0, 0};
      for (int64_t b = 0; b < blocks; ++b) {
        const uint8_t* block = w + (g * blocks + b) * G::size;
        const int64_t at = r * blocks + b;
        const int8_t* qx = x.q + at * QBLOCK;
        for (int i = 0; i < 4; ++i) {
          const uint8_t* qs = block + G::scales + i * G::quant_bytes;
          int sum = 0;
          if constexpr (T == QType::Q8_0) {
            for (int j = 0; j < QBLOCK; ++j) sum += static_cast<int8_t>(qs[j]) * qx[j];
          } else if constexpr (T == QType::K8) {
            int half[2] = {0, 0};
            for (int j = 0; j < QBLOCK; ++j) half[j / 16] += static_cast<int8_t>(qs[j]) * qx[j];
            const auto* sc = reinterpret_cast<const int8_t*>(block + K8_SC + 2 * i);
            sum = sc[0] * half[0] + sc[1] * half[1];
          } else {
            for (int j = 0; j < 16; ++j) sum += (qs[j] & 0x0F) * qx[j] + (qs[j] >> 4) * qx[j + 16];
          }
          const float dw = half_to_float(f16_at(block, i));
          acc[i] += dw * x.d[at] * static_cast<float>(sum);
          if constexpr (T == QType::Q4_0) acc[i] -= 8.0f * dw * x.s[at];
          if constexpr (T == QType::Q4_1) acc[i] += half_to_float(f16_at(block + 8, i)) * x.s[at];
          if constexpr (T == QType::K8) acc[i] += f32_at(block + K8_M, i) * x.s[at];
        }
      }
      for (int i = 0; i < 4; ++i) y[r * ldy + 4 * g + i] = acc[i];
    }
  }
}

// ---- AVX2 -----------------------------------------------------------------------------------

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

AVX2 void quantize_rows_avx2(const float* x, int64_t m, int64_t k, int8_t* q, float* d, float* s) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < m * k / QBLOCK; ++b) {
    const float* xb = x + b * QBLOCK;
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm256_loadu_ps(xb + 8 * i);
      amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[i]));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float top = _mm_cvtss_f32(m4);
    const __m256 inverse = _mm256_set1_ps(top > 0 ? 127.0f / top : 0.0f);
    __m256i ints[4];
    for (int i = 0; i < 4; ++i) {
      const __m256 scaled = _mm256_mul_ps(v[i], inverse);
      ints[i] = _mm256_cvtps_epi32(_mm256_round_ps(scaled, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(ints[0], ints[1]), _mm256_add_epi32(ints[2], ints[3]));
    // pack 32 int32 to 32 int8, then undo the lane interleaving of the packs
    const __m256i p01 = _mm256_packs_epi32(ints[0], ints[1]), p23 = _mm256_packs_epi32(ints[2], ints[3]);
    __m256i bytes = _mm256_packs_epi16(p01, p23);
    bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + b * QBLOCK), bytes);
    d[b] = top / 127.0f;
    s[b] = d[b] * hsum(_mm256_cvtepi32_ps(sum));
  }
}

// One group of four weight rows against R (1 to 4) activation rows from r0: y[r][4g .. 4g + 3].
template <QType T, int R>
AVX2 void group_avx2(const uint8_t* w, int64_t g, const QuantizedRows& x, int64_t r0, float* y, int64_t ldy) {
  using G = Group<T>;
  const int64_t blocks = x.k / QBLOCK;
  const __m256i ones = _mm256_set1_epi16(1), nibble = _mm256_set1_epi8(0x0F);
  const __m256i pairs = _mm256_setr_epi32(0, 0, 2, 2, 1, 1, 3, 3);  // [s0 s0 s2 s2 | s1 s1 s3 s3]
  __m256 acc[R];
  __m128 correction[R];
  for (int r = 0; r < R; ++r) {
    acc[r] = _mm256_setzero_ps();
    correction[r] = _mm_setzero_ps();
  }
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* block = w + (g * blocks + b) * G::size;
    const __m128 d4 = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(block)));
    __m128 extra4 = _mm_setzero_ps();  // times each activation block's scaled sum
    if constexpr (T == QType::Q4_1) extra4 = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + 8)));
    if constexpr (T == QType::Q4_0) extra4 = _mm_mul_ps(d4, _mm_set1_ps(-8.0f));
    if constexpr (T == QType::K8) extra4 = _mm_loadu_ps(reinterpret_cast<const float*>(block + K8_M));
    const uint8_t* qs = block + G::scales;
    if constexpr (G::bytes) {
      // pair sums times 1 (Q8_0), or times each half block's scale (K8: int16 lanes 0-7 hold
      // the first 16 values' pair sums, 8-15 the rest's)
      __m256i weights[4], magnitude[4], multiplier[4];
      for (int i = 0; i < 4; ++i) {
        weights[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * i));
        magnitude[i] = _mm256_sign_epi8(weights[i], weights[i]);
        if constexpr (T == QType::K8) {
          const auto* sc = reinterpret_cast<const int8_t*>(block + K8_SC + 2 * i);
          multiplier[i] = _mm256_set_m128i(_mm_set1_epi16(sc[1]), _mm_set1_epi16(sc[0]));
        } else {
          multiplier[i] = ones;
        }
      }
      for (int r = 0; r < R; ++r) {
        const int64_t at = (r0 + r) * blocks + b;
        const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q + at * QBLOCK));
        __m256i p[4];
        for (int i = 0; i < 4; ++i) {
          p[i] = _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude[i], _mm256_sign_epi8(qx, weights[i])), multiplier[i]);
        }
        const __m256i rows = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
        const __m128 s4 = _mm_mul_ps(d4, _mm_set1_ps(x.d[at]));
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(rows), _mm256_set_m128(s4, s4), acc[r]);
        if constexpr (T == QType::K8) correction[r] = _mm_fmadd_ps(extra4, _mm_set1_ps(x.s[at]), correction[r]);
      }
    } else {
      const __m256i v01 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs));
      const __m256i v23 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32));
      const __m256i lo01 = _mm256_and_si256(v01, nibble), hi01 = _mm256_and_si256(_mm256_srli_epi16(v01, 4), nibble);
      const __m256i lo23 = _mm256_and_si256(v23, nibble), hi23 = _mm256_and_si256(_mm256_srli_epi16(v23, 4), nibble);
      // the four rows' scales in the order the integer sums come out in: [d0 d0 d2 d2 | d1 d1 d3 d3]
      const __m256 d8 = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(d4), pairs);
      for (int r = 0; r < R; ++r) {
        const int64_t at = (r0 + r) * blocks + b;
        const int8_t* qx = x.q + at * QBLOCK;
        const __m256i xa = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qx)));
        const __m256i xb = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qx + 16)));
        const __m256i a = _mm256_madd_epi16(
            _mm256_add_epi16(_mm256_maddubs_epi16(lo01, xa), _mm256_maddubs_epi16(hi01, xb)), ones);
        const __m256i c = _mm256_madd_epi16(
            _mm256_add_epi16(_mm256_maddubs_epi16(lo23, xa), _mm256_maddubs_epi16(hi23, xb)), ones);
        const __m256 scale = _mm256_mul_ps(d8, _mm256_set1_ps(x.d[at]));
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_hadd_epi32(a, c)), scale, acc[r]);
        correction[r] = _mm_fmadd_ps(extra4, _mm_set1_ps(x.s[at]), correction[r]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    float* out = y + (r0 + r) * ldy + 4 * g;
    if constexpr (G::bytes) {  // [r0 r1 r2 r3 | r0 r1 r2 r3]
      const __m128 rows = _mm_add_ps(_mm256_castps256_ps128(acc[r]), _mm256_extractf128_ps(acc[r], 1));
      _mm_storeu_ps(out, T == QType::K8 ? _mm_add_ps(rows, correction[r]) : rows);
    } else {  // [r0 r0 r2 r2 | r1 r1 r3 r3]: add the pairs, then put the rows in order
      const __m128 lo = _mm256_castps256_ps128(acc[r]), hi = _mm256_extractf128_ps(acc[r], 1);
      const __m128 sums = _mm_hadd_ps(lo, hi);  // [r0 r2 r1 r3]
      const __m128 rows = _mm_shuffle_ps(sums, sums, _MM_SHUFFLE(3, 1, 2, 0));
      _mm_storeu_ps(out, _mm_add_ps(rows, correction[r]));
    }
  }
}

template <QType T>
AVX2 void qgemm_avx2(const uint8_t* w, int64_t g0, int64_t g1, const QuantizedRows& x, int64_t m, float* y,
                     int64_t ldy) {
  for (int64_t g = g0; g < g1; ++g) {
    int64_t r = 0;
    for (; r + 4 <= m; r += 4) group_avx2<T, 4>(w, g, x, r, y, ldy);
    switch (m - r) {
      case 3:
        group_avx2<T, 3>(w, g, x, r, y, ldy);
        break;
      case 2:
        group_avx2<T, 2>(w, g, x, r, y, ldy);
        break;
      case 1:
        group_avx2<T, 1>(w, g, x, r, y, ldy);
        break;
      default:
        break;
    }
  }
}

using Gemm = void (*)(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*, int64_t);

template <QType T>
Gemm pick() {
  return kernel_isa() == Isa::avx2 ? qgemm_avx2<T> : qgemm_scalar<T>;
}

}  // namespace

bool supported(int qtype) {
  return qtype == static_cast<int>(QType::Q4_0) || qtype == static_cast<int>(QType::Q4_1) ||
         qtype == static_cast<int>(QType::Q8_0) || qtype == static_cast<int>(QType::K8);
}

bool repackable(int file_type) {
  switch (static_cast<FileType>(file_type)) {
    case FileType::Q4_0:
    case FileType::Q4_1:
    case FileType::Q5_0:
    case FileType::Q5_1:
    case FileType::Q8_0:
    case FileType::Q4_K:
    case FileType::Q5_K:
    case FileType::Q6_K:
      return true;
  }
  return false;
}

QType kernel_type(FileType file) {
  switch (file) {
    case FileType::Q4_0:
      return QType::Q4_0;
    case FileType::Q4_1:
    case FileType::Q4_K:
      return QType::Q4_1;
    case FileType::Q8_0:
      return QType::Q8_0;
    default:
      return QType::K8;
  }
}

size_t file_block_bytes(FileType file) {
  switch (file) {
    case FileType::Q4_0:
      return 18;
    case FileType::Q4_1:
      return 20;
    case FileType::Q5_0:
      return 22;
    case FileType::Q5_1:
      return 24;
    case FileType::Q8_0:
      return 34;
    case FileType::Q4_K:
      return 144;
    case FileType::Q5_K:
      return 176;
    default:
      return 210;
  }
}

int64_t file_block_values(FileType file) {
  return file == FileType::Q4_K || file == FileType::Q5_K || file == FileType::Q6_K ? 256 : QBLOCK;
}

size_t group_block_bytes(QType type) {
  switch (type) {
    case QType::Q4_0:
      return Group<QType::Q4_0>::size;
    case QType::Q4_1:
      return Group<QType::Q4_1>::size;
    case QType::Q8_0:
      return Group<QType::Q8_0>::size;
    default:
      return Group<QType::K8>::size;
  }
}

namespace {

uint16_t float_to_half(float f) {  // round to nearest, ties to even (c10's conversion)
  return c10::Half(f).x;
}

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

void quantize_rows(const float* x, int64_t m, int64_t k, int8_t* q, float* d, float* s) {
  const auto quantize = kernel_isa() == Isa::avx2 ? quantize_rows_avx2 : quantize_rows_scalar;
  quantize(x, m, k, q, d, s);
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

void qgemm_groups(QType type, const uint8_t* w, int64_t g0, int64_t g1, const QuantizedRows& x, int64_t m, float* y,
                  int64_t ldy) {
  const Gemm gemm = type == QType::Q4_0   ? pick<QType::Q4_0>()
                    : type == QType::Q4_1 ? pick<QType::Q4_1>()
                    : type == QType::Q8_0 ? pick<QType::Q8_0>()
                                          : pick<QType::K8>();
  gemm(w, g0, g1, x, m, y, ldy);
}

}  // namespace autan
