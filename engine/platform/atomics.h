/*
 * atomics.h - the engine's one way to C11 atomics: every engine and binding
 * source includes this, never <stdatomic.h> itself.
 *
 * GCC, Clang and mingw-w64 have <stdatomic.h>.  MSVC's C compiler has it
 * from Visual Studio 2022 17.5 (_MSC_VER 1935) on, with /std:c11 (or later)
 * and /experimental:c11atomics, which setup.py passes; it keeps defining
 * __STDC_NO_ATOMICS__ until it supports locking atomics, which the engine
 * does not use (every atomic here is an integer, a bool or a pointer: lock
 * free on x86-64 and arm64).
 *
 * Why not our own layer over the Interlocked functions for older MSVC, as
 * some projects carry: the engine uses about a dozen atomic types and a
 * dozen generic operations with explicit memory orders; a second
 * implementation of that memory model would need MSVC to be tested, which
 * these machines do not have, and a wrong fence there fails rarely and
 * silently.  Requiring the compiler's own implementation is the smaller
 * risk.  UNTESTED with MSVC (README, "Windows").
 */
#ifndef PYIOCP_PLATFORM_ATOMICS_H
#define PYIOCP_PLATFORM_ATOMICS_H

#if defined(_MSC_VER) && !defined(__clang__)
#if _MSC_VER < 1935
#error "pyiocp needs Visual Studio 2022 17.5 or later: C11 atomics (/experimental:c11atomics)"
#endif
#endif

#include <stdatomic.h>

#endif
