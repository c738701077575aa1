// Activation quantization: float rows to int8 per block of 32, with a float scale d and the
// block's sum s = d * sum(q) (llama.cpp's Q8_0/Q8_1 activations), once per product, so every
// weight block meets an integer dot product (products.h); in one part or two.
#pragma once

#include <cstdint>
#include <vector>

#include "formats.h"

namespace autan {

// Activations: M rows of K int8 in `parts` parts, with per-block scale and scaled sum. Row r's part
// p is row r * parts + p of q, d and s.
struct QuantizedRows {
  const int8_t* q;
  const float* d;
  const float* s;
  int64_t k;
  int parts = 1;
};

// x (m, k) float32 -> q (m, k) int8, d and s (m, k / 32): round to nearest, ties to even.
void quantize_rows(const float* x, int64_t m, int64_t k, int8_t* q, float* d, float* s);

// Products of fewer rows than this are decode steps; from here, prompts (or many streams' steps).
constexpr int64_t PROMPT_ROWS = 8;

// Two parts or one, from now on, for decode steps and for prompts; false, and nothing changed,
// for any other number.
bool set_activation_parts(int decode, int prompt);
int get_activation_parts(bool prompt);

// The activations of one product, quantized, in buffers reused from product to product. In two
// parts, each row becomes two int8 rows: x = d1 q1 + d2 q2 + e, where q2 is the first part's
// rounding error x - d1 q1 (float32) quantized on the scale d2 = d1 / 256:
//   q2 = clamp(round(((x - d1 q1) * (127 / max|x|)) * 256), -127, 127)
// so |e| <= d2 / 2 = max|x| / (127 * 512) per block of 32, about 1 / 65 024 of the block's largest
// value (finer than bfloat16), but for the ~1% of values clamped at +-127, where |e| <= d2. Because d1 = 256 d2 exactly, a kernel adds the parts' integer sums
// as 256 sum(q1 w) + sum(q2 w) and scales them once by d2 (products.h). One part is llama.cpp's
// Q8 activations.
struct QuantizedActivations {
  std::vector<int8_t> q;
  std::vector<float> d, s;
  int parts = 1;  // of the rows last quantized

  // x (m, k) in get_activation_parts(m >= PROMPT_ROWS) parts.
  QuantizedRows quantize(const float* x, int64_t m, int64_t k);
};

}  // namespace autan
