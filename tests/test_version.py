"""One version: PIOCP_VERSION in engine/pyiocp.h is the only place it is
written.  The compiled module carries it (pyiocp.__version__), setup.py
reads it for the package metadata (pyproject.toml lists the version as
dynamic), and `pyiocp --version` prints pyiocp.__version__."""
from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import sysconfig

import pytest

import pyiocp
from example_process import PACKAGE_PARENT
from test_wheel_config import ROOT, installed_distribution


def test_the_package_and_the_compiled_module_agree():
    assert pyiocp.__version__ == pyiocp._core.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?", pyiocp.__version__)


def test_the_command_line_prints_the_version(tmp_path):
    """The installed console script where there is one, else `python -m
    pyiocp`, from an empty folder so that no checkout is imported."""
    dist = installed_distribution()
    script = os.path.join(sysconfig.get_path("scripts"), "pyiocp")
    if dist is not None and os.path.exists(script):
        command = [script, "--version"]
    else:
        assert not os.environ.get("PYIOCP_TEST_INSTALLED"), "no installed pyiocp script"
        command = [sys.executable, "-m", "pyiocp", "--version"]
    env = dict(os.environ, PYTHONPATH=PACKAGE_PARENT)
    done = subprocess.run(command, cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"pyiocp {pyiocp.__version__}"


def test_the_installed_metadata_has_the_version():
    dist = installed_distribution()
    if dist is None:
        assert not os.environ.get("PYIOCP_TEST_INSTALLED"), "pyiocp is not an installed distribution"
        pytest.skip("pyiocp is imported from a checkout, not from an installed distribution")
    assert dist.version == pyiocp.__version__
    assert importlib.metadata.version("pyiocp") == pyiocp.__version__


@pytest.mark.source_tree
def test_the_engine_header_is_the_one_source():
    """engine/pyiocp.h defines it once; setup.py's reader finds that
    value; pyproject.toml declares the version dynamic and writes none."""
    with open(os.path.join(ROOT, "engine", "pyiocp.h"), encoding="utf-8") as f:
        defined = re.findall(r'^#define PIOCP_VERSION "([^"]+)"', f.read(), re.MULTILINE)
    assert defined == [pyiocp.__version__]
    sys.path.insert(0, os.path.join(ROOT, "engine"))
    try:
        from sources import engine_version
    finally:
        sys.path.remove(os.path.join(ROOT, "engine"))
    assert engine_version() == pyiocp.__version__
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        project = f.read().split("[project]", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^dynamic\s*=\s*\[[^]]*"version"', project, re.MULTILINE)
    assert not re.search(r"^version\s*=", project, re.MULTILINE)
