// Activation quantization (quantize.h), portable: the reference the other tiers round as.

#include <algorithm>
#include <cmath>

#include "../kernels.h"

namespace autan {

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

}  // namespace autan
