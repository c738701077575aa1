"""The compiled kernels (csrc/) as `autan._native`, built against the torch already installed.

Install torch first, then build without pip's build isolation (scripts/setup.sh does):
isolation would fetch a CUDA torch to build against. Without torch or a C++ compiler the package
installs without the extension, and autan runs on its PyTorch kernels (`autan.native` says which).
Kernels are compiled for the baseline x86-64 instruction set; faster ones (AVX2) are built per
function and chosen at run time by the CPU's features, never by the build machine's.
"""

import sys

from setuptools import setup

SOURCES = ["csrc/module.cpp", "csrc/cpu_features.cpp", "csrc/qgemm.cpp", "csrc/decode.cpp"]


def native_extension():
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        print("autan: torch is not installed; building without the native kernels", file=sys.stderr)
        return [], {}

    class Build(BuildExtension):
        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as e:  # a missing or failing compiler must not stop the install
                print(f"autan: the native kernels did not build ({e}); the PyTorch kernels will run", file=sys.stderr)

    extension = CppExtension(
        "autan._native",
        SOURCES,
        extra_compile_args=["-O3", "-fopenmp", "-std=c++17"],
        extra_link_args=["-fopenmp"],
    )
    return [extension], {"build_ext": Build.with_options(use_ninja=False)}


extensions, commands = native_extension()
setup(ext_modules=extensions, cmdclass=commands)
