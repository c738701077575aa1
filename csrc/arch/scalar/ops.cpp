// Element-wise ops with a tier of their own (ops.h), portable.

#include <cmath>

#include "../kernels.h"

namespace autan {

void silu_mul_scalar(const float* gate, const float* up, int64_t hidden, float* out) {
  for (int64_t i = 0; i < hidden; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace autan
