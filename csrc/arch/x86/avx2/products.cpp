// The quantized products (products.h) in AVX2: products_x4.h's body with vpmaddubsw and vpmaddwd
// for the byte products.

#include <immintrin.h>

#include <algorithm>

#include "../../kernels.h"

namespace autan {
namespace avx2 {

#define TIER AUTAN_AVX2

TIER inline __m256i dot(__m256i u, __m256i s) {  // pair sums of |w| * x fit int16: 2 * 128 * 127
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

TIER inline __m256i halves(int8_t a, int8_t b) {  // int16: the pair sums' multiplier
  return _mm256_set_m128i(_mm_set1_epi16(b), _mm_set1_epi16(a));
}

TIER inline __m256i dot_by(__m256i u, __m256i s, __m256i m) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), m);
}

TIER inline __m256i dot2(__m256i u1, __m256i s1, __m256i u2, __m256i s2) {  // 4-bit u: 4 * 15 * 127 fits int16
  return _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(u1, s1), _mm256_maddubs_epi16(u2, s2)),
                           _mm256_set1_epi16(1));
}

#include "../avx2/products_x4.h"

#undef TIER

}  // namespace avx2

template <QType T>
AUTAN_AVX2 void qgemm_avx2(const uint8_t* w, int64_t g0, int64_t g1, const QuantizedRows& x, int64_t m, float* y,
                           int64_t ldy) {
  avx2::groups<T>(w, g0, g1, x, m, y, ldy);
}

template void qgemm_avx2<QType::Q4_0>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*,
                                      int64_t);
template void qgemm_avx2<QType::Q4_1>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*,
                                      int64_t);
template void qgemm_avx2<QType::Q8_0>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*,
                                      int64_t);
template void qgemm_avx2<QType::K8>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*, int64_t);

}  // namespace autan
