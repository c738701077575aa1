// autan._native: the compiled kernels, reachable from Python (each one also for its test).
//
// Work is split over output rows with ATen's parallel_for, so it runs on PyTorch's own thread
// pool (one OpenMP team for the whole process: a second team is what once halved the server).

#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <cstring>

#include "cpu_features.h"
#include "decode.h"
#include "qgemm.h"

namespace autan {
namespace {

// Repacked weights (qgemm.h): uint8 (N / 4, K / 32 * group_block_bytes).
void check_weights(const torch::Tensor& w, int64_t qtype, int64_t k) {
  TORCH_CHECK(supported(static_cast<int>(qtype)), "quantization type ", qtype, " has no native kernel");
  TORCH_CHECK(w.device().is_cpu() && w.scalar_type() == torch::kUInt8 && w.dim() == 2 && w.is_contiguous(),
              "weights must be a contiguous uint8 CPU tensor (N / 4, group bytes), repacked");
  TORCH_CHECK(k % QBLOCK == 0, "K=", k, " is not a whole number of blocks of ", QBLOCK);
  const auto expected = k / QBLOCK * static_cast<int64_t>(group_block_bytes(static_cast<QType>(qtype)));
  TORCH_CHECK(w.size(1) == expected, "weight groups have ", w.size(1), " bytes; K=", k, " needs ", expected);
}

struct Quantized {  // activations quantized once, owned for the call
  torch::Tensor q, d, s;
};

Quantized quantize(const torch::Tensor& x) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == torch::kFloat32 && x.dim() == 2,
              "activations must be a float32 CPU matrix (M, K)");
  const auto xc = x.contiguous();
  const int64_t m = xc.size(0), k = xc.size(1);
  TORCH_CHECK(k % QBLOCK == 0, "K=", k, " is not a whole number of blocks of ", QBLOCK);
  Quantized out{torch::empty({m, k}, torch::kInt8), torch::empty({m, k / QBLOCK}, torch::kFloat32),
                torch::empty({m, k / QBLOCK}, torch::kFloat32)};
  quantize_rows(xc.data_ptr<float>(), m, k, out.q.data_ptr<int8_t>(), out.d.data_ptr<float>(),
                out.s.data_ptr<float>());
  return out;
}

torch::Tensor qmatmul(const torch::Tensor& x, const torch::Tensor& w, int64_t qtype) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == torch::kFloat32 && x.dim() == 2,
              "activations must be a float32 CPU matrix (M, K)");
  check_weights(w, qtype, x.size(1));
  const auto xc = x.contiguous();
  const int64_t m = x.size(0), n = w.size(0) * GROUP_ROWS;
  auto y = torch::empty({m, n}, torch::kFloat32);
  activation_product(static_cast<QType>(qtype), w.data_ptr<uint8_t>(), w.size(0), xc.data_ptr<float>(), m, x.size(1),
                     y.data_ptr<float>());
  return y;
}

QType qtype_of(int64_t t) {
  TORCH_CHECK(supported(static_cast<int>(t)), "quantization type ", t, " has no native kernel");
  return static_cast<QType>(t);
}

// The file's rows of blocks, of one or more matrices stacked (N rows in all, N a multiple of 4),
// in the four-row groups of qgemm.h: (N / 4, blocks * group_block_bytes). One pass, in parallel
// over groups; `autan.model.kernels.repack` is the same permutation in torch operations.
torch::Tensor repack(const std::vector<torch::Tensor>& parts, int64_t qtype) {
  const QType type = qtype_of(qtype);
  TORCH_CHECK(!parts.empty(), "nothing to repack");
  const int64_t row_bytes = parts[0].size(1), size = static_cast<int64_t>(block_bytes(type));
  TORCH_CHECK(row_bytes % size == 0, "rows of ", row_bytes, " bytes are not whole blocks of ", size);
  std::vector<const uint8_t*> rows;
  for (const auto& p : parts) {
    TORCH_CHECK(p.scalar_type() == torch::kUInt8 && p.dim() == 2 && p.size(1) == row_bytes && p.stride(1) == 1,
                "blocks must be uint8 (rows, ", row_bytes, ") with contiguous rows");
    for (int64_t r = 0; r < p.size(0); ++r) rows.push_back(p.data_ptr<uint8_t>() + r * p.stride(0));
  }
  const int64_t n = static_cast<int64_t>(rows.size()), blocks = row_bytes / size;
  TORCH_CHECK(n % GROUP_ROWS == 0, n, " rows are not a whole number of groups of ", GROUP_ROWS);
  const int64_t scale_bytes = type == QType::Q4_1 ? 4 : 2, quant_bytes = size - scale_bytes;
  const int64_t group_bytes = static_cast<int64_t>(group_block_bytes(type));
  auto out = torch::empty({n / GROUP_ROWS, blocks * group_bytes}, torch::kUInt8);
  uint8_t* o = out.data_ptr<uint8_t>();
  at::parallel_for(0, n / GROUP_ROWS, 64, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      for (int64_t b = 0; b < blocks; ++b) {
        uint8_t* dst = o + (g * blocks + b) * group_bytes;
        for (int j = 0; j < GROUP_ROWS; ++j) {
          const uint8_t* src = rows[g * GROUP_ROWS + j] + b * size;
          std::memcpy(dst + 2 * j, src, 2);  // d
          if (type == QType::Q4_1) std::memcpy(dst + 8 + 2 * j, src + 2, 2);  // m
          std::memcpy(dst + GROUP_ROWS * scale_bytes + j * quant_bytes, src + scale_bytes, quant_bytes);
        }
      }
    }
  });
  return out;
}

// Rows [4 g0, 4 g1) of a repacked W (N / 4 groups of K columns) as float32 (4 (g1 - g0), K).
torch::Tensor dequantize(const torch::Tensor& w, int64_t qtype, int64_t k, int64_t g0, int64_t g1) {
  check_weights(w, qtype, k);
  TORCH_CHECK(0 <= g0 && g0 <= g1 && g1 <= w.size(0), "groups [", g0, ", ", g1, ") are not within [0, ", w.size(0), ")");
  auto out = torch::empty({(g1 - g0) * GROUP_ROWS, k}, torch::kFloat32);
  const auto type = static_cast<QType>(qtype);
  const uint8_t* blocks = w.data_ptr<uint8_t>();
  float* o = out.data_ptr<float>();
  at::parallel_for(g0, g1, 16, [&](int64_t a, int64_t b) {
    dequantize_groups(type, blocks, a, b, k, o + (a - g0) * GROUP_ROWS * k);
  });
  return out;
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> quantize_activations(const torch::Tensor& x) {
  auto q = quantize(x);
  return {q.q, q.d, q.s};
}


const uint8_t* blocks(const torch::Tensor& w, int64_t rows, int64_t cols, QType type) {
  const int64_t bytes = cols / QBLOCK * static_cast<int64_t>(group_block_bytes(type));
  TORCH_CHECK(rows % GROUP_ROWS == 0 && w.scalar_type() == torch::kUInt8 && w.is_contiguous() && w.dim() == 2 &&
                  w.size(0) == rows / GROUP_ROWS && w.size(1) == bytes,
              "a weight has shape ", w.sizes(), "; expected repacked uint8 (", rows / GROUP_ROWS, ", ", bytes, ")");
  return w.data_ptr<uint8_t>();
}

// Every dense block of a model, held once: the weights' pointers are checked and taken when
// the model is loaded, so a step only checks what changes from step to step.
class Layers {
 public:
  Layers(std::vector<torch::Tensor> weights, const std::vector<int64_t>& qtypes, int64_t dim, int64_t n_heads,
         int64_t n_kv, int64_t head_dim, int64_t hidden, double eps)
      : weights_(std::move(weights)) {
    const int64_t layers = static_cast<int64_t>(weights_.size()) / 6;
    TORCH_CHECK(weights_.size() == static_cast<size_t>(layers * 6) && qtypes.size() == static_cast<size_t>(layers * 4),
                "six tensors and four types per layer");
    const int64_t width = (n_heads + 2 * n_kv) * head_dim;
    TORCH_CHECK(n_kv > 0 && n_heads % n_kv == 0 && head_dim % 2 == 0 && dim % QBLOCK == 0 && hidden % QBLOCK == 0 &&
                    dim % GROUP_ROWS == 0 && width % GROUP_ROWS == 0 && (n_heads * head_dim) % QBLOCK == 0,
                "shapes the kernels cannot take");
    shape_ = {dim, n_heads, n_kv, head_dim, hidden, static_cast<float>(eps)};
    layers_.resize(layers);
    for (int64_t l = 0; l < layers; ++l) {
      const torch::Tensor* w = &weights_[l * 6];
      LayerWeights& lw = layers_[l];
      TORCH_CHECK(w[0].scalar_type() == torch::kFloat32 && w[0].numel() == dim &&
                      w[3].scalar_type() == torch::kFloat32 && w[3].numel() == dim && w[0].is_contiguous() &&
                      w[3].is_contiguous(),
                  "norm weights must be float32 (dim,)");
      lw.input_norm = w[0].data_ptr<float>();
      lw.post_norm = w[3].data_ptr<float>();
      lw.qkv_type = qtype_of(qtypes[l * 4]);
      lw.o_type = qtype_of(qtypes[l * 4 + 1]);
      lw.gate_up_type = qtype_of(qtypes[l * 4 + 2]);
      lw.down_type = qtype_of(qtypes[l * 4 + 3]);
      lw.qkv = blocks(w[1], width, dim, lw.qkv_type);
      lw.o = blocks(w[2], dim, n_heads * head_dim, lw.o_type);
      lw.gate_up = blocks(w[4], 2 * hidden, dim, lw.gate_up_type);
      lw.down = blocks(w[5], dim, hidden, lw.down_type);
    }
  }

  // x (N, dim) after every block; keys and values of the tokens kept are stored (see decode.cpp).
  torch::Tensor forward(const torch::Tensor& x_in, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& keys, const torch::Tensor& values, int64_t slot_dim,
                        const torch::Tensor& write_slots, const torch::Tensor& visible, const torch::Tensor& offsets) {
    const Shape& s = shape_;
    const int64_t layers = static_cast<int64_t>(layers_.size());
    TORCH_CHECK(x_in.scalar_type() == torch::kFloat32 && x_in.dim() == 2 && x_in.size(1) == s.dim,
                "x must be float32 (N, ", s.dim, ")");
    const int64_t n = x_in.size(0);
    TORCH_CHECK(slot_dim == 1 || slot_dim == 2, "slot_dim must be 1 or 2");
    const bool empty = keys.dim() == 4 && keys.size(slot_dim) == 0;  // nothing kept: every key is the step's own
    TORCH_CHECK(keys.scalar_type() == torch::kFloat32 && values.scalar_type() == torch::kFloat32 && keys.dim() == 4 &&
                    keys.sizes() == values.sizes() && keys.strides() == values.strides() &&
                    (empty || (keys.size(3) == s.head_dim && keys.stride(3) == 1 && keys.size(0) == layers &&
                               keys.size(slot_dim == 1 ? 2 : 1) == s.n_kv)),
                "keys and values must be float32 (L, ., ., head_dim), alike");
    TORCH_CHECK(cos.sizes() == torch::IntArrayRef({n, s.head_dim}) && sin.sizes() == cos.sizes() &&
                    cos.scalar_type() == torch::kFloat32 && sin.scalar_type() == torch::kFloat32 &&
                    cos.is_contiguous() && sin.is_contiguous(),
                "cos and sin must be float32 (N, head_dim)");
    TORCH_CHECK(write_slots.scalar_type() == torch::kLong && write_slots.numel() == n && offsets.numel() == n + 1 &&
                    offsets.scalar_type() == torch::kLong && visible.scalar_type() == torch::kLong &&
                    visible.is_contiguous() && offsets.is_contiguous() && write_slots.is_contiguous(),
                "write_slots (N,), visible and offsets (N + 1,) must be int64");
    const int64_t slots_along = keys.size(slot_dim);
    const int64_t* visible_p = visible.data_ptr<int64_t>();
    const int64_t* offsets_p = offsets.data_ptr<int64_t>();
    const int64_t* write_p = write_slots.data_ptr<int64_t>();
    TORCH_CHECK(offsets_p[0] == 0, "offsets must start at 0");
    for (int64_t e = 0; e < visible.numel(); ++e) {
      TORCH_CHECK(visible_p[e] < slots_along && visible_p[e] >= -n, "a visible key ", visible_p[e], " is out of range");
    }
    for (int64_t r = 0; r < n; ++r) {
      TORCH_CHECK(offsets_p[r] < offsets_p[r + 1] && offsets_p[r + 1] <= visible.numel(), "row ", r,
                  " sees no key, or its offsets are out of order");
      TORCH_CHECK(write_p[r] < slots_along && write_p[r] >= -1, "write slot ", write_p[r], " is out of range");
    }
    DecodeStep step;
    step.shape = shape_;
    step.layers = &layers_;
    step.kv = {keys.data_ptr<float>(), values.data_ptr<float>(), keys.stride(0), keys.stride(slot_dim),
               keys.stride(slot_dim == 1 ? 2 : 1)};
    step.rows = n;
    step.cos = cos.data_ptr<float>();
    step.sin = sin.data_ptr<float>();
    step.write_slots = write_p;
    step.visible = visible_p;
    step.offsets = offsets_p;
    auto x = x_in.contiguous().clone();
    decode_layers(step, x.data_ptr<float>());
    return x;
  }

 private:
  std::vector<torch::Tensor> weights_;  // kept alive: layers_ points into them
  Shape shape_;
  std::vector<LayerWeights> layers_;
};

std::map<std::string, bool> features() {
  const auto& f = cpu_features();
  return {{"avx2", f.avx2}, {"avx512", f.avx512}, {"avx512_vnni", f.avx512_vnni}, {"amx", f.amx}};
}

}  // namespace
}  // namespace autan

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "autan's compiled CPU kernels";
  m.attr("ABI") = 3;  // autan.native.ABI: a build left from older sources is not used
  m.def("qmatmul", &autan::qmatmul, py::call_guard<py::gil_scoped_release>(),
        "y (M, N) = x (M, K) float32 @ W^T, W repacked GGML blocks (N / 4, group bytes)");
  m.def("repack", &autan::repack, py::call_guard<py::gil_scoped_release>(),
        "the file's rows of blocks (one or more matrices, stacked) in four-row groups");
  m.def("dequantize", &autan::dequantize, py::call_guard<py::gil_scoped_release>(),
        "rows [4 g0, 4 g1) of repacked W (K columns) as float32: dequantize(w, qtype, k, g0, g1)");
  m.def("quantize_activations", &autan::quantize_activations, "x (M, K) -> int8 q, scales d, scaled sums s");
  py::class_<autan::Layers>(m, "Layers", "every dense block of a model, for one native call per step (decode.cpp)")
      .def(py::init<std::vector<torch::Tensor>, const std::vector<int64_t>&, int64_t, int64_t, int64_t, int64_t,
                    int64_t, double>())
      .def("forward", &autan::Layers::forward, py::call_guard<py::gil_scoped_release>(),
           "x after every block, for the step the visible-key lists describe");
  m.def("set_activation_parts", &autan::set_activation_parts,
        "quantize activations in 2 int8 parts (the default: ~1/64516 of a block's largest value) or 1 (llama.cpp's)");
  m.def("activation_parts", &autan::get_activation_parts, "1 or 2: see set_activation_parts");
  m.def("set_profiling", &autan::set_profiling, "time each part of decode_layers from now on (or stop)");
  m.def("profile", &autan::profile, "ns spent in each part of decode_layers since profiling began");
  m.def("isa", [] { return std::string(autan::isa_name(autan::kernel_isa())); }, "the instruction set the kernels use");
  m.def("set_isa", &autan::set_kernel_isa, "use this instruction set from now on; False if this CPU cannot");
  m.def("features", &autan::features, "what this CPU can do, asked at run time");
}
