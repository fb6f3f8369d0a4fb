"""A rule the engine's and the binding's C sources keep so that they build
with MSVC too (issue 11), which neither gcc nor the mingw-w64 stage can
check: C11 atomics come from engine/platform/atomics.h only (which says
what MSVC needs for them)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*ROOT.glob("engine/**/*.[ch]"), *ROOT.glob("pyiocp/*.h")])
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)


def includes(path: Path) -> list:
    return INCLUDE.findall(path.read_text(encoding="utf-8"))


def test_atomics_come_from_the_platform_layer():
    direct = [str(p.relative_to(ROOT)) for p in SOURCES
              if "stdatomic.h" in includes(p) and p.name != "atomics.h"]
    assert not direct, f"include platform/atomics.h instead of <stdatomic.h>: {direct}"

