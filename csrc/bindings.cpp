// autan._native: the compiled kernels, reachable from Python (each one also for its test). Only
// the bindings: each checks its tensors and calls the C++ API (step.h, products.h, quantize.h,
// repack.h, formats.h, cpu_features.h).
//
// Work is split over output rows with ATen's parallel_for, so it runs on PyTorch's own thread
// pool (one OpenMP team for the whole process: a second team is what once halved the server).

#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <sys/mman.h>

#include <cstring>
#include <optional>

#include "cpu_features.h"
#include "formats.h"
#include "products.h"
#include "quantize.h"
#include "repack.h"
#include "step.h"

namespace autan {
namespace {

// Repacked weights (formats.h): uint8 (N / 4, K / 32 * group_block_bytes).
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
  if (m == 0) return y;  // no rows (a prefill chunk that needs no logits): nothing to split between threads
  activation_product(static_cast<QType>(qtype), w.data_ptr<uint8_t>(), w.size(0), xc.data_ptr<float>(), m, x.size(1),
                     y.data_ptr<float>());
  return y;
}

QType qtype_of(int64_t t) {
  TORCH_CHECK(supported(static_cast<int>(t)), "quantization type ", t, " has no native kernel");
  return static_cast<QType>(t);
}

// Asks the kernel to back [p, p + bytes) with 2 MiB pages where it allows (transparent huge pages
// set to `madvise`, as on these machines, or `always`): a decode step streams every weight once,
// and on 4 KiB pages each 4 KiB costs a TLB miss. Only the whole 2 MiB pages inside the range;
// nothing happens where the kernel says no.
void ask_for_huge_pages(void* p, int64_t bytes) {
#ifdef MADV_HUGEPAGE
  constexpr uintptr_t HUGE = uintptr_t{1} << 21;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + HUGE - 1) & ~(HUGE - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(bytes)) & ~(HUGE - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#endif
}

// The file's rows of blocks, of one or more matrices stacked (N rows in all, N a multiple of 4),
// in the four-row groups of formats.h: (N / 4, K / 32 * group_block_bytes(kernel_type)). One
// pass, in parallel over groups; for Q4_0, Q4_1 and Q8_0 `tests/references.py's repack` is the
// same permutation in torch operations.
torch::Tensor repack(const std::vector<torch::Tensor>& parts, int64_t file_type) {
  TORCH_CHECK(repackable(static_cast<int>(file_type)), "quantization type ", file_type, " has no native kernel");
  const auto file = static_cast<FileType>(file_type);
  TORCH_CHECK(!parts.empty(), "nothing to repack");
  const int64_t row_bytes = parts[0].size(1), size = static_cast<int64_t>(file_block_bytes(file));
  TORCH_CHECK(row_bytes % size == 0, "rows of ", row_bytes, " bytes are not whole blocks of ", size);
  std::vector<const uint8_t*> rows;
  for (const auto& p : parts) {
    TORCH_CHECK(p.scalar_type() == torch::kUInt8 && p.dim() == 2 && p.size(1) == row_bytes && p.stride(1) == 1,
                "blocks must be uint8 (rows, ", row_bytes, ") with contiguous rows");
    for (int64_t r = 0; r < p.size(0); ++r) rows.push_back(p.data_ptr<uint8_t>() + r * p.stride(0));
  }
  const int64_t n = static_cast<int64_t>(rows.size()), values = row_bytes / size * file_block_values(file);
  TORCH_CHECK(n % GROUP_ROWS == 0, n, " rows are not a whole number of groups of ", GROUP_ROWS);
  const int64_t group_bytes = values / QBLOCK * static_cast<int64_t>(group_block_bytes(kernel_type(file)));
  auto out = torch::empty({n / GROUP_ROWS, group_bytes}, torch::kUInt8);
  ask_for_huge_pages(out.data_ptr<uint8_t>(), out.numel());  // before the first write faults its pages in
  uint8_t* o = out.data_ptr<uint8_t>();
  at::parallel_for(0, n / GROUP_ROWS, 64, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) repack_group(file, rows.data() + g * GROUP_ROWS, values, o + g * group_bytes);
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


using Segments = std::vector<std::pair<torch::Tensor, int64_t>>;  // (repacked rows, kernel format)

// A map of `rows` x `cols` from its segments, each checked: repacked uint8 of whole groups.
Matrix matrix(const Segments& segments, int64_t rows, int64_t cols, const char* name) {
  Matrix out;
  int64_t total = 0;
  for (const auto& [w, t] : segments) {
    const QType type = qtype_of(t);
    const int64_t bytes = cols / QBLOCK * static_cast<int64_t>(group_block_bytes(type));
    TORCH_CHECK(w.scalar_type() == torch::kUInt8 && w.is_contiguous() && w.dim() == 2 && w.size(1) == bytes,
                "a segment of ", name, " has shape ", w.sizes(), "; expected repacked uint8 (groups, ", bytes, ")");
    out.push_back({type, w.data_ptr<uint8_t>(), w.size(0)});
    total += w.size(0) * GROUP_ROWS;
  }
  TORCH_CHECK(total == rows, name, " has ", total, " rows in its segments; expected ", rows);
  return out;
}

// Every block of a model, held once: the weights' pointers are checked and taken when
// the model is loaded, so a step only checks what changes from step to step.
class Layers {
 public:
  // norms: input and post-attention norm per layer; maps: qkv, o, gate_up, down per layer, each
  // as segments (the maps fused, or stacked by rows in their own formats). A layer with experts
  // has empty gate_up and down, its router (experts, dim) float32 in `routers` (an empty tensor
  // for a dense layer) and in `experts` each expert's gate_up and down, expert after expert.
  // `biases`: per layer the q, k and v biases, float32 (width,), or an empty tensor.
  Layers(std::vector<torch::Tensor> norms, const std::vector<Segments>& maps, std::vector<torch::Tensor> biases,
         std::vector<torch::Tensor> routers,
         const std::vector<std::vector<Segments>>& experts, int64_t top_k, int64_t dim, int64_t n_heads, int64_t n_kv,
         int64_t head_dim, int64_t hidden, double eps)
      : norms_(std::move(norms)),
        maps_(maps),
        biases_(std::move(biases)),
        routers_(std::move(routers)),
        experts_(experts) {
    const int64_t layers = static_cast<int64_t>(norms_.size()) / 2;
    TORCH_CHECK(norms_.size() == static_cast<size_t>(layers * 2) && maps.size() == static_cast<size_t>(layers * 4) &&
                    routers_.size() == static_cast<size_t>(layers) && experts.size() == static_cast<size_t>(layers) &&
                    biases_.size() == static_cast<size_t>(layers),
                "two norms, four maps, a bias, a router and a list of experts per layer");
    const int64_t width = (n_heads + 2 * n_kv) * head_dim;
    TORCH_CHECK(n_kv > 0 && n_heads % n_kv == 0 && head_dim % 2 == 0 && dim % QBLOCK == 0 && hidden % QBLOCK == 0 &&
                    dim % GROUP_ROWS == 0 && width % GROUP_ROWS == 0 && (n_heads * head_dim) % QBLOCK == 0,
                "shapes the kernels cannot take");
    shape_ = {dim, n_heads, n_kv, head_dim, hidden, static_cast<float>(eps)};
    layers_.resize(layers);
    for (int64_t l = 0; l < layers; ++l) {
      const torch::Tensor* norm = &norms_[l * 2];
      TORCH_CHECK(norm[0].scalar_type() == torch::kFloat32 && norm[0].numel() == dim &&
                      norm[1].scalar_type() == torch::kFloat32 && norm[1].numel() == dim && norm[0].is_contiguous() &&
                      norm[1].is_contiguous(),
                  "norm weights must be float32 (dim,)");
      LayerWeights& lw = layers_[l];
      lw.input_norm = norm[0].data_ptr<float>();
      lw.post_norm = norm[1].data_ptr<float>();
      const Segments* m = &maps[l * 4];
      lw.qkv = matrix(m[0], width, dim, "qkv");
      const torch::Tensor& bias = biases_[l];
      if (bias.numel() > 0) {
        TORCH_CHECK(bias.scalar_type() == torch::kFloat32 && bias.is_contiguous() && bias.numel() == width,
                    "a qkv bias must be float32 (", width, ",)");
        lw.qkv_bias = bias.data_ptr<float>();
      }
      lw.o = matrix(m[1], dim, n_heads * head_dim, "o");
      const torch::Tensor& router = routers_[l];
      if (router.numel() == 0) {
        lw.gate_up = matrix(m[2], 2 * hidden, dim, "gate_up");
        lw.down = matrix(m[3], dim, hidden, "down");
        continue;
      }
      const auto& e = experts[l];
      TORCH_CHECK(m[2].empty() && m[3].empty(), "a layer with experts has no dense gate_up or down");
      TORCH_CHECK(router.scalar_type() == torch::kFloat32 && router.dim() == 2 && router.size(1) == dim &&
                      router.is_contiguous() && static_cast<int64_t>(e.size()) == 2 * router.size(0),
                  "a router must be float32 (experts, dim) with a gate_up and a down per expert");
      TORCH_CHECK(0 < top_k && top_k <= router.size(0), "top_k=", top_k, " is not within 1..", router.size(0));
      lw.experts.router = router.data_ptr<float>();
      lw.experts.count = router.size(0);
      lw.experts.top_k = top_k;
      for (int64_t x = 0; x < router.size(0); ++x) {
        lw.experts.gate_up.push_back(matrix(e[2 * x], 2 * hidden, dim, "an expert's gate_up"));
        lw.experts.down.push_back(matrix(e[2 * x + 1], dim, hidden, "an expert's down"));
      }
    }
  }

  // x (N, dim) after every block; keys and values of the tokens kept are stored (see step.cpp).
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
  std::vector<torch::Tensor> norms_;  // kept alive: layers_ points into them and into maps_
  std::vector<Segments> maps_;
  std::vector<torch::Tensor> biases_, routers_;
  std::vector<std::vector<Segments>> experts_;
  Shape shape_;
  std::vector<LayerWeights> layers_;
};

std::map<std::string, bool> features() {
  const auto& f = cpu_features();
  return {{"avx2", f.avx2},
          {"avx_vnni", f.avx_vnni},
          {"avx512", f.avx512},
          {"avx512_vnni", f.avx512_vnni},
          {"amx", f.amx}};
}

}  // namespace
}  // namespace autan

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "autan's compiled CPU kernels";
  m.attr("ABI") = 8;  // autan.native.ABI: a build left from older sources is not used
  m.def("qmatmul", &autan::qmatmul, py::call_guard<py::gil_scoped_release>(),
        "y (M, N) = x (M, K) float32 @ W^T, W repacked GGML blocks (N / 4, group bytes)");
  m.def("repack", &autan::repack, py::call_guard<py::gil_scoped_release>(),
        "the file's rows of blocks (one or more matrices, stacked) in four-row groups of kernel_type(file_type)");
  m.def(
      "kernel_type",
      [](int64_t file_type) {
        TORCH_CHECK(autan::repackable(static_cast<int>(file_type)), "quantization type ", file_type,
                    " has no native kernel");
        return static_cast<int64_t>(autan::kernel_type(static_cast<autan::FileType>(file_type)));
      },
      "the kernels' format that repack writes a GGML type's blocks in");
  m.def("dequantize", &autan::dequantize, py::call_guard<py::gil_scoped_release>(),
        "rows [4 g0, 4 g1) of repacked W (K columns) as float32: dequantize(w, qtype, k, g0, g1)");
  m.def("quantize_activations", &autan::quantize_activations, "x (M, K) -> int8 q, scales d, scaled sums s");
  py::class_<autan::Layers>(m, "Layers", "every block of a model (dense or with experts), for one native call per step (step.cpp)")
      .def(py::init<std::vector<torch::Tensor>, const std::vector<autan::Segments>&, std::vector<torch::Tensor>,
                    std::vector<torch::Tensor>, const std::vector<std::vector<autan::Segments>>&, int64_t, int64_t, int64_t, int64_t, int64_t,
                    int64_t, double>())
      .def("forward", &autan::Layers::forward, py::call_guard<py::gil_scoped_release>(),
           "x after every block, for the step the visible-key lists describe");
  m.def(
      "set_activation_parts",
      [](int parts, std::optional<int> prompt) { return autan::set_activation_parts(parts, prompt.value_or(parts)); },
      py::arg("parts"), py::arg("prompt") = py::none(),
      "quantize activations in 2 int8 parts (the default: ~1/65024 of a block's largest value) or 1 (llama.cpp's): "
      "`parts` for decode steps (fewer than 8 rows), `prompt` (default: the same) for products of more rows");
  m.def("activation_parts", &autan::get_activation_parts, py::arg("prompt") = false,
        "1 or 2, for decode steps or (prompt=True) prompts: see set_activation_parts");
  m.def("set_profiling", &autan::set_profiling, "time each part of decode_layers from now on (or stop)");
  m.def("profile", &autan::profile, "ns spent in each part of decode_layers since profiling began");
  m.def("isa", [] { return std::string(autan::isa_name(autan::kernel_isa())); }, "the instruction set the kernels use");
  m.def("set_isa", &autan::set_kernel_isa, "use this instruction set from now on; False if this CPU cannot");
  m.def(
      "isas",
      [] {
        std::vector<std::string> names;
        for (const autan::Isa isa : autan::ISAS) names.emplace_back(autan::isa_name(isa));
        return names;
      },
      "every instruction-set tier the kernels have, worst to best (whether or not this CPU runs it)");
  m.def("features", &autan::features, "what this CPU can do, asked at run time");
}
