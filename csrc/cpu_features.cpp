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
  f.avx_vnni = f.avx2 && __builtin_cpu_supports("avxvnni");
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

// AUTAN_NATIVE_ISA names a tier to use instead of the best (any this CPU can run); unset, empty or
// one it cannot run: the best.
Isa best() {
  const char* forced = std::getenv("AUTAN_NATIVE_ISA");
  for (const Isa isa : ISAS) {
    if (forced != nullptr && std::string(forced) == isa_name(isa) && can_run(isa)) return isa;
  }
  Isa top = Isa::scalar;
  for (const Isa isa : ISAS) {
    if (can_run(isa)) top = isa;
  }
  return top;
}

std::atomic<Isa>& chosen() {
  static std::atomic<Isa> isa{best()};
  return isa;
}

}  // namespace

bool can_run(Isa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::scalar:
      return true;
    case Isa::avx2:
      return f.avx2;
    case Isa::avx_vnni:
      return f.avx_vnni;
    case Isa::avx512:
      return f.avx2 && f.avx512;
    case Isa::avx512_vnni:
      return f.avx2 && f.avx512_vnni;
  }
  return false;
}

Isa kernel_isa() {
  return chosen().load(std::memory_order_relaxed);
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar:
      return "scalar";
    case Isa::avx2:
      return "avx2";
    case Isa::avx_vnni:
      return "avx_vnni";
    case Isa::avx512:
      return "avx512";
    case Isa::avx512_vnni:
      return "avx512_vnni";
  }
  return "scalar";
}

bool set_kernel_isa(const std::string& name) {
  for (const Isa isa : ISAS) {
    if (name == isa_name(isa) && can_run(isa)) {
      chosen().store(isa);
      return true;
    }
  }
  return false;
}

}  // namespace autan
