// The fused decode step (step.cpp) on raw pointers; bindings.cpp checks the tensors and fills
// these in.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "products.h"

namespace autan {

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

// x (rows, dim) is updated in place through every block.
void decode_layers(const DecodeStep& step, float* x);

// Time spent in each part of decode_layers, summed over calls while profiling is on (ns).
void set_profiling(bool on);
std::map<std::string, double> profile();

}  // namespace autan
