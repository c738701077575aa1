// Element-wise ops with a tier of their own (ops.h) in AVX2.

#include "common.h"

namespace autan {

AUTAN_AVX2 void silu_mul_avx2(const float* gate, const float* up, int64_t hidden, float* out) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= hidden; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 sig = _mm256_div_ps(one, _mm256_add_ps(one, avx2::exp8(_mm256_sub_ps(zero, g))));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(g, sig), _mm256_loadu_ps(up + i)));
  }
  silu_mul_scalar(gate + i, up + i, hidden - i, out + i);  // the last hidden % 8 (none in the step: whole blocks)
}

}  // namespace autan
