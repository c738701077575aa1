// The quantized products on four-row groups (products.h) in AVX2.
//
// AVX2, 4-bit weights: one 32-byte load holds two rows' 16 bytes of nibbles. Masked, it gives
// both rows' values 0-15 (low nibbles); shifted, their values 16-31. Against the activations'
// first and second 16 bytes broadcast to both lanes, _mm256_maddubs_epi16 makes pair sums (at
// most 15 * 127 * 2 each, and two of them added at most 7620: no saturation), and
// _mm256_madd_epi16 by ones turns them into int32: lanes 0-3 row one, 4-7 row two. One
// _mm256_hadd_epi32 of the two row pairs leaves [r0 r0 r2 r2 | r1 r1 r3 r3], scaled in float.
// 8-bit weights take the sign trick (|w| unsigned times sign(w) * x) row by row, and three
// hadds make [r0 r1 r2 r3 | r0 r1 r2 r3].

#include "common.h"

namespace autan {
namespace {

// One group of four weight rows against R (1 to 4) activation rows from r0: y[r][4g .. 4g + 3].
template <QType T, int R>
AUTAN_AVX2 void group_avx2(const uint8_t* w, int64_t g, const QuantizedRows& x, int64_t r0, float* y, int64_t ldy) {
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

}  // namespace

template <QType T>
AUTAN_AVX2 void qgemm_avx2(const uint8_t* w, int64_t g0, int64_t g1, const QuantizedRows& x, int64_t m, float* y,
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

template void qgemm_avx2<QType::Q4_0>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*,
                                      int64_t);
template void qgemm_avx2<QType::Q4_1>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*,
                                      int64_t);
template void qgemm_avx2<QType::Q8_0>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*,
                                      int64_t);
template void qgemm_avx2<QType::K8>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*, int64_t);

}  // namespace autan
