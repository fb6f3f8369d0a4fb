# Cross-compiles the engine and its C tests for 64-bit Windows with
# mingw-w64, and runs the tests under Wine (ctest uses the emulator for
# every add_test whose command is a target):
#
#   cmake -S . -B build-win -DCMAKE_TOOLCHAIN_FILE=cmake/mingw-w64.cmake
#   cmake --build build-win && ctest --test-dir build-win
#
# Debian: apt-get install gcc-mingw-w64-x86-64 wine64 (.ci/wine-ctest does
# all of it, with a headless Wine prefix; ../shared/notes/iocp-under-wine.md
# in the team's notes says what Wine does differently from Windows).
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(CMAKE_C_COMPILER x86_64-w64-mingw32-gcc)
set(CMAKE_RC_COMPILER x86_64-w64-mingw32-windres)
set(CMAKE_FIND_ROOT_PATH /usr/x86_64-w64-mingw32)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
# With --no-install-recommends Debian's wine64 has no /usr/bin/wine: the
# loader is here.
if(NOT CMAKE_CROSSCOMPILING_EMULATOR)
  if(EXISTS /usr/lib/wine/wine64)
    set(CMAKE_CROSSCOMPILING_EMULATOR /usr/lib/wine/wine64)
  else()
    find_program(PYIOCP_WINE NAMES wine64 wine)
    if(PYIOCP_WINE)
      set(CMAKE_CROSSCOMPILING_EMULATOR ${PYIOCP_WINE})
    endif()
  endif()
endif()
# Static libgcc: the test programs then need no mingw DLL next to them.
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static-libgcc")
