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
  static constexpr int scales = 8 + (T == QType::Q4_1 ? 8 : 0);  // bytes of d (and m) before the quants
  static constexpr int quant_bytes = T == QType::Q8_0 ? 32 : 16;  // per row
  static constexpr int size = scales + 4 * quant_bytes;
};

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
          } else {
            for (int j = 0; j < 16; ++j) sum += (qs[j] & 0x0F) * qx[j] + (qs[j] >> 4) * qx[j + 16];
          }
          const float dw = half_to_float(f16_at(block, i));
          acc[i] += dw * x.d[at] * static_cast<float>(sum);
          if constexpr (T == QType::Q4_0) acc[i] -= 8.0f * dw * x.s[at];
          if constexpr (T == QType::Q4_1) acc[i] += half_to_float(f16_at(block + 8, i)) * x.s[at];
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
    const uint8_t* qs = block + G::scales;
    if constexpr (T == QType::Q8_0) {
      __m256i weights[4], magnitude[4];
      for (int i = 0; i < 4; ++i) {
        weights[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * i));
        magnitude[i] = _mm256_sign_epi8(weights[i], weights[i]);
      }
      for (int r = 0; r < R; ++r) {
        const int64_t at = (r0 + r) * blocks + b;
        const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q + at * QBLOCK));
        __m256i p[4];
        for (int i = 0; i < 4; ++i) {
          p[i] = _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude[i], _mm256_sign_epi8(qx, weights[i])), ones);
        }
        const __m256i rows = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
        const __m128 s4 = _mm_mul_ps(d4, _mm_set1_ps(x.d[at]));
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(rows), _mm256_set_m128(s4, s4), acc[r]);
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
    if constexpr (T == QType::Q8_0) {  // [r0 r1 r2 r3 | r0 r1 r2 r3]
      _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(acc[r]), _mm256_extractf128_ps(acc[r], 1)));
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
         qtype == static_cast<int>(QType::Q8_0);
}

size_t block_bytes(QType type) {
  return type == QType::Q4_0 ? 18 : type == QType::Q4_1 ? 20 : 34;
}

size_t group_block_bytes(QType type) {
  return type == QType::Q4_0 ? Group<QType::Q4_0>::size
                             : type == QType::Q4_1 ? Group<QType::Q4_1>::size : Group<QType::Q8_0>::size;
}

void quantize_rows(const float* x, int64_t m, int64_t k, int8_t* q, float* d, float* s) {
  const auto quantize = kernel_isa() == Isa::avx2 ? quantize_rows_avx2 : quantize_rows_scalar;
  quantize(x, m, k, q, d, s);
}

void dequantize_groups(QType type, const uint8_t* w, int64_t g0, int64_t g1, int64_t k, float* out) {
  const int64_t blocks = k / QBLOCK;
  const size_t size = group_block_bytes(type);
  const int scales = type == QType::Q4_1 ? 16 : 8, quant_bytes = type == QType::Q8_0 ? 32 : 16;
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
  const Gemm gemm = type == QType::Q4_0 ? pick<QType::Q4_0>() : type == QType::Q4_1 ? pick<QType::Q4_1>() : pick<QType::Q8_0>();
  gemm(w, g0, g1, x, m, y, ldy);
}

}  // namespace autan
