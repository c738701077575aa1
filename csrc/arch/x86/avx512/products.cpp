// The quantized products (products.h) in AVX-512 (F, BW, VL) without VNNI: products_x4.h's body
// with vpmaddubsw for the byte products (Skylake-SP's servers).

#include <immintrin.h>

#include <algorithm>

#include "../../kernels.h"

namespace autan {
namespace avx512 {

#define TIER AUTAN_AVX512

TIER inline __m512i dot(__m512i u, __m512i s) {  // pair sums of |w| * x fit int16: 2 * 128 * 127
  return _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1));
}

TIER inline __m512i dot2(__m512i u1, __m512i s1, __m512i u2, __m512i s2) {  // 4-bit u: 4 * 15 * 127 fits int16
  return _mm512_madd_epi16(_mm512_add_epi16(_mm512_maddubs_epi16(u1, s1), _mm512_maddubs_epi16(u2, s2)),
                           _mm512_set1_epi16(1));
}

#include "products_x4.h"

#undef TIER

}  // namespace avx512

template <QType T>
AUTAN_AVX512 void qgemm_avx512(const uint8_t* w, int64_t g0, int64_t g1, const QuantizedRows& x, int64_t m, float* y,
                               int64_t ldy) {
  avx512::groups<T>(w, g0, g1, x, m, y, ldy);
}

template void qgemm_avx512<QType::Q4_0>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*,
                                        int64_t);
template void qgemm_avx512<QType::Q4_1>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*,
                                        int64_t);
template void qgemm_avx512<QType::Q8_0>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*,
                                        int64_t);
template void qgemm_avx512<QType::K8>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*,
                                      int64_t);

}  // namespace autan
