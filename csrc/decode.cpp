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
// one sequence's cache). Weights are GGML blocks (see qgemm.h).

#include "decode.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>

#include "cpu_features.h"

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

std::atomic<int> activation_parts{2};

// The activations of one product, quantized, in buffers reused from product to product. In two
// parts (the default), each row becomes two int8 rows: x = d1 q1 + d2 q2 + e, q2 the rounding
// error of the first part quantized again, so |e| <= max|x| / (127 * 254 * 2) per block of 32,
// about 1 / 64 516 of the block's largest value: finer than bfloat16. The two rows meet each
// weight block while it is in registers (a four-row kernel call takes two rows' both parts),
// so a decode step reads its weights once either way. One part is llama.cpp's Q8 activations.
struct Activations {
  std::vector<int8_t> q;
  std::vector<float> d, s, rest, partial;

  void product(const Matrix& w, const float* x, int64_t m, int64_t k, float* y) {
    const int parts = activation_parts.load(std::memory_order_relaxed);
    const int64_t kb = k / QBLOCK, n = rows_of(w);
    q.resize(parts * m * k);
    d.resize(parts * m * kb);
    s.resize(parts * m * kb);
    if (parts == 1) {
      quantize_rows(x, m, k, q.data(), d.data(), s.data());
      autan::product(w, {q.data(), d.data(), s.data(), k}, m, y);
      return;
    }
    rest.resize(k);
    for (int64_t r = 0; r < m; ++r) {  // rows 2r and 2r + 1: row r's two parts
      const float* xr = x + r * k;
      int8_t* q1 = q.data() + 2 * r * k;
      float* d1 = d.data() + 2 * r * kb;
      quantize_rows(xr, 1, k, q1, d1, s.data() + 2 * r * kb);
      for (int64_t i = 0; i < k; ++i) rest[i] = xr[i] - d1[i / QBLOCK] * static_cast<float>(q1[i]);
      quantize_rows(rest.data(), 1, k, q1 + k, d1 + kb, s.data() + (2 * r + 1) * kb);
    }
    partial.resize(2 * m * n);
    autan::product(w, {q.data(), d.data(), s.data(), k}, 2 * m, partial.data());
    for (int64_t r = 0; r < m; ++r) {
      const float *first = partial.data() + 2 * r * n, *second = first + n;
      for (int64_t j = 0; j < n; ++j) y[r * n + j] = first[j] + second[j];
    }
  }

  static int64_t rows_of(const Matrix& w) {
    int64_t groups = 0;
    for (const auto& segment : w) groups += segment.groups;
    return groups * GROUP_ROWS;
  }
};

struct Buffers {
  std::vector<float> h, qkv, attn, proj, gate_up, act;
  std::vector<float> logits, weights, gathered, expert_gate_up, expert_act, expert_out;  // the sparse layers'
  std::vector<int64_t> chosen, rows;
  std::vector<char> taken;
  Activations a;
};

void rms_norm(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    double sum = 0;  // as the reference: the mean of squares in at least float32
    for (int64_t i = 0; i < dim; ++i) sum += static_cast<double>(xr[i]) * xr[i];
    const float scale = 1.0f / std::sqrt(static_cast<float>(sum / dim) + eps);
    for (int64_t i = 0; i < dim; ++i) out[r * dim + i] = weight[i] * (xr[i] * scale);
  }
}

// x (hd) rotated in place, pairs (i, i + hd/2) as Hugging Face's rotate_half does: x * cos +
// roll(x, hd/2) * sin, with `sin`'s first half negated (autan.model.rope.rope_cos_sin's form).
void rope(float* x, const float* cos, const float* sin, int64_t hd) {
  const int64_t half = hd / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    x[i] = a * cos[i] + b * sin[i];
    x[i + half] = b * cos[i + half] + a * sin[i + half];
  }
}

// The query heads of one KV head (group of them, hd each) over `count` keys and values (by
// pointer): softmax(q k / sqrt(hd)) v, the scores in float32 with the maximum subtracted.
using AttendGroup = void (*)(const float* q, int64_t group, const float* const* keys, const float* const* values,
                             int64_t count, int64_t hd, float* out, float* scores);

void attend_group_scalar(const float* q, int64_t group, const float* const* keys, const float* const* values,
                         int64_t count, int64_t hd, float* out, float* scores) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (int64_t h = 0; h < group; ++h) {
    const float* qh = q + h * hd;
    float top = -INFINITY;
    for (int64_t j = 0; j < count; ++j) {
      float dot = 0;
      for (int64_t i = 0; i < hd; ++i) dot += qh[i] * keys[j][i];
      scores[j] = dot * scale;
      top = std::max(top, scores[j]);
    }
    float total = 0;
    for (int64_t j = 0; j < count; ++j) total += (scores[j] = std::exp(scores[j] - top));
    float* o = out + h * hd;
    std::fill(o, o + hd, 0.0f);
    for (int64_t j = 0; j < count; ++j) {
      const float p = scores[j] / total;
      for (int64_t i = 0; i < hd; ++i) o[i] += p * values[j][i];
    }
  }
}

#define AVX2 __attribute__((target("avx2,fma")))

// e^x for 8 floats (Cephes' expf: x = n ln2 + r, a degree-5 polynomial in r; relative error
// about 1e-7 over the range softmax uses, where x <= 0).
AVX2 inline __m256 exp8(__m256 x) {
  x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f)), _mm256_set1_ps(-88.3762626647949f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500E-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
  p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i exponent = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(exponent));
}

AVX2 inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

AVX2 inline float hsum8(__m256 v) {
  __m128 m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_add_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)));
}

// Eight keys' dot products with q at once: eight accumulators, reduced together by a tree of
// horizontal adds into one vector of eight scores.
AVX2 inline __m256 dots8(const float* q, const float* const* keys, int64_t hd) {
  __m256 a[8];
  for (int j = 0; j < 8; ++j) a[j] = _mm256_setzero_ps();
  for (int64_t i = 0; i < hd; i += 8) {
    const __m256 qi = _mm256_loadu_ps(q + i);
    for (int j = 0; j < 8; ++j) a[j] = _mm256_fmadd_ps(qi, _mm256_loadu_ps(keys[j] + i), a[j]);
  }
  const __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
  const __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

AVX2 void attend_group_avx2(const float* q, int64_t group, const float* const* keys, const float* const* values,
                            int64_t count, int64_t hd, float* out, float* scores) {
  if (hd % 8 != 0) {
    attend_group_scalar(q, group, keys, values, count, hd, out, scores);
    return;
  }
  const __m256 scale = _mm256_set1_ps(1.0f / std::sqrt(static_cast<float>(hd)));
  for (int64_t h = 0; h < group; ++h) {
    const float* qh = q + h * hd;
    __m256 top8 = _mm256_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 8 <= count; j += 8) {
      const __m256 s = _mm256_mul_ps(dots8(qh, keys + j, hd), scale);
      _mm256_storeu_ps(scores + j, s);
      top8 = _mm256_max_ps(top8, s);
    }
    float top = hmax(top8);
    for (; j < count; ++j) {
      __m256 acc = _mm256_setzero_ps();
      for (int64_t i = 0; i < hd; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(qh + i), _mm256_loadu_ps(keys[j] + i), acc);
      scores[j] = hsum8(acc) * _mm256_cvtss_f32(scale);
      top = std::max(top, scores[j]);
    }
    __m256 total8 = _mm256_setzero_ps();
    const __m256 top_v = _mm256_set1_ps(top);
    for (j = 0; j + 8 <= count; j += 8) {
      const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(scores + j), top_v));
      _mm256_storeu_ps(scores + j, e);
      total8 = _mm256_add_ps(total8, e);
    }
    float total = hsum8(total8);
    for (; j < count; ++j) total += (scores[j] = std::exp(scores[j] - top));
    float* o = out + h * hd;
    const __m256 inverse = _mm256_set1_ps(1.0f / total);
    for (int64_t i = 0; i < hd; i += 32) {  // four output vectors at a time: each value row read once per 32
      const int64_t width = std::min<int64_t>(32, hd - i) / 8;
      __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
      for (int64_t k = 0; k < count; ++k) {
        const __m256 p = _mm256_set1_ps(scores[k]);
        for (int64_t v = 0; v < width; ++v) acc[v] = _mm256_fmadd_ps(p, _mm256_loadu_ps(values[k] + i + 8 * v), acc[v]);
      }
      for (int64_t v = 0; v < width; ++v) _mm256_storeu_ps(o + i + 8 * v, _mm256_mul_ps(acc[v], inverse));
    }
  }
}

// out = silu(gate) * up = gate / (1 + e^-gate) * up, for one row of `hidden`.
using SiluMul = void (*)(const float* gate, const float* up, int64_t hidden, float* out);

void silu_mul_scalar(const float* gate, const float* up, int64_t hidden, float* out) {
  for (int64_t i = 0; i < hidden; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

AVX2 void silu_mul_avx2(const float* gate, const float* up, int64_t hidden, float* out) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= hidden; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 sig = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(zero, g))));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(g, sig), _mm256_loadu_ps(up + i)));
  }
  silu_mul_scalar(gate + i, up + i, hidden - i, out + i);
}

// One row's query head h, over the keys the row sees (storage slots, or this step's own tokens:
// see the top of this file), which are those of its KV head g = h / (n_heads / n_kv). One task
// per head rather than per KV head: with 3 KV heads on 2 cores, heads balance better.
void attend(const float* qkv, int64_t row, int64_t h, const Shape& s, const Storage& kv, int64_t layer,
            const int64_t* visible, int64_t count, float* out, std::vector<const float*>& keys,
            std::vector<const float*>& values, std::vector<float>& scores) {
  const AttendGroup attend_group = kernel_isa() == Isa::avx2 ? attend_group_avx2 : attend_group_scalar;
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

void product(const Matrix& w, const QuantizedRows& x, int64_t m, float* y) {
  const int64_t ldy = Activations::rows_of(w), groups = ldy / GROUP_ROWS;
  // groups per task: enough work to be worth a thread, few enough to balance the cores
  const int64_t grain = std::max<int64_t>(2, 64 / m);
  at::parallel_for(0, groups, grain, [&](int64_t g0, int64_t g1) {
    int64_t start = 0;  // the segments' share of [g0, g1), each in its own format
    for (const auto& segment : w) {
      const int64_t a = std::max(g0, start), b = std::min(g1, start + segment.groups);
      if (a < b) qgemm_groups(segment.type, segment.w, a - start, b - start, x, m, y + start * GROUP_ROWS, ldy);
      start += segment.groups;
    }
  });
}

void activation_product(QType type, const uint8_t* w, int64_t groups, const float* x, int64_t m, int64_t k, float* y) {
  thread_local Activations a;
  a.product({{type, w, groups}}, x, m, k, y);
}

bool set_activation_parts(int parts) {
  if (parts != 1 && parts != 2) return false;
  activation_parts = parts;
  return true;
}

int get_activation_parts() {
  return activation_parts.load();
}

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
  const SiluMul silu_mul = kernel_isa() == Isa::avx2 ? silu_mul_avx2 : silu_mul_scalar;
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
    for (int64_t r = 0; r < n; ++r) {
      const float* g = gate_up.data() + r * 2 * hidden;
      silu_mul(g, g + hidden, hidden, act.data() + r * hidden);
    }
    timer.mark("silu");
    a.product(lw.down, act.data(), n, hidden, proj.data());
    timer.mark("down product");
    for (int64_t i = 0; i < n * dim; ++i) xp[i] += proj[i];
  }
}

}  // namespace autan
