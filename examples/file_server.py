"""The classic IOCP file server, on pyiocp's Python API.

A client sends a file name ending in a newline; the server answers with the
file's bytes, sent zero-copy by one transmit operation; the connection stays
open for the next name.  Unlike the original, names are confined to ROOT
(the kernel resolves them beneath it: no "..", no absolute path, no symlink
leaving ROOT), only regular files are sent, and errors get an answer.

It honours flow control: while the connection's write buffer is over its
high mark (pause_writing), it opens no file and reads no further names, so
a client that pipelines names without reading the answers holds at most one
receive's worth of names and a few descriptors, not one per name.

    python examples/file_server.py ROOT [--port 8182] [--threads N]
    printf 'a.bin\\n' | nc -N 127.0.0.1 8182 > a.bin
"""
from __future__ import annotations

import argparse
import collections
import os
import stat
from typing import Deque, List, Optional

import pyiocp

MAX_NAME = 1024


def open_beneath(root: str, root_fd: int, name: str) -> int:
    """Opens `name` inside `root` only, without blocking on a FIFO."""
    if not name or name.startswith("/") or ".." in name.split("/") or "\0" in name:
        raise PermissionError("path escapes root")
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=root_fd)
    # check what was really opened (a symlink may point anywhere): no race
    opened = os.readlink(f"/proc/self/fd/{fd}")
    if os.path.commonpath([root, opened]) != root:
        os.close(fd)
        raise PermissionError("path escapes root")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PermissionError("not a regular file")
    return fd


class FileServer(pyiocp.Handler):
    root = ""
    root_fd = -1

    def __init__(self) -> None:
        self.pending = b""
        # received, not answered yet (None: a name too long to keep)
        self.names: Deque[Optional[bytes]] = collections.deque()
        self.open_files: List[int] = []   # descriptors being transmitted, in order
        self.paused = False    # between pause_writing and resume_writing
        self.reading = False   # a recv is posted
        self.eof = False

    def connection_made(self, conn: pyiocp.Connection) -> None:
        self.read(conn)

    def read(self, conn: pyiocp.Connection) -> None:
        if not self.reading and not self.eof:
            self.reading = True
            conn.recv()

    def data_received(self, conn: pyiocp.Connection, data: bytes) -> None:
        self.reading = False
        *lines, self.pending = (self.pending + data).split(b"\n")
        self.names.extend(line.rstrip(b"\r") for line in lines)
        if len(self.pending) > MAX_NAME:
            self.pending = b""
            self.names.append(None)        # answered in turn: name too long
        self.serve(conn)

    def eof_received(self, conn: pyiocp.Connection) -> Optional[bool]:
        self.reading = False
        self.eof = True                    # answer what was asked, then close
        self.serve(conn)
        # None: closed once the sends are done.  No name is waiting here:
        # the next recv (this one) is only posted once all are answered.
        return None

    def serve(self, conn: pyiocp.Connection) -> None:
        while self.names and not self.paused:
            self.answer(conn, self.names.popleft())
        if self.paused:
            return                         # resume_writing goes on
        if self.eof:
            conn.close()
        else:
            self.read(conn)

    def pause_writing(self, conn: pyiocp.Connection) -> None:
        self.paused = True

    def resume_writing(self, conn: pyiocp.Connection) -> None:
        self.paused = False
        self.serve(conn)

    def answer(self, conn: pyiocp.Connection, line: Optional[bytes]) -> None:
        if line is None or len(line) > MAX_NAME:
            conn.send(b"ERROR: name too long\r\n")
            return
        try:
            fd = open_beneath(self.root, self.root_fd, os.fsdecode(line))
        except FileNotFoundError:
            conn.send(b"ERROR: file not found\r\n")
        except OSError as exc:
            conn.send(f"ERROR: {exc.strerror or exc}\r\n".encode())
        else:
            self.open_files.append(fd)
            try:
                conn.transmit_file(fd, count=os.fstat(fd).st_size)
            except BaseException:
                self.open_files.remove(fd)
                os.close(fd)
                raise

    def transmit_done(self, conn: pyiocp.Connection, nbytes: int) -> None:
        os.close(self.open_files.pop(0))   # transmits complete in posting order

    def connection_lost(self, conn: pyiocp.Connection, exc: Optional[OSError]) -> None:
        for fd in self.open_files:         # cut short: close what is left
            os.close(fd)
        self.open_files.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8182)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    FileServer.root = os.path.realpath(args.root)
    FileServer.root_fd = os.open(FileServer.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    engine = pyiocp.Engine(threads=args.threads, idle_timeout=60)
    listener = engine.listen((args.host, args.port), FileServer)
    print(f"serving {args.root} on {listener.address[0]}:{listener.address[1]}", flush=True)
    engine.run()


if __name__ == "__main__":
    main()
