"""What the pyiocp.aio tests share (their fixtures, loop_kind and
uvloop_globals, are in conftest.py)."""
from __future__ import annotations

import asyncio

import uvloop

MiB = 1 << 20


def run(loop_kind, main, timeout=60.0):
    """Runs the coroutine function `main` on a fresh loop of that kind
    ("asyncio" or "uvloop"), bounded in time."""
    async def bounded():
        return await asyncio.wait_for(main(), timeout)
    if loop_kind == "uvloop":
        return uvloop.run(bounded())
    return asyncio.run(bounded())
