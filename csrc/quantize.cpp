// Activation quantization (quantize.h): the dispatch to each instruction set's quantize_rows, and
// the one- or two-part activations of a product.

#include "quantize.h"

#include <atomic>

#include "arch/kernels.h"
#include "cpu_features.h"

namespace autan {
namespace {

std::atomic<int> activation_parts{2};

}  // namespace

void quantize_rows(const float* x, int64_t m, int64_t k, int8_t* q, float* d, float* s) {
  switch (kernel_isa()) {
    case Isa::avx2:
      return quantize_rows_avx2(x, m, k, q, d, s);
    case Isa::scalar:
      break;
  }
  quantize_rows_scalar(x, m, k, q, d, s);
}

bool set_activation_parts(int parts) {
  if (parts != 1 && parts != 2) return false;
  activation_parts = parts;
  return true;
}

int get_activation_parts() {
  return activation_parts.load();
}

QuantizedRows QuantizedActivations::quantize(const float* x, int64_t m, int64_t k) {
  parts = activation_parts.load(std::memory_order_relaxed);
  const int64_t kb = k / QBLOCK;
  q.resize(parts * m * k);
  d.resize(parts * m * kb);
  s.resize(parts * m * kb);
  if (parts == 1) {
    quantize_rows(x, m, k, q.data(), d.data(), s.data());
    return {q.data(), d.data(), s.data(), k};
  }
  rest.resize(k);
  for (int64_t r = 0; r < m; ++r) {  // rows 2r and 2r + 1: row r's two parts
    const float* xr = x + r * k;
    int8_t* q1 = q.data() + 2 * r * k;
    float* d1 = d.data() + 2 * r * kb;
    quantize_rows(xr, 1, k, q1, d1, s.data() + 2 * r * kb);
    for (int64_t i = 0; i < k; ++i) rest[i] = xr[i] - d1[i / QBLOCK] * static_cast<float>(q1[i]);
    quantize_rows(rest.data(), 1, k, q1 + k, d1 + kb, s.data() + (2 * r + 1) * kb);
  }
  return {q.data(), d.data(), s.data(), k};
}

}  // namespace autan
