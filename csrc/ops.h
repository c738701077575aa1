// Element-wise ops of the decode step (step.cpp): rms_norm and rope, inline here so that the
// step's loops compile them in place, and silu_mul, chosen by instruction set.
#pragma once

#include <cmath>
#include <cstdint>

namespace autan {

// out (rows, dim) = weight * x / sqrt(mean(x^2) + eps), row by row.
inline void rms_norm(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    double sum = 0;  // as the reference: the mean of squares in at least float32
    for (int64_t i = 0; i < dim; ++i) sum += static_cast<double>(xr[i]) * xr[i];
    const float scale = 1.0f / std::sqrt(static_cast<float>(sum / dim) + eps);
    for (int64_t i = 0; i < dim; ++i) out[r * dim + i] = weight[i] * (xr[i] * scale);
  }
}

// x (hd) rotated in place, pairs (i, i + hd/2) as Hugging Face's rotate_half does: x * cos +
// roll(x, hd/2) * sin, with `sin`'s first half negated (autan.model.rope.rope_cos_sin's form).
inline void rope(float* x, const float* cos, const float* sin, int64_t hd) {
  const int64_t half = hd / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    x[i] = a * cos[i] + b * sin[i];
    x[i + half] = b * cos[i + half] + a * sin[i + half];
  }
}

// out = silu(gate) * up = gate / (1 + e^-gate) * up, for one row of `hidden`.
using SiluMul = void (*)(const float* gate, const float* up, int64_t hidden, float* out);

// The version for the instruction set kernel_isa() names (arch/kernels.h).
SiluMul silu_mul_kernel();

}  // namespace autan
