"""Builds pyiocp._core: the C engine (the sources engine/sources.txt lists
for this platform) and its Cython binding."""
import glob
import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "engine"))
from sources import engine_sources  # noqa: E402  (engine/sources.py)

if not sys.platform.startswith("linux"):
    sys.exit("pyiocp currently builds on Linux only (the IOCP backend is not written yet)")

extension = Extension(
    "pyiocp._core",
    sources=["pyiocp/_core.pyx", *engine_sources(relative_to=HERE)],
    include_dirs=["engine", "pyiocp"],
    define_macros=[("_GNU_SOURCE", None)],
    extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"],
    extra_link_args=["-pthread"],
    depends=(glob.glob("engine/**/*.h", recursive=True) + glob.glob("pyiocp/*.pxi")
             + glob.glob("pyiocp/*.h") + ["engine/sources.txt", "pyiocp/_engine_api.pxd"]),
)

setup(ext_modules=cythonize([extension], language_level=3))
