// The quantized products (products.h) in AVX-512 with VNNI: products_x4.h's body with vpdpbusd,
// four byte products summed into each int32 lane in one instruction (Ice Lake and later Xeons,
// Zen 4 and 5).

#include <immintrin.h>

#include <algorithm>

#include "../../kernels.h"

namespace autan {
namespace avx512_vnni {

#define TIER AUTAN_AVX512_VNNI

TIER inline __m512i dot(__m512i u, __m512i s) {
  return _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s);
}

TIER inline __m512i dot2(__m512i u1, __m512i s1, __m512i u2, __m512i s2) {
  return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u1, s1), u2, s2);
}

#include "../avx512/products_x4.h"

#undef TIER

}  // namespace avx512_vnni

template <QType T>
AUTAN_AVX512_VNNI void qgemm_avx512_vnni(const uint8_t* w, int64_t g0, int64_t g1, const QuantizedRows& x, int64_t m,
                                         float* y, int64_t ldy) {
  avx512_vnni::groups<T>(w, g0, g1, x, m, y, ldy);
}

template void qgemm_avx512_vnni<QType::Q4_0>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*,
                                             int64_t);
template void qgemm_avx512_vnni<QType::Q4_1>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*,
                                             int64_t);
template void qgemm_avx512_vnni<QType::Q8_0>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*,
                                             int64_t);
template void qgemm_avx512_vnni<QType::K8>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*,
                                           int64_t);

}  // namespace autan
