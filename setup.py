"""The compiled kernels (csrc/) as `autan._native`, built against the torch already installed.

Install torch first, then build without pip's build isolation (scripts/setup.sh does):
isolation would fetch a CUDA torch to build against. Without torch or a C++ compiler the package
installs without the extension, and autan runs on its PyTorch kernels (`autan.native` says which).
Kernels are compiled for the baseline x86-64 instruction set; faster ones (AVX2) are built per
function and chosen at run time by the CPU's features, never by the build machine's.
"""

import glob
import sys
from typing import ClassVar

from setuptools import setup

# Every C++ file under csrc/: a new instruction set's files need no change here (csrc/README.md).
SOURCES = sorted(glob.glob("csrc/**/*.cpp", recursive=True))


def native_extension():
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        print("autan: torch is not installed; building without the native kernels", file=sys.stderr)
        return [], {}

    class Build(BuildExtension):
        failed: ClassVar[set[str]] = set()

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as e:  # a missing or failing compiler must not stop the install
                print(f"autan: the native kernels did not build ({e}); the PyTorch kernels will run", file=sys.stderr)
                self.failed.add(ext.name)

        def _built(self):  # what was built, for the steps that copy or list the outputs
            self.extensions = [e for e in self.extensions if e.name not in self.failed]

        def copy_extensions_to_source(self):
            self._built()
            super().copy_extensions_to_source()

        def get_outputs(self):
            self._built()
            return super().get_outputs()

        def get_output_mapping(self):
            self._built()
            return super().get_output_mapping()

    extension = CppExtension(
        "autan._native",
        SOURCES,
        extra_compile_args=["-O3", "-fopenmp", "-std=c++17"],
        extra_link_args=["-fopenmp"],
    )
    return [extension], {"build_ext": Build.with_options(use_ninja=False)}


extensions, commands = native_extension()
setup(ext_modules=extensions, cmdclass=commands)
