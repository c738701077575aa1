// The fused decode step: every dense block of a Llama-family model in one native call, for the
// few tokens (rows) of a decode step or a short prompt chunk.
//
//   for each layer:  h = rmsnorm(x) * w_in
//                    q, k, v = h @ Wqkv^T (+ bias, Qwen2)   (one product: the maps are stacked)
//                    q, k = rope(q), rope(k)                (Hugging Face's halves layout)
//                    out = attention(q, keys it may see, values)   (query heads grouped by KV head)
//                    store k, v of the tokens the cache keeps
//                    x += out @ Wo^T
//                    h = rmsnorm(x) * w_post
//                    gate, up = h @ Wgate_up^T
//                    x += (silu(gate) * up) @ Wdown^T
//
// or, for Mixtral's sparse layers, the last three lines for each of the top k experts the router
// picks for a row, weighted (softmax over the k chosen logits) and summed, as `sparse_ffn` says.
//
// Which keys a row sees is given per row as a list of entries (the caller's `Step` works it out
// once per step): an entry >= 0 is a slot of the key/value storage, an entry < 0 is -1 - t, the
// key of this step's own token t (held in the step's buffer until the layer has attended, then
// stored in its slot: so a rolling buffer can never overwrite a key a row of this step reads).
//
// Layouts: x (N, dim) float32; storage keys/values (L, A, B, head_dim) float32 where the slot
// is dimension `slot_dim` (1: (L, slots, n_kv, hd), the engine's pool; 2: (L, n_kv, slots, hd),
// one sequence's cache). Weights are GGML blocks in four-row groups (formats.h).
//
// The step holds the order of the work, its buffers and its profile; the arithmetic is in the
// concept files it calls: rms_norm and rope (ops.h), the products (products.h), attention
// (attention.h) and silu_mul (ops.h), the last three per instruction set (arch/).

#include "step.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>

#include "attention.h"
#include "ops.h"

namespace autan {
namespace {

std::atomic<bool> profiling{false};
std::mutex profile_lock;
std::map<std::string, double> spent;  // ns per part

// Marks the end of each part of a step, when profiling is on (a clock read per part otherwise
// costs nothing worth measuring: it is not read at all).
class Timer {
 public:
  Timer() : on_(profiling.load()), last_(now()) {}
  void mark(const char* part) {
    if (!on_) return;
    const auto t = now();
    local_[part] += std::chrono::duration<double, std::nano>(t - last_).count();
    last_ = t;
  }
  ~Timer() {
    if (!on_) return;
    std::lock_guard<std::mutex> guard(profile_lock);
    for (const auto& [part, ns] : local_) spent[part] += ns;
  }

 private:
  static std::chrono::steady_clock::time_point now() { return std::chrono::steady_clock::now(); }
  bool on_;
  std::chrono::steady_clock::time_point last_;
  std::map<std::string, double> local_;
};

struct Buffers {
  std::vector<float> h, qkv, attn, proj, gate_up, act;
  std::vector<float> logits, weights, gathered, expert_gate_up, expert_act, expert_out;  // the sparse layers'
  std::vector<int64_t> chosen, rows;
  std::vector<char> taken;
  Activations a;
};

// One row's query head h, over the keys the row sees (storage slots, or this step's own tokens:
// see the top of this file), which are those of its KV head g = h / (n_heads / n_kv). One task
// per head rather than per KV head: with 3 KV heads on 2 cores, heads balance better.
void attend(const float* qkv, int64_t row, int64_t h, const Shape& s, const Storage& kv, int64_t layer,
            const int64_t* visible, int64_t count, float* out, std::vector<const float*>& keys,
            std::vector<const float*>& values, std::vector<float>& scores) {
  const AttendGroup attend_group = attend_group_kernel();
  const int64_t hd = s.head_dim, g = h / (s.n_heads / s.n_kv), width = (s.n_heads + 2 * s.n_kv) * hd;
  keys.resize(count);
  values.resize(count);
  scores.resize(count);
  for (int64_t j = 0; j < count; ++j) {
    const int64_t e = visible[j];
    if (e >= 0) {
      const int64_t at = layer * kv.layer_stride + e * kv.slot_stride + g * kv.head_stride;
      keys[j] = kv.keys + at;
      values[j] = kv.values + at;
    } else {
      keys[j] = qkv + (-1 - e) * width + (s.n_heads + g) * hd;
      values[j] = qkv + (-1 - e) * width + (s.n_heads + s.n_kv + g) * hd;
    }
  }
  attend_group(qkv + row * width + h * hd, 1, keys.data(), values.data(), count, hd, out + row * s.n_heads * hd + h * hd,
               scores.data());
}

// Mixtral's feed-forward for n rows of h, added into out (n, dim), as autan.model.moe computes
// it: softmax of the router's logits in float32, the top k kept and renormalised; then expert by
// expert, in order, its rows gathered (so its weights are read once for all of them), its SwiGLU
// run and each result added with the row's weight for it.
void sparse_ffn(const Experts& e, const float* h, int64_t n, const Shape& s, Buffers& b, SiluMul silu_mul,
                float* out) {
  const int64_t dim = s.dim, hidden = s.hidden, k = e.top_k;
  b.logits.resize(e.count);
  b.taken.resize(e.count);
  b.chosen.resize(n * k);
  b.weights.resize(n * k);
  for (int64_t r = 0; r < n; ++r) {
    const float* hr = h + r * dim;
    float top = -INFINITY;
    for (int64_t j = 0; j < e.count; ++j) {
      const float* w = e.router + j * dim;
      float dot = 0;
      for (int64_t i = 0; i < dim; ++i) dot += hr[i] * w[i];
      b.logits[j] = dot;
      top = std::max(top, dot);
    }
    float total = 0;
    for (auto& l : b.logits) total += (l = std::exp(l - top));
    std::fill(b.taken.begin(), b.taken.end(), 0);
    float kept = 0;
    for (int64_t slot = 0; slot < k; ++slot) {  // the k largest, the lower index first among equals
      int64_t best = -1;
      for (int64_t j = 0; j < e.count; ++j) {  // NaN never wins over a number, but an expert is always chosen
        if (!b.taken[j] && (best < 0 || b.logits[j] > b.logits[best])) best = j;
      }
      b.taken[best] = 1;
      b.chosen[r * k + slot] = best;
      b.weights[r * k + slot] = b.logits[best] / total;
      kept += b.weights[r * k + slot];
    }
    for (int64_t slot = 0; slot < k; ++slot) b.weights[r * k + slot] /= kept;
  }
  std::fill(out, out + n * dim, 0.0f);
  for (int64_t expert = 0; expert < e.count; ++expert) {
    b.rows.clear();  // (row, slot) pairs sent to this expert, as indices into chosen
    for (int64_t i = 0; i < n * k; ++i) {
      if (b.chosen[i] == expert) b.rows.push_back(i);
    }
    const int64_t m = static_cast<int64_t>(b.rows.size());
    if (m == 0) continue;
    b.gathered.resize(m * dim);
    for (int64_t i = 0; i < m; ++i) {
      std::copy(h + b.rows[i] / k * dim, h + (b.rows[i] / k + 1) * dim, b.gathered.data() + i * dim);
    }
    b.expert_gate_up.resize(m * 2 * hidden);
    b.a.product(e.gate_up[expert], b.gathered.data(), m, dim, b.expert_gate_up.data());
    b.expert_act.resize(m * hidden);
    for (int64_t i = 0; i < m; ++i) {
      const float* g = b.expert_gate_up.data() + i * 2 * hidden;
      silu_mul(g, g + hidden, hidden, b.expert_act.data() + i * hidden);
    }
    b.expert_out.resize(m * dim);
    b.a.product(e.down[expert], b.expert_act.data(), m, hidden, b.expert_out.data());
    for (int64_t i = 0; i < m; ++i) {
      const float w = b.weights[b.rows[i]];
      float* o = out + b.rows[i] / k * dim;
      const float* y = b.expert_out.data() + i * dim;
      for (int64_t j = 0; j < dim; ++j) o[j] += y[j] * w;
    }
  }
}

}  // namespace

void set_profiling(bool on) {
  std::lock_guard<std::mutex> guard(profile_lock);
  spent.clear();
  profiling = on;
}

std::map<std::string, double> profile() {
  std::lock_guard<std::mutex> guard(profile_lock);
  return spent;
}

void decode_layers(const DecodeStep& step, float* x) {
  const Shape& s = step.shape;
  const Storage& kv = step.kv;
  const int64_t n = step.rows, dim = s.dim, n_heads = s.n_heads, n_kv = s.n_kv, head_dim = s.head_dim,
                hidden = s.hidden, width = (n_heads + 2 * n_kv) * head_dim, layers = step.layers->size();
  float* xp = x;
  // the step's buffers, kept by the calling thread from step to step: no allocation once warm
  thread_local Buffers buffers;
  auto &h = buffers.h, &qkv = buffers.qkv, &attn = buffers.attn, &proj = buffers.proj, &gate_up = buffers.gate_up,
       &act = buffers.act;
  Activations& a = buffers.a;
  h.resize(n * dim);
  qkv.resize(n * width);
  attn.resize(n * n_heads * head_dim);
  proj.resize(n * dim);
  gate_up.resize(n * 2 * hidden);
  act.resize(n * hidden);
  const SiluMul silu_mul = silu_mul_kernel();
  const float *cos_p = step.cos, *sin_p = step.sin;
  const int64_t *visible_p = step.visible, *offsets_p = step.offsets, *write_p = step.write_slots;
  Timer timer;
  for (int64_t l = 0; l < layers; ++l) {
    const LayerWeights& lw = (*step.layers)[l];
    rms_norm(xp, lw.input_norm, n, dim, s.eps, h.data());
    timer.mark("norms");
    a.product(lw.qkv, h.data(), n, dim, qkv.data());
    if (lw.qkv_bias != nullptr) {
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t i = 0; i < width; ++i) qkv[r * width + i] += lw.qkv_bias[i];
      }
    }
    timer.mark("qkv product");
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t hh = 0; hh < n_heads + n_kv; ++hh) {
        rope(qkv.data() + r * width + hh * head_dim, cos_p + r * head_dim, sin_p + r * head_dim, head_dim);
      }
    }
    timer.mark("rope");
    at::parallel_for(0, n * n_heads, 1, [&](int64_t t0, int64_t t1) {
      thread_local std::vector<const float*> key_ptrs, value_ptrs;  // per pool thread, reused
      thread_local std::vector<float> scores;
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t r = t / n_heads, h = t % n_heads;
        attend(qkv.data(), r, h, s, kv, l, visible_p + offsets_p[r], offsets_p[r + 1] - offsets_p[r], attn.data(),
               key_ptrs, value_ptrs, scores);
      }
    });
    timer.mark("attention");
    for (int64_t r = 0; r < n; ++r) {  // now that every row has attended: keep this step's keys
      if (write_p[r] < 0) continue;
      for (int64_t g = 0; g < n_kv; ++g) {
        const int64_t at = l * kv.layer_stride + write_p[r] * kv.slot_stride + g * kv.head_stride;
        const float* k = qkv.data() + r * width + (n_heads + g) * head_dim;
        std::copy(k, k + head_dim, kv.keys + at);
        std::copy(k + n_kv * head_dim, k + (n_kv + 1) * head_dim, kv.values + at);
      }
    }
    timer.mark("store keys");
    a.product(lw.o, attn.data(), n, n_heads * head_dim, proj.data());
    timer.mark("o product");
    for (int64_t i = 0; i < n * dim; ++i) xp[i] += proj[i];
    rms_norm(xp, lw.post_norm, n, dim, s.eps, h.data());
    timer.mark("norms");
    if (lw.experts.router != nullptr) {
      sparse_ffn(lw.experts, h.data(), n, s, buffers, silu_mul, proj.data());
      timer.mark("experts");
      for (int64_t i = 0; i < n * dim; ++i) xp[i] += proj[i];
      continue;
    }
    a.product(lw.gate_up, h.data(), n, dim, gate_up.data());
    timer.mark("gate_up product");
    at::parallel_for(0, n, std::max<int64_t>(1, 16384 / hidden), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* g = gate_up.data() + r * 2 * hidden;
        silu_mul(g, g + hidden, hidden, act.data() + r * hidden);
      }
    });
    timer.mark("silu");
    a.product(lw.down, act.data(), n, hidden, proj.data());
    timer.mark("down product");
    for (int64_t i = 0; i < n * dim; ++i) xp[i] += proj[i];
  }
}

}  // namespace autan
