// The quantized products (products.h) in AVX2 with AVX-VNNI: products_x4.h's body with the VEX
// vpdpbusd, four byte products summed into each int32 lane in one instruction (Alder Lake and
// later, Zen 5).

#include <immintrin.h>

#include <algorithm>

#include "../../kernels.h"

namespace autan {
namespace avx_vnni {

#define TIER AUTAN_AVX_VNNI

TIER inline __m256i dot(__m256i u, __m256i s) {
  return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s);
}

TIER inline __m256i halves(int8_t a, int8_t b) {  // int32: the four-product sums' multiplier
  return _mm256_set_m128i(_mm_set1_epi32(b), _mm_set1_epi32(a));
}

TIER inline __m256i dot_by(__m256i u, __m256i s, __m256i m) {
  return _mm256_mullo_epi32(dot(u, s), m);
}

TIER inline __m256i dot2(__m256i u1, __m256i s1, __m256i u2, __m256i s2) {
  return _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u1, s1), u2, s2);
}

#include "../avx2/products_x4.h"

#undef TIER

}  // namespace avx_vnni

template <QType T>
AUTAN_AVX_VNNI void qgemm_avx_vnni(const uint8_t* w, int64_t g0, int64_t g1, const QuantizedRows& x, int64_t m, float* y,
                           int64_t ldy) {
  avx_vnni::groups<T>(w, g0, g1, x, m, y, ldy);
}

template void qgemm_avx_vnni<QType::Q4_0>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*,
                                      int64_t);
template void qgemm_avx_vnni<QType::Q4_1>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*,
                                      int64_t);
template void qgemm_avx_vnni<QType::Q8_0>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*,
                                      int64_t);
template void qgemm_avx_vnni<QType::K8>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*, int64_t);

}  // namespace autan
