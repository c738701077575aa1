// The quantized products on four-row groups (products.h), portable: block by block, row by row,
// each block's integer dot product scaled as products.h writes it.

#include "../kernels.h"

namespace autan {

template <QType T>
void qgemm_scalar(const uint8_t* w, int64_t g0, int64_t g1, const QuantizedRows& x, int64_t m, float* y,
                  int64_t ldy) {
  using G = Group<T>;
  const int64_t blocks = x.k / QBLOCK;
  for (int64_t g = g0; g < g1; ++g) {
    for (int64_t r = 0; r < m; ++r) {
      float acc[4] = {0, 0, 0, 0};
      for (int64_t b = 0; b < blocks; ++b) {
        const uint8_t* block = w + (g * blocks + b) * G::size;
        for (int p = 0; p < x.parts; ++p) {  // each part's block dot in turn
          const int64_t at = (r * x.parts + p) * blocks + b;
          const int8_t* qx = x.q + at * QBLOCK;
          for (int i = 0; i < 4; ++i) {
            const uint8_t* qs = block + G::scales + i * G::quant_bytes;
            int sum = 0;
            if constexpr (T == QType::Q8_0) {
              for (int j = 0; j < QBLOCK; ++j) sum += static_cast<int8_t>(qs[j]) * qx[j];
            } else if constexpr (T == QType::K8) {
              int half[2] = {0, 0};
              for (int j = 0; j < QBLOCK; ++j) half[j / 16] += static_cast<int8_t>(qs[j]) * qx[j];
              const auto* sc = reinterpret_cast<const int8_t*>(block + K8_SC + 2 * i);
              sum = sc[0] * half[0] + sc[1] * half[1];
            } else {
              for (int j = 0; j < 16; ++j) sum += (qs[j] & 0x0F) * qx[j] + (qs[j] >> 4) * qx[j + 16];
            }
            const float dw = half_to_float(f16_at(block, i));
            acc[i] += dw * x.d[at] * static_cast<float>(sum);
            if constexpr (T == QType::Q4_0) acc[i] -= 8.0f * dw * x.s[at];
            if constexpr (T == QType::Q4_1) acc[i] += half_to_float(f16_at(block + 8, i)) * x.s[at];
            if constexpr (T == QType::K8) acc[i] += f32_at(block + K8_M, i) * x.s[at];
          }
        }
      }
      for (int i = 0; i < 4; ++i) y[r * ldy + 4 * g + i] = acc[i];
    }
  }
}

template void qgemm_scalar<QType::Q4_0>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*,
                                        int64_t);
template void qgemm_scalar<QType::Q4_1>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*,
                                        int64_t);
template void qgemm_scalar<QType::Q8_0>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*,
                                        int64_t);
template void qgemm_scalar<QType::K8>(const uint8_t*, int64_t, int64_t, const QuantizedRows&, int64_t, float*,
                                      int64_t);

}  // namespace autan
