"""The classic IOCP file server, on pyiocp's Python API.

A client sends a file name ending in a newline; the server answers with the
file's bytes, sent zero-copy by one transmit operation; the connection stays
open for the next name.  Unlike the original, names are confined to ROOT
(the kernel resolves them beneath it: no "..", no absolute path, no symlink
leaving ROOT), only regular files are sent, and errors get an answer.

    python examples/file_server.py ROOT [--port 8182] [--threads N]
    printf 'a.bin\\n' | nc -N 127.0.0.1 8182 > a.bin
"""
import argparse
import os
import stat

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

    def __init__(self):
        self.pending = b""
        self.open_files = []   # descriptors being transmitted, in order

    def data_received(self, conn, data):
        *lines, self.pending = (self.pending + data).split(b"\n")
        for line in lines:
            self.answer(conn, line.rstrip(b"\r"))
        if len(self.pending) > MAX_NAME:
            self.pending = b""
            conn.send(b"ERROR: name too long\r\n")
        conn.recv()

    def answer(self, conn, line: bytes):
        if len(line) > MAX_NAME:
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
            conn.transmit_file(fd, count=os.fstat(fd).st_size)

    def transmit_done(self, conn, nbytes):
        os.close(self.open_files.pop(0))   # transmits complete in posting order

    def connection_lost(self, conn, exc):
        for fd in self.open_files:         # cut short: close what is left
            os.close(fd)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
