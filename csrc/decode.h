// The fused decode step (decode.cpp) on raw pointers; module.cpp checks the tensors and fills
// these in.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "qgemm.h"

namespace autan {

struct LayerWeights {
  const float* input_norm;
  const float* post_norm;
  const uint8_t* qkv;
  const uint8_t* o;
  const uint8_t* gate_up;
  const uint8_t* down;
  QType qkv_type, o_type, gate_up_type, down_type;
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
void product(QType type, const uint8_t* w, int64_t groups, const QuantizedRows& x, int64_t m, float* y);

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
