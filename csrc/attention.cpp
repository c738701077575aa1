// Attention for the decode step (attention.h): the dispatch to each instruction set's kernel.

#include "attention.h"

#include "arch/kernels.h"
#include "cpu_features.h"

namespace autan {

AttendGroup attend_group_kernel() {
  switch (kernel_isa()) {
    case Isa::avx512_vnni:  // the 256-bit code: no wider one yet
    case Isa::avx512:
    case Isa::avx_vnni:
    case Isa::avx2:
      return attend_group_avx2;
    case Isa::scalar:
      break;
  }
  return attend_group_scalar;
}

}  // namespace autan
