// Activation quantization (quantize.h) in AVX2: a block of 32 in four registers, its largest
// magnitude by a max tree, and the 32 rounded int32 packed back to int8 in order.

#include "common.h"

namespace autan {

AUTAN_AVX2 void quantize_rows_avx2(const float* x, int64_t m, int64_t k, int8_t* q, float* d, float* s) {
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
    s[b] = d[b] * avx2::hsum(_mm256_cvtepi32_ps(sum));
  }
}

}  // namespace autan
