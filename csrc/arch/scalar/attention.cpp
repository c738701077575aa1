// Attention for one KV head's query heads (attention.h), portable.

#include <algorithm>
#include <cmath>

#include "../kernels.h"

namespace autan {

void attend_group_scalar(const float* q, int64_t group, const float* const* keys, const float* const* values,
                         int64_t count, int64_t hd, float* out, float* scores) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (int64_t h = 0; h < group; ++h) {
    const float* qh = q + h * hd;
    float top = -INFINITY;
    for (int64_t j = 0; j < count; ++j) {
      float dot = 0;
      for (int64_t i = 0; i < hd; ++i) dot += qh[i] * keys[j][i];
      scores[j] = dot * scale;
      top = std::max(top, scores[j]);
    }
    float total = 0;
    for (int64_t j = 0; j < count; ++j) total += (scores[j] = std::exp(scores[j] - top));
    float* o = out + h * hd;
    std::fill(o, o + hd, 0.0f);
    for (int64_t j = 0; j < count; ++j) {
      const float p = scores[j] / total;
      for (int64_t i = 0; i < hd; ++i) o[i] += p * values[j][i];
    }
  }
}

}  // namespace autan
