// Activation quantization (quantize.h): the dispatch to each instruction set's quantize_rows, and
// the one- or two-part activations of a product.

#include "quantize.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>

#include "arch/kernels.h"
#include "cpu_features.h"

namespace autan {
namespace {

std::atomic<int> decode_parts{2}, prompt_parts{2};

}  // namespace

void quantize_rows(const float* x, int64_t m, int64_t k, int8_t* q, float* d, float* s) {
  switch (kernel_isa()) {
    case Isa::avx512_vnni:  // the 256-bit code: no wider one yet
    case Isa::avx512:
    case Isa::avx_vnni:
    case Isa::avx2:
      return quantize_rows_avx2(x, m, k, q, d, s);
    case Isa::scalar:
      break;
  }
  quantize_rows_scalar(x, m, k, q, d, s);
}

bool set_activation_parts(int decode, int prompt) {
  const auto valid = [](int parts) { return parts == 1 || parts == 2; };
  if (!valid(decode) || !valid(prompt)) return false;
  decode_parts = decode;
  prompt_parts = prompt;
  return true;
}

int get_activation_parts(bool prompt) {
  return (prompt ? prompt_parts : decode_parts).load();
}

namespace {

// Row x's second part (quantize.h) from its first (q1, d1): q2, d2 = d1 / 256 and s2 = d2 sum(q2).
void second_part(const float* x, int64_t k, const int8_t* q1, const float* d1, int8_t* q2, float* d2, float* s2) {
  for (int64_t b = 0; b < k / QBLOCK; ++b) {
    const float* xb = x + b * QBLOCK;
    float amax = 0;
    for (int i = 0; i < QBLOCK; ++i) amax = std::max(amax, std::fabs(xb[i]));
    const float inverse = amax > 0 ? 127.0f / amax : 0.0f;  // the first part's, exactly
    int sum = 0;
    for (int i = 0; i < QBLOCK; ++i) {
      const float product = d1[b] * static_cast<float>(q1[b * QBLOCK + i]);  // rounded, then subtracted
      const float rest = xb[i] - product;
      const float scaled = (rest * inverse) * 256.0f;
      const int v = std::clamp(static_cast<int>(std::nearbyint(scaled)), -127, 127);
      q2[b * QBLOCK + i] = static_cast<int8_t>(v);
      sum += v;
    }
    d2[b] = d1[b] / 256.0f;
    s2[b] = d2[b] * static_cast<float>(sum);
  }
}

}  // namespace

QuantizedRows QuantizedActivations::quantize(const float* x, int64_t m, int64_t k) {
  parts = (m >= PROMPT_ROWS ? prompt_parts : decode_parts).load(std::memory_order_relaxed);
  const int64_t kb = k / QBLOCK;
  q.resize(parts * m * k);
  d.resize(parts * m * kb);
  s.resize(parts * m * kb);
  // rows split over the threads when there are many (a prompt): a row's parts are its own work
  const int64_t grain = std::max<int64_t>(1, (1 << 16) / k);
  if (parts == 1) {
    at::parallel_for(0, m, grain, [&](int64_t r0, int64_t r1) {
      quantize_rows(x + r0 * k, r1 - r0, k, q.data() + r0 * k, d.data() + r0 * kb, s.data() + r0 * kb);
    });
    return {q.data(), d.data(), s.data(), k, 1};
  }
  at::parallel_for(0, m, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {  // rows 2r and 2r + 1: row r's two parts
      const float* xr = x + r * k;
      int8_t* q1 = q.data() + 2 * r * k;
      float *d1 = d.data() + 2 * r * kb, *s1 = s.data() + 2 * r * kb;
      quantize_rows(xr, 1, k, q1, d1, s1);
      second_part(xr, k, q1, d1, q1 + k, d1 + kb, s1 + kb);
    }
  });
  return {q.data(), d.data(), s.data(), k, 2};
}

}  // namespace autan
