"""Engine defects the Python fault sweep (tests/fault/sweep.py) found, each
made deterministic here through the Python API of a fault build."""
from __future__ import annotations

import errno
import threading

import pytest

import pyiocp
from pyiocp import _core

pytestmark = pytest.mark.skipif(not _core._FAULT_INJECTION,
                                reason="needs the fault build (PYIOCP_FAULT_INJECTION=1)")


@pytest.mark.skipif("io_uring" not in pyiocp.available_backends(), reason="no io_uring here")
@pytest.mark.parametrize("nth", [1, 2, 3])
def test_stop_wakes_a_worker_whose_wake_up_poll_found_no_sqe(nth):
    """A worker arms its wake-up poll as it starts; when the ring had no
    SQE for it the poll was never armed again, nothing could wake that
    worker, and stop() waited for it forever (found as a hang of the
    sweep's startup:io_uring:uring_sqe:1:EBUSY; which worker lost its poll
    varies, hence the repeats)."""
    for _ in range(6):
        _core._fault_arm("uring_sqe", nth, errno.EBUSY)
        try:
            engine = pyiocp.Engine(threads=2, backend="io_uring")
            engine.listen(("127.0.0.1", 0), pyiocp.Handler)
            engine.start()
        finally:
            _core._fault_disarm()
        stopping = threading.Thread(target=engine.stop, args=(0.1,), daemon=True)
        stopping.start()
        stopping.join(10)
        assert not stopping.is_alive(), "stop() did not return"
