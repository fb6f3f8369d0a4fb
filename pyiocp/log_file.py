"""An access-log file that can be reopened: `pyiocp serve --log-file PATH`.

logrotate's convention: it renames the file, then signals the server
(postrotate `kill -HUP`), which opens PATH anew and lets the renamed file
go.  The native handler's writer thread holds the descriptor; the swap
(StaticFiles.swap_access_log) hands it the new one and returns once the
lines logged before it are in the old file, which is closed only then, so
no line is lost or split between the two.
"""
from __future__ import annotations

import os
from typing import Any

# Append: several processes (`serve --workers N`) may share the file, and
# each write of whole lines lands whole at its end.  0o644 less the umask,
# as shells and nginx create log files.
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
_MODE = 0o644


def open_log(path: str) -> int:
    """`path` opened for appending (created if missing): a descriptor."""
    fd = os.open(path, _FLAGS, _MODE)
    if os.name == "nt":
        # The engine writes through the Windows handle, which knows nothing
        # of the C runtime's O_APPEND: start it at the end of the file.
        os.lseek(fd, 0, os.SEEK_END)
    return fd


class AccessLogFile:
    """PATH, open for a native handler's access log, and reopened on demand."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = open_log(path)

    def fileno(self) -> int:
        return self.fd

    def flush(self) -> None:
        """Nothing is buffered here (what _access_log_file asks of a file)."""

    def reopen(self, handler: Any) -> None:
        """Opens PATH again and moves `handler` (StaticFiles or
        RawFileServer made with this file) to it; the previous descriptor is
        closed once the handler no longer uses it.  OSError if PATH cannot
        be opened: the handler then keeps writing to the previous file."""
        fd = open_log(self.path)
        try:
            handler.swap_access_log(fd)
        except BaseException:
            os.close(fd)
            raise
        old, self.fd = self.fd, fd
        os.close(old)

    def close(self) -> None:
        """Only once no handler writes to it any more (the handler freed)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
