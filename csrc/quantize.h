// Activation quantization: float rows to int8 per block of 32, with a float scale d and the
// block's sum s = d * sum(q) (llama.cpp's Q8_0/Q8_1 activations), once per product, so every
// weight block meets an integer dot product (products.h); in one part or two.
#pragma once

#include <cstdint>
#include <vector>

#include "formats.h"

namespace autan {

struct QuantizedRows {  // activations: M rows of K int8, with per-block scale and scaled sum
  const int8_t* q;
  const float* d;
  const float* s;
  int64_t k;
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
// parts (the default), each row becomes two int8 rows: x = d1 q1 + d2 q2 + e, q2 the rounding
// error of the first part quantized again, so |e| <= max|x| / (127 * 254 * 2) per block of 32,
// about 1 / 64 516 of the block's largest value: finer than bfloat16. The two rows meet each
// weight block while it is in registers (a four-row kernel call takes two rows' both parts),
// so a decode step reads its weights once either way. One part is llama.cpp's Q8 activations.
struct QuantizedActivations {
  std::vector<int8_t> q;
  std::vector<float> d, s;
  int parts = 1;  // of the rows last quantized

  // x (m, k) in get_activation_parts(m >= PROMPT_ROWS) parts: parts * m rows, row r's two parts
  // rows 2r and 2r + 1.
  QuantizedRows quantize(const float* x, int64_t m, int64_t k);
};

}  // namespace autan
