// Attention for one KV head's query heads (attention.h) in AVX2: eight keys' scores at a time,
// exp8 for the softmax, and each value row read once per 32 outputs.

#include <algorithm>
#include <cmath>

#include "common.h"

namespace autan {
namespace {

// Eight keys' dot products with q at once: eight accumulators, reduced together by a tree of
// horizontal adds into one vector of eight scores.
AUTAN_AVX2 inline __m256 dots8(const float* q, const float* const* keys, int64_t hd) {
  __m256 a[8];
  for (int j = 0; j < 8; ++j) a[j] = _mm256_setzero_ps();
  for (int64_t i = 0; i < hd; i += 8) {
    const __m256 qi = _mm256_loadu_ps(q + i);
    for (int j = 0; j < 8; ++j) a[j] = _mm256_fmadd_ps(qi, _mm256_loadu_ps(keys[j] + i), a[j]);
  }
  const __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
  const __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

}  // namespace

AUTAN_AVX2 void attend_group_avx2(const float* q, int64_t group, const float* const* keys, const float* const* values,
                                  int64_t count, int64_t hd, float* out, float* scores) {
  if (hd % 8 != 0) {
    attend_group_scalar(q, group, keys, values, count, hd, out, scores);
    return;
  }
  const __m256 scale = _mm256_set1_ps(1.0f / std::sqrt(static_cast<float>(hd)));
  for (int64_t h = 0; h < group; ++h) {
    const float* qh = q + h * hd;
    __m256 top8 = _mm256_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 8 <= count; j += 8) {
      const __m256 s = _mm256_mul_ps(dots8(qh, keys + j, hd), scale);
      _mm256_storeu_ps(scores + j, s);
      top8 = _mm256_max_ps(top8, s);
    }
    float top = avx2::hmax(top8);
    for (; j < count; ++j) {
      __m256 acc = _mm256_setzero_ps();
      for (int64_t i = 0; i < hd; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(qh + i), _mm256_loadu_ps(keys[j] + i), acc);
      scores[j] = avx2::hsum(acc) * _mm256_cvtss_f32(scale);
      top = std::max(top, scores[j]);
    }
    __m256 total8 = _mm256_setzero_ps();
    const __m256 top_v = _mm256_set1_ps(top);
    for (j = 0; j + 8 <= count; j += 8) {
      const __m256 e = avx2::exp8(_mm256_sub_ps(_mm256_loadu_ps(scores + j), top_v));
      _mm256_storeu_ps(scores + j, e);
      total8 = _mm256_add_ps(total8, e);
    }
    float total = avx2::hsum(total8);
    for (; j < count; ++j) total += (scores[j] = std::exp(scores[j] - top));
    float* o = out + h * hd;
    const __m256 inverse = _mm256_set1_ps(1.0f / total);
    for (int64_t i = 0; i < hd; i += 32) {  // four output vectors at a time: each value row read once per 32
      const int64_t width = std::min<int64_t>(32, hd - i) / 8;
      __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
      for (int64_t k = 0; k < count; ++k) {
        const __m256 p = _mm256_set1_ps(scores[k]);
        for (int64_t v = 0; v < width; ++v) acc[v] = _mm256_fmadd_ps(p, _mm256_loadu_ps(values[k] + i + 8 * v), acc[v]);
      }
      for (int64_t v = 0; v < width; ++v) _mm256_storeu_ps(o + i + 8 * v, _mm256_mul_ps(acc[v], inverse));
    }
  }
}

}  // namespace autan
