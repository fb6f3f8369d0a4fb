"""A release build has no fault injection; a fault build has all of it
(setup.py's PYIOCP_FAULT_INJECTION=1, engine/core/fault.h).  Checked on
the extension this suite imports, whichever it is (the README's test stage
and the wheels import a release build, .ci/sanitized-pytest a fault
build), so every run asserts one side: the compiled module's symbols, read
with nm, and the module's private drivers.  With PYIOCP_FAULT_INJECTION in
the environment (as CI sets it for both stages) the build must be the
kind it names."""
from __future__ import annotations

import errno
import gc
import os
import shutil
import subprocess

import pytest

import pyiocp
from pyiocp import _core

DRIVERS = ["_fault_arm", "_fault_arm_short", "_fault_disarm", "_fault_fired", "_fault_passes",
           "_fault_record", "_fault_recorded", "_fault_points", "_fault_point_errors",
           "_fault_allocs"]


def symbols() -> str:
    """Every symbol name nm finds in the extension, dynamic and (when not
    stripped) static; the file's bytes where there is no nm."""
    path = _core.__file__
    nm = shutil.which("nm")
    if nm is None:
        with open(path, "rb") as f:
            return f.read().decode("latin-1")
    out = []
    for args in (["-D"], []):
        result = subprocess.run([nm, *args, path], capture_output=True, text=True, timeout=60)
        # a stripped module has no static table: "no symbols", exit status 0 or 1
        assert result.returncode == 0 or "no symbols" in result.stderr, result.stderr
        out.append(result.stdout)
    return "\n".join(out)


def test_the_build_is_the_kind_the_environment_names():
    wanted = os.environ.get("PYIOCP_FAULT_INJECTION")
    if wanted is None:
        pytest.skip("PYIOCP_FAULT_INJECTION is not set: either kind of build is fine here")
    assert _core._FAULT_INJECTION == (wanted not in ("", "0")), _core.__file__


@pytest.mark.skipif(_core._FAULT_INJECTION, reason="a fault build (PYIOCP_FAULT_INJECTION=1)")
def test_a_release_build_has_no_fault_injection():
    found = [line for line in symbols().splitlines() if "piocp_fault" in line]
    assert not found, found[:10]
    assert not [name for name in DRIVERS if hasattr(_core, name)]


@pytest.mark.skipif(not _core._FAULT_INJECTION, reason="a release build")
def test_a_fault_build_has_the_points_and_their_drivers():
    table = symbols()
    for name in ("piocp_fault_check", "piocp_fault_short", "piocp_fault_arm_spec",
                 "piocp_fault_malloc", "piocp_fault_allocs"):
        assert name in table, name
    assert all(callable(getattr(_core, name)) for name in DRIVERS)
    points = _core._fault_points()
    assert {"malloc", "accept", "py_send", "py_dispatch_claim"} <= set(points)
    assert _core._fault_point_errors("py_conn_state") == (errno.ENOMEM,)
    assert _core._fault_point_errors("no such point") is None


@pytest.mark.skipif(not _core._FAULT_INJECTION, reason="a release build")
def test_the_drivers_reach_the_engine_and_the_binding():
    """An armed point fails the call behind it with its errno, the engine's
    allocations are counted (fault_alloc.h was force-included into its
    sources) and come back, and so do the binding's."""
    gc.collect()   # an engine an earlier test dropped is freed now, not during the test
    before = _core._fault_allocs()
    _core._fault_record(True)
    with pyiocp.Engine(threads=1) as engine:
        assert _core._fault_allocs()[0] > before[0]
        _core._fault_arm("socket", 1, errno.EMFILE)
        try:
            with pytest.raises(OSError) as info:
                engine.listen(("127.0.0.1", 0), pyiocp.Handler)
        finally:
            _core._fault_disarm()
        assert info.value.errno == errno.EMFILE
        assert _core._fault_fired() == 1
        _core._fault_arm("py_timer", 1, errno.ENOMEM)
        try:
            with pytest.raises(MemoryError):
                engine.call_later(10, print)
        finally:
            _core._fault_disarm()
        engine.call_later(0, print).cancel()
    _core._fault_record(False)
    recorded = {point for point, passes, can_short in _core._fault_recorded()}
    assert {"malloc", "socket", "py_timer"} <= recorded
    assert _core._fault_allocs() == before
