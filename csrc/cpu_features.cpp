// CPU feature detection: cpuid through the compiler's builtins, and for AMX the kernel's
// permission to use tile state (arch_prctl ARCH_REQ_XCOMP_PERM), without which ldtilecfg faults
// even where cpuid advertises AMX (seen on these VMs).

#include "cpu_features.h"

#include <cstdlib>
#include <sys/syscall.h>
#include <unistd.h>

namespace autan {
namespace {

constexpr int ARCH_REQ_XCOMP_PERM = 0x1023;
constexpr int XFEATURE_XTILEDATA = 18;

bool amx_granted() {
#if defined(__x86_64__) && defined(SYS_arch_prctl)
  if (!__builtin_cpu_supports("amx-tile") || !__builtin_cpu_supports("amx-int8")) return false;
  return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
  return false;
#endif
}

CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__)
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  f.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl");
  f.avx512_vnni = f.avx512 && __builtin_cpu_supports("avx512vnni");
  f.amx = amx_granted();
#endif
  return f;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

namespace {

bool can_run(Isa isa) {
  return isa == Isa::scalar || (isa == Isa::avx2 && cpu_features().avx2);
}

Isa best() {
  const char* forced = std::getenv("AUTAN_NATIVE_ISA");
  if (forced != nullptr && std::string(forced) == "scalar") return Isa::scalar;
  return cpu_features().avx2 ? Isa::avx2 : Isa::scalar;
}

std::atomic<Isa>& chosen() {
  static std::atomic<Isa> isa{best()};
  return isa;
}

}  // namespace

Isa kernel_isa() {
  return chosen().load(std::memory_order_relaxed);
}

const char* isa_name(Isa isa) {
  return isa == Isa::avx2 ? "avx2" : "scalar";
}

bool set_kernel_isa(const std::string& name) {
  for (const Isa isa : {Isa::scalar, Isa::avx2}) {
    if (name == isa_name(isa) && can_run(isa)) {
      chosen().store(isa);
      return true;
    }
  }
  return false;
}

}  // namespace autan
