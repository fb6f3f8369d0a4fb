"""The bounded fault sweep of the Python API (tests/fault/sweep.py: every
scenario on every backend, each injection point it passes failed at its
first three passes with each of its errors and cut short, the completion
contract checked after every run).  It needs the fault build, which
.ci/sanitized-pytest makes (under ASan and UBSan); the release build skips
it.  Run by hand, sweep.py says more, and has the long randomised sweep."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pyiocp import _core

from example_process import PACKAGE_PARENT

pytestmark = pytest.mark.skipif(
    not _core._FAULT_INJECTION,
    reason="the fault sweep needs the fault build (PYIOCP_FAULT_INJECTION=1 python setup.py "
           "build_ext --inplace; CI: .ci/sanitized-pytest)")

SWEEP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fault", "sweep.py")
TIMEOUT = 1800


def test_bounded_fault_sweep_keeps_the_contract():
    env = dict(os.environ)
    # the runs import the pyiocp this suite imports
    env["PYTHONPATH"] = os.pathsep.join(
        [PACKAGE_PARENT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    result = subprocess.run([sys.executable, SWEEP, "--jobs", "2", "--keep-going"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=TIMEOUT)
    print(result.stdout)     # the summary (and any KNOWN lines) in pytest's report
    assert result.returncode == 0, result.stdout[-20000:]
