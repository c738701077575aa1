// Activation quantization (quantize.h): the dispatch to each instruction set's quantize_rows, and
// the one- or two-part activations of a product.

#include "quantize.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>

#include "arch/kernels.h"
#include "cpu_features.h"

namespace autan {
namespace {

std::atomic<int> decode_parts{2}, prompt_parts{1};

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
    return {q.data(), d.data(), s.data(), k};
  }
  at::parallel_for(0, m, grain, [&](int64_t r0, int64_t r1) {
    thread_local std::vector<float> rest;  // the first part's rounding error, per pool thread
    rest.resize(k);
    for (int64_t r = r0; r < r1; ++r) {  // rows 2r and 2r + 1: row r's two parts
      const float* xr = x + r * k;
      int8_t* q1 = q.data() + 2 * r * k;
      float* d1 = d.data() + 2 * r * kb;
      quantize_rows(xr, 1, k, q1, d1, s.data() + 2 * r * kb);
      for (int64_t i = 0; i < k; ++i) rest[i] = xr[i] - d1[i / QBLOCK] * static_cast<float>(q1[i]);
      quantize_rows(rest.data(), 1, k, q1 + k, d1 + kb, s.data() + (2 * r + 1) * kb);
    }
  });
  return {q.data(), d.data(), s.data(), k};
}

}  // namespace autan
