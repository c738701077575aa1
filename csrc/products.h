// Products of float activations with GGML block-quantized weights, repacked four rows at a time
// (formats.h):
//
//   y (M, N) = x (M, K) @ W^T,  W (N, K) in blocks of 32
//
// Activations are quantized once per call, per block of 32, to int8 with a float scale d and the
// block's sum s = d * sum(q) (llama.cpp's Q8_0/Q8_1 activations: quantize.h), so every weight
// block meets an integer dot product:
//   Q4_0  w = dw * (q - 8)    block dot = dw * dx * sum(q qx) - 8 dw * sx
//   Q4_1  w = dw * q + mw     block dot = dw * dx * sum(q qx) + mw * sx
//   Q8_0  w = dw * q          block dot = dw * dx * sum(q qx)
//   K8    w = dw * sc q + mw  block dot = dw * dx * (sc0 sum(q qx, first 16) + sc1 sum(rest)) + mw * sx
// An activation row in two parts (quantize.h) is the sum of both parts' block dots; the 4-bit
// kernels on x86 add the integer sums first, 256 sum(q qx1) + sum(q qx2), scaled once by dx2.
// A group's blocks stay in L1 while up to M activation rows meet them, so W is read from
// memory once per call whatever M is.
//
// qgemm_groups runs the kernel of the instruction set kernel_isa() names (arch/kernels.h);
// `product` splits a matrix's groups over the threads.
#pragma once

#include <cstdint>
#include <vector>

#include "formats.h"
#include "quantize.h"

namespace autan {

// y (m, ·) columns [4 g0, 4 g1) = quantized x (m rows) times the row groups [g0, g1) of the
// repacked W; y's row stride is `ldy`.
void qgemm_groups(QType type, const uint8_t* w, int64_t g0, int64_t g1, const QuantizedRows& x, int64_t m, float* y,
                  int64_t ldy);

struct Segment {  // rows of a matrix in one format: `groups` groups of four rows
  QType type;
  const uint8_t* w;
  int64_t groups;
};

// A matrix whose rows are one or more segments stacked, each in its own format (q, k and v of a
// Q4_K_M file: Q4_K, Q4_K, Q6_K), multiplied as one product.
using Matrix = std::vector<Segment>;

// y (m, n) = quantized x times the repacked W (n rows in n / 4 groups), split over the threads.
void product(const Matrix& w, const QuantizedRows& x, int64_t m, float* y);

// y (m, n) = x (m, k) float32 @ W^T: x quantized per block of 32 in one or two int8 parts (see
// quantize.h), then `product`, whose kernels meet a row's parts together; the buffers are kept
// from product to product.
struct Activations {
  QuantizedActivations quantized;

  void product(const Matrix& w, const float* x, int64_t m, int64_t k, float* y);
};

// The same for one matrix in one format, on buffers of the calling thread.
void activation_product(QType type, const uint8_t* w, int64_t groups, const float* x, int64_t m, int64_t k, float* y);

}  // namespace autan
