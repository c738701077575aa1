// The fused decode step (decode.cpp) on raw pointers; module.cpp checks the tensors and fills
// these in.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "qgemm.h"

namespace autan {

struct Segment {  // rows of a matrix in one format: `groups` groups of four rows
  QType type;
  const uint8_t* w;
  int64_t groups;
};

// A matrix whose rows are one or more segments stacked, each in its own format (q, k and v of a
// Q4_K_M file: Q4_K, Q4_K, Q6_K), multiplied as one product.
using Matrix = std::vector<Segment>;

// Mixtral's sparse feed-forward: a router picks top_k of `count` experts per row, each a
// SwiGLU of its own gate_up and down.
struct Experts {
  const float* router = nullptr;  // (count, dim) float32; null where the layer is dense
  int64_t count = 0, top_k = 0;
  std::vector<Matrix> gate_up, down;
};

struct LayerWeights {
  const float* input_norm;
  const float* post_norm;
  const float* qkv_bias = nullptr;  // (q, k, v widths) added to the qkv product (Qwen2); null: none
  Matrix qkv, o, gate_up, down;  // gate_up and down empty where the layer has experts
  Experts experts;
};

struct Shape {
  int64_t dim, n_heads, n_kv, head_dim, hidden;
  float eps;
};

struct Storage {  // where keys and values live: element (layer, slot, head, 0..hd)
  float* keys;
  float* values;
  int64_t layer_stride, slot_stride, head_stride;
};

struct DecodeStep {
  Shape shape;
  const std::vector<LayerWeights>* layers;  // the model's, held by its caller
  Storage kv;
  int64_t rows;
  const float* cos;  // (rows, head_dim)
  const float* sin;
  const int64_t* write_slots;  // (rows,)
  const int64_t* visible;
  const int64_t* offsets;  // (rows + 1,)
};

// y (m, n) = quantized x times the repacked W (n rows in n / 4 groups), split over the threads.
void product(const Matrix& w, const QuantizedRows& x, int64_t m, float* y);

// y (m, n) = x (m, k) float32 @ W^T: x quantized per block of 32 in one or two int8 parts (see
// decode.cpp), then `product`.
void activation_product(QType type, const uint8_t* w, int64_t groups, const float* x, int64_t m, int64_t k, float* y);
// Two parts (the default) or one, from now on; false for any other number.
bool set_activation_parts(int parts);
int get_activation_parts();

// x (rows, dim) is updated in place through every block.
void decode_layers(const DecodeStep& step, float* x);

// Time spent in each part of decode_layers, summed over calls while profiling is on (ns).
void set_profiling(bool on);
std::map<std::string, double> profile();

}  // namespace autan
