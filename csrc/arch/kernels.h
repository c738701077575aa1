// Each instruction-set tier's entry points: the code in arch/<tier>/ that the concept files
// (quantize.cpp, products.cpp, attention.cpp, ops.cpp) choose between at run time by kernel_isa().
// The scalar tier is portable C++; tests/model/test_native.py runs every tier this CPU has
// against float64 references (csrc/README.md: what a new tier adds).
//
// A tier's functions are compiled for its instruction set by a target attribute on each one (the
// build stays baseline x86-64), declared here with the same attribute: GCC takes declarations of
// one function with different targets for versions of it.
#pragma once

#include <cstdint>

#include "../formats.h"
#include "../quantize.h"

#define AUTAN_AVX2 __attribute__((target("avx2,fma,f16c")))
#define AUTAN_AVX_VNNI __attribute__((target("avx2,fma,f16c,avxvnni")))
#define AUTAN_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl")))
#define AUTAN_AVX512_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace autan {

// ---- quantize.h: x (m, k) -> q (m, k) int8, d and s (m, k / 32) ---------------------------------

void quantize_rows_scalar(const float* x, int64_t m, int64_t k, int8_t* q, float* d, float* s);
AUTAN_AVX2 void quantize_rows_avx2(const float* x, int64_t m, int64_t k, int8_t* q, float* d, float* s);

// ---- products.h: y columns [4 g0, 4 g1) = x (m rows) times row groups [g0, g1) of a W in format T
// (instantiated for Q4_0, Q4_1, Q8_0 and K8)

template <QType T>
void qgemm_scalar(const uint8_t* w, int64_t g0, int64_t g1, const QuantizedRows& x, int64_t m, float* y, int64_t ldy);
template <QType T>
AUTAN_AVX2 void qgemm_avx2(const uint8_t* w, int64_t g0, int64_t g1, const QuantizedRows& x, int64_t m, float* y,
                           int64_t ldy);
template <QType T>
AUTAN_AVX_VNNI void qgemm_avx_vnni(const uint8_t* w, int64_t g0, int64_t g1, const QuantizedRows& x, int64_t m,
                                   float* y, int64_t ldy);
template <QType T>
AUTAN_AVX512 void qgemm_avx512(const uint8_t* w, int64_t g0, int64_t g1, const QuantizedRows& x, int64_t m, float* y,
                               int64_t ldy);
template <QType T>
AUTAN_AVX512_VNNI void qgemm_avx512_vnni(const uint8_t* w, int64_t g0, int64_t g1, const QuantizedRows& x, int64_t m,
                                         float* y, int64_t ldy);

// ---- attention.h: the query heads of one KV head over `count` keys and values ------------------

void attend_group_scalar(const float* q, int64_t group, const float* const* keys, const float* const* values,
                         int64_t count, int64_t hd, float* out, float* scores);
AUTAN_AVX2 void attend_group_avx2(const float* q, int64_t group, const float* const* keys, const float* const* values,
                                  int64_t count, int64_t hd, float* out, float* scores);

// ---- ops.h: out = silu(gate) * up, one row of `hidden` -------------------------------------------

void silu_mul_scalar(const float* gate, const float* up, int64_t hidden, float* out);
AUTAN_AVX2 void silu_mul_avx2(const float* gate, const float* up, int64_t hidden, float* out);

}  // namespace autan
