"""systemd socket activation (sd_listen_fds(3)) for `pyiocp serve`.

A service manager (systemd with a .socket unit, systemd-socket-activate,
or anything following the same protocol) binds and listens itself, then
starts the server with the sockets as descriptors 3, 4, ... and says so
in the environment: LISTEN_FDS (how many) and LISTEN_PID (the process they
are for).  The port is then taken before the server runs (it may bind a
privileged port and drop root, or start on the first connection), and
connections that arrive while it restarts wait in the socket's queue
instead of being refused.

LISTEN_PID matters because the environment is inherited: a child of the
activated process (a --workers worker, or any program it starts) sees the
same variables but not for itself.  So the check comes before any fork,
and the variables are removed from this process's environment whatever
they said, as sd_listen_fds(unset_environment=1) does.
"""
from __future__ import annotations

import os
import socket
import stat
from typing import List

# The first passed descriptor (SD_LISTEN_FDS_START): 0-2 are stdio.
FIRST_FD = 3
VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
# More would be a corrupt variable, not a configuration (systemd's own
# limit on a unit's sockets is far lower than the descriptor limit).
MAX_FDS = 4096
# The startup line's note when activated.
NOTE = "socket-activated: --host/--port ignored"


class ActivationError(Exception):
    """The environment says sockets were passed, but they cannot be served."""


def listen_sockets() -> List[socket.socket]:
    """The listening sockets passed to this process by socket activation,
    in descriptor order; [] when there are none for this process (no
    LISTEN_PID, or another process's).  Removes LISTEN_PID, LISTEN_FDS and
    LISTEN_FDNAMES from os.environ in every case, and marks the sockets
    close-on-exec, so that no program started later takes them for its own.

    Raises ActivationError, leaving the descriptors as they were, if a
    variable is malformed or a descriptor is not a listening TCP socket.
    """
    pid_text = os.environ.get("LISTEN_PID")
    count_text = os.environ.get("LISTEN_FDS")
    for name in VARIABLES:
        os.environ.pop(name, None)   # also unsetenv(): children do not inherit them
    if pid_text is None or count_text is None:
        return []
    pid = _parse("LISTEN_PID", pid_text, 1, 2**31 - 1)
    if pid != os.getpid():
        return []   # meant for another process (our parent, say)
    count = _parse("LISTEN_FDS", count_text, 0, MAX_FDS)
    sockets: List[socket.socket] = []
    try:
        for fd in range(FIRST_FD, FIRST_FD + count):
            sockets.append(_adopt(fd))
    except ActivationError:
        for sock in sockets:
            sock.detach()   # not ours to close: the caller exits with an error
        raise
    for sock in sockets:
        os.set_inheritable(sock.fileno(), False)   # FD_CLOEXEC
    return sockets


def _parse(name: str, text: str, low: int, high: int) -> int:
    # decimal digits only (int() would also take " 3", "+3" and "3_0"), and
    # few of them (int() refuses over 4300)
    digits = text.isascii() and text.isdigit() and len(text) <= 10
    value = int(text) if digits else -1
    if not low <= value <= high:
        raise ActivationError(f"socket activation: {name}={text!r} is not an integer "
                              f"in {low}..{high}")
    return value


def _adopt(fd: int) -> socket.socket:
    """fd as a socket.socket, if it is one pyiocp can listen on: TCP over
    IPv4 or IPv6 (what the engine serves), already listening."""
    where = f"socket activation: descriptor {fd}"
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        raise ActivationError(f"{where} is not open ({exc.strerror}); "
                              "LISTEN_FDS says it was passed") from None
    if not stat.S_ISSOCK(mode):
        raise ActivationError(f"{where} is not a socket")
    sock = socket.socket(fileno=fd)   # reads family and type from the kernel
    try:
        if sock.type != socket.SOCK_STREAM:
            raise ActivationError(f"{where} is not a stream socket ({sock.type.name}): "
                                  "use ListenStream=, not ListenDatagram= or "
                                  "ListenSequentialPacket=")
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            raise ActivationError(f"{where} is an {_family_name(sock.family)} socket; pyiocp "
                                  "serves TCP: ListenStream=PORT or ADDRESS:PORT")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise ActivationError(f"{where} is not listening (Accept=no sockets are; "
                                  "Accept=yes passes connections, which pyiocp does not take)")
    except BaseException:
        sock.detach()
        raise
    return sock


def _family_name(family: int) -> str:
    try:
        return socket.AddressFamily(family).name
    except ValueError:
        return f"address family {family}"
