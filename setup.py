"""Builds pyiocp._core: the C engine (engine/*.c) and its Cython binding."""
import glob
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

if not sys.platform.startswith("linux"):
    sys.exit("pyiocp currently builds on Linux only (the IOCP backend is not written yet)")

engine_sources = sorted(glob.glob("engine/*.c"))
extension = Extension(
    "pyiocp._core",
    sources=["pyiocp/_core.pyx", *engine_sources],
    include_dirs=["engine", "pyiocp"],
    define_macros=[("_GNU_SOURCE", None)],
    extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"],
    extra_link_args=["-pthread"],
    depends=glob.glob("engine/*.h") + glob.glob("pyiocp/*.pxi") + ["pyiocp/dispatch_queue.h", "pyiocp/_engine_api.pxd"],
)

setup(ext_modules=cythonize([extension], language_level=3))
