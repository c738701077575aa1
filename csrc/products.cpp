// The quantized products (products.h): the dispatch to each instruction set's kernels, and the
// products of whole matrices, split over the threads.

#include "products.h"

#include <ATen/Parallel.h>

#include <algorithm>

#include "arch/kernels.h"
#include "cpu_features.h"

namespace autan {
namespace {

using Gemm = void (*)(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*, int64_t);

template <QType T>
Gemm pick() {
  switch (kernel_isa()) {
    case Isa::avx512_vnni:
      return qgemm_avx512_vnni<T>;
    case Isa::avx512:
      return qgemm_avx512<T>;
    case Isa::avx_vnni:
      return qgemm_avx_vnni<T>;
    case Isa::avx2:
      return qgemm_avx2<T>;
    case Isa::scalar:
      break;
  }
  return qgemm_scalar<T>;
}

int64_t rows_of(const Matrix& w) {
  int64_t groups = 0;
  for (const auto& segment : w) groups += segment.groups;
  return groups * GROUP_ROWS;
}

}  // namespace

void qgemm_groups(QType type, const uint8_t* w, int64_t g0, int64_t g1, const QuantizedRows& x, int64_t m, float* y,
                  int64_t ldy) {
  const Gemm gemm = type == QType::Q4_0   ? pick<QType::Q4_0>()
                    : type == QType::Q4_1 ? pick<QType::Q4_1>()
                    : type == QType::Q8_0 ? pick<QType::Q8_0>()
                                          : pick<QType::K8>();
  gemm(w, g0, g1, x, m, y, ldy);
}

void product(const Matrix& w, const QuantizedRows& x, int64_t m, float* y) {
  const int64_t ldy = rows_of(w), groups = ldy / GROUP_ROWS;
  // groups per task: enough work to be worth a thread, few enough to balance the cores
  const int64_t grain = std::max<int64_t>(2, 64 / (m * x.parts));
  at::parallel_for(0, groups, grain, [&](int64_t g0, int64_t g1) {
    int64_t start = 0;  // the segments' share of [g0, g1), each in its own format
    for (const auto& segment : w) {
      const int64_t a = std::max(g0, start), b = std::min(g1, start + segment.groups);
      if (a < b) qgemm_groups(segment.type, segment.w, a - start, b - start, x, m, y + start * GROUP_ROWS, ldy);
      start += segment.groups;
    }
  });
}

void Activations::product(const Matrix& w, const float* x, int64_t m, int64_t k, float* y) {
  autan::product(w, quantized.quantize(x, m, k), m, y);
}

void activation_product(QType type, const uint8_t* w, int64_t groups, const float* x, int64_t m, int64_t k, float* y) {
  thread_local Activations a;
  a.product({{type, w, groups}}, x, m, k, y);
}

}  // namespace autan
