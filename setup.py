"""Builds pyiocp._core: the C engine (the sources engine/sources.txt lists
for this platform) and its Cython binding.  The version is the engine's
(engine/pyiocp.h, PIOCP_VERSION).

PYIOCP_ZIG_GLIBC=2.12 (Linux only) compiles and links with Zig's C compiler
(the `ziglang` package, which the build then requires) for that glibc, so
that the wheel needs no newer glibc than that (README, "Installing from a
wheel"): Zig brings the glibc version's own symbol versions and recent
kernel headers, where an old distribution's (a manylinux image's) have no
io_uring or openat2 and would build without them.

PYIOCP_FAULT_INJECTION=1 (Linux only) makes a fault build, for tests
(tests/fault/sweep.py, .ci/sanitized-pytest): the engine and the binding
compiled with -DPIOCP_FAULT_INJECTION (engine/core/fault.h), the engine's
sources with core/fault_alloc.h force-included as CMake's C tests have
them, and pyiocp/fault_build/_fault.pxi's private _fault_* functions to
drive it.  Without it (pip install, every wheel) none of that is built:
tests/test_fault_build.py checks the extension's symbols."""
import glob
import os
import platform
import shlex
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

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

fault_build = os.environ.get("PYIOCP_FAULT_INJECTION", "") not in ("", "0")
if fault_build and not sys.platform.startswith("linux"):
    sys.exit("PYIOCP_FAULT_INJECTION: fault builds are made on Linux only")
if fault_build:
    build["define_macros"] = build["define_macros"] + [("PIOCP_FAULT_INJECTION", None)]
# _core.pyx includes "_fault.pxi": the fault build's drivers, or the
# release build's one flag
fault_pxi_dir = os.path.join("pyiocp", "fault_build" if fault_build else "release_build")
FAULT_MARK = b"piocp_fault_check"   # a symbol only a fault build has


class BuildExt(build_ext):
    """Rebuilds when the extension in place is the other kind (release or
    fault build: their sources are the same files, so distutils would call
    it up to date), and in a fault build force-includes fault_alloc.h into
    the engine's sources only: the binding counts its own allocations."""

    def build_extension(self, ext):
        target = self.get_ext_fullpath(ext.name)
        if os.path.exists(target):
            with open(target, "rb") as f:
                if (FAULT_MARK in f.read()) != fault_build:
                    self.force = True
        if not fault_build:
            return super().build_extension(ext)
        compile_one = self.compiler._compile
        engine_dir = os.path.join(HERE, "engine") + os.sep
        forced = ["-include", os.path.join(HERE, "engine", "core", "fault_alloc.h")]

        def compile_counted(obj, src, src_ext, cc_args, extra_postargs, pp_opts):
            if os.path.abspath(src).startswith(engine_dir):
                extra_postargs = list(extra_postargs) + forced
            compile_one(obj, src, src_ext, cc_args, extra_postargs, pp_opts)

        self.compiler._compile = compile_counted
        try:
            super().build_extension(ext)
        finally:
            del self.compiler._compile


extension = Extension(
    "pyiocp._core",
    sources=["pyiocp/_core.pyx", *engine_sources(relative_to=HERE)],
    include_dirs=["engine", "pyiocp"],
    depends=(glob.glob("engine/**/*.h", recursive=True) + glob.glob("pyiocp/*.pxi")
             + glob.glob("pyiocp/*.h") + glob.glob(os.path.join(fault_pxi_dir, "*.pxi"))
             + ["engine/sources.txt", "pyiocp/_engine_api.pxd"]),
    **build,
)

# the fault build's C goes elsewhere: pyiocp/_core.c stays the release one
setup(version=engine_version(), setup_requires=setup_requires, cmdclass={"build_ext": BuildExt},
      ext_modules=cythonize([extension], language_level=3, include_path=[fault_pxi_dir],
                            build_dir=os.path.join("build", "fault-c") if fault_build else None))
