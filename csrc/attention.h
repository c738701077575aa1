// Attention for the decode step (step.cpp): the kernel of one KV head's query heads, chosen by
// instruction set.
#pragma once

#include <cstdint>

namespace autan {

// The query heads of one KV head (group of them, hd each) over `count` keys and values (by
// pointer): softmax(q k / sqrt(hd)) v, the scores in float32 with the maximum subtracted.
using AttendGroup = void (*)(const float* q, int64_t group, const float* const* keys, const float* const* values,
                             int64_t count, int64_t hd, float* out, float* scores);

// The version for the instruction set kernel_isa() names (arch/kernels.h).
AttendGroup attend_group_kernel();

}  // namespace autan
