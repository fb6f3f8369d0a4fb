"""Builds pyiocp._core: the C engine (the sources engine/sources.txt lists
for this platform) and its Cython binding.  The version is the engine's
(engine/pyiocp.h, PIOCP_VERSION).

PYIOCP_ZIG_GLIBC=2.12 (Linux only) compiles and links with Zig's C compiler
(the `ziglang` package, which the build then requires) for that glibc, so
that the wheel needs no newer glibc than that (README, "Installing from a
wheel"): Zig brings the glibc version's own symbol versions and recent
kernel headers, where an old distribution's (a manylinux image's) have no
io_uring or openat2 and would build without them."""
import glob
import os
import platform
import shlex
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "engine"))
from sources import engine_sources, engine_version  # noqa: E402  (engine/sources.py)

setup_requires = []

if sys.platform.startswith("linux"):
    build = dict(
        define_macros=[("_GNU_SOURCE", None)],
        extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"],
        extra_link_args=["-pthread"],
    )
    glibc = os.environ.get("PYIOCP_ZIG_GLIBC")
    if glibc:
        # distutils reads CC and LDSHARED when it builds; the build
        # environment gets ziglang through setup_requires (PEP 517's
        # get_requires_for_build_wheel reports it).
        # 0.17 is the release CI builds with (.ci/wheel-test)
        setup_requires.append("ziglang>=0.17,<0.18")
        zig_cc = f"{shlex.quote(sys.executable)} -m ziglang cc -target {platform.machine()}-linux-gnu.{glibc}"
        os.environ["CC"] = zig_cc
        os.environ["LDSHARED"] = f"{zig_cc} -shared"
elif sys.platform == "win32":
    # UNTESTED (README, "Windows"): written against Microsoft's and
    # setuptools' documentation; the same sources build with mingw-w64 and
    # pass their C tests under Wine, but no MSVC build has run.  MSVC's C
    # compiler has <stdatomic.h> only from Visual Studio 2022 17.5 on, behind
    # /experimental:c11atomics (engine/platform/atomics.h says why that and
    # not a layer of our own); Windows 8 (0x0602) for the IOCP calls used.
    build = dict(
        define_macros=[("WIN32_LEAN_AND_MEAN", None), ("_WIN32_WINNT", "0x0602")],
        extra_compile_args=["/O2", "/W3", "/std:c11", "/experimental:c11atomics"],
        libraries=["ws2_32", "mswsock"],
    )
else:
    sys.exit(f"pyiocp builds on Linux and Windows, not on {sys.platform}")

extension = Extension(
    "pyiocp._core",
    sources=["pyiocp/_core.pyx", *engine_sources(relative_to=HERE)],
    include_dirs=["engine", "pyiocp"],
    depends=(glob.glob("engine/**/*.h", recursive=True) + glob.glob("pyiocp/*.pxi")
             + glob.glob("pyiocp/*.h") + ["engine/sources.txt", "pyiocp/_engine_api.pxd"]),
    **build,
)

setup(version=engine_version(), setup_requires=setup_requires,
      ext_modules=cythonize([extension], language_level=3))
