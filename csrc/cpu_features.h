// What the CPU this process runs on can do, asked at run time (never assumed from the build
// machine): the kernels pick their instruction set from this.
#pragma once

#include <atomic>
#include <string>

namespace autan {

struct CpuFeatures {
  bool avx2 = false;  // with FMA and F16C: the AVX2 kernels need all three
  bool avx512 = false;  // F, BW, VL
  bool avx512_vnni = false;
  bool avx_vnni = false;  // vpdpbusd on 256-bit registers (VEX): Alder Lake and later, Zen 5
  bool amx = false;  // advertised by cpuid AND granted by the kernel (arch_prctl); some VMs fault
};

const CpuFeatures& cpu_features();

// The tiers, worst to best: the kernels of each are in arch/ (csrc/README.md).
enum class Isa { scalar, avx2, avx_vnni, avx512, avx512_vnni };
constexpr Isa ISAS[] = {Isa::scalar, Isa::avx2, Isa::avx_vnni, Isa::avx512, Isa::avx512_vnni};

// The instruction set the kernels use: the best this CPU has, or the one AUTAN_NATIVE_ISA names
// (or set_kernel_isa chose: tests run every path this machine can on one process).
Isa kernel_isa();
const char* isa_name(Isa isa);
// Use `name` (isa_name of a tier) from now on; false, and nothing changed, if this CPU cannot.
bool set_kernel_isa(const std::string& name);
bool can_run(Isa isa);

}  // namespace autan
