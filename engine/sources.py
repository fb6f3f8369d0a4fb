"""Reads engine/sources.txt, the engine's source list by platform, for
setup.py (CMakeLists.txt reads the same file)."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def platforms_for(platform=sys.platform, test=False):
    """The platform tags whose sources a build on `platform` compiles."""
    tags = {"all"}
    if platform.startswith("win"):
        tags.add("windows")
    else:
        tags.add("posix")
        if platform.startswith("linux"):
            tags.add("linux")
    if test:
        tags.add("test")
    return tags


def engine_sources(platform=sys.platform, test=False, relative_to=None):
    """Paths of the C sources for `platform`, in the list's order."""
    wanted = platforms_for(platform, test)
    paths = []
    with open(os.path.join(HERE, "sources.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            tag, path = line.split()
            if tag in wanted:
                full = os.path.join(HERE, path)
                paths.append(os.path.relpath(full, relative_to) if relative_to else full)
    return paths


def engine_version():
    """The package's one version: PIOCP_VERSION in engine/pyiocp.h, which
    the C engine (and CMake's standalone build) compiles in.  setup.py
    gives it to the package metadata (pyproject.toml lists the version as
    dynamic); pyiocp.__version__ and `pyiocp --version` read it from the
    compiled module."""
    import re

    with open(os.path.join(HERE, "pyiocp.h"), encoding="utf-8") as f:
        found = re.findall(r'^#define PIOCP_VERSION "([^"]+)"\s*$', f.read(), re.MULTILINE)
    if len(found) != 1:
        raise RuntimeError(f"engine/pyiocp.h defines PIOCP_VERSION {len(found)} times, not once")
    return found[0]
