"""The raw file protocol on asyncio (or uvloop): the baseline for pyiocp's file server.

    python benchmarks/servers/asyncio_raw.py ROOT --port 9000 [--uvloop] [--body auto|sendfile|write]

Protocol: the client sends a file name ending in "\\n" (or "\\r\\n"); the server
answers with exactly the file's bytes and keeps the connection open for the
next name.  A name that is missing, tries to leave ROOT, is not a regular
file or is too long gets one line "ERROR: <reason>\\r\\n" instead.

The file body is sent with loop.sendfile() (os.sendfile under the hood on the
asyncio selector loop).  uvloop does not implement loop.sendfile() (it raises
NotImplementedError), so with --uvloop the default (--body auto) reads the
file and writes its bytes with transport.write(); the server says so on
stderr when it starts.  --body forces one method.

Names are checked lexically (no absolute path, no "..", no NUL); the file is
opened per request, as a real file server would.  Stops on SIGINT/SIGTERM.
"""
import argparse
import asyncio
import collections
import os
import signal
import stat
import sys

MAX_NAME = 1024


class RawFileProtocol(asyncio.Protocol):
    def __init__(self, root, use_sendfile):
        self.root = root
        self.use_sendfile = use_sendfile
        self.transport = None
        self.buf = b""
        self.pending = collections.deque()
        self.busy = False
        self.eof = False

    # -- asyncio callbacks --------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        buf = self.buf + data if self.buf else data
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            line, buf = buf[:nl], buf[nl + 1:]
            if line.endswith(b"\r"):
                line = line[:-1]
            self.pending.append(line)
        if len(buf) > MAX_NAME:
            # A name that never ends: answer once and drop what came so far.
            self.pending.append(None)
            buf = b""
        self.buf = buf
        if not self.busy:
            self._next()

    def eof_received(self):
        self.eof = True
        if not self.busy and not self.pending:
            self.transport.close()
        return True  # keep the write side open until the answers are out

    def connection_lost(self, exc):
        self.pending.clear()
        self.transport = None

    # -- request handling ---------------------------------------------------

    def _open(self, name):
        """Returns (file, size) or (None, error line)."""
        if name is None or len(name) > MAX_NAME:
            return None, b"ERROR: name too long\r\n"
        if not name:
            return None, b"ERROR: empty name\r\n"
        if b"\0" in name or name.startswith(b"/") or b".." in name.split(b"/"):
            return None, b"ERROR: invalid name\r\n"
        path = os.path.join(self.root, os.fsdecode(name))
        try:
            f = open(path, "rb", buffering=0)
        except FileNotFoundError:
            return None, b"ERROR: not found\r\n"
        except OSError as e:
            return None, b"ERROR: " + os.strerror(e.errno or 0).encode() + b"\r\n"
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            f.close()
            return None, b"ERROR: not a regular file\r\n"
        return f, st.st_size

    def _next(self):
        while self.pending and self.transport is not None:
            f, size = self._open(self.pending.popleft())
            if f is None:
                self.transport.write(size)  # the error line
                continue
            if not self.use_sendfile:
                with f:
                    data = f.read()
                self.transport.write(data)
                continue
            self.busy = True
            asyncio.get_running_loop().create_task(self._sendfile(f, size))
            return
        if self.eof and not self.pending and self.transport is not None:
            self.transport.close()

    async def _sendfile(self, f, size):
        try:
            with f:
                if size:
                    await asyncio.get_running_loop().sendfile(self.transport, f, 0, size)
        except (ConnectionError, RuntimeError):
            # Peer went away mid-transfer (RuntimeError: transport closing).
            if self.transport is not None:
                self.transport.abort()
            return
        finally:
            self.busy = False
        self._next()


def loop_has_sendfile(loop):
    return type(loop).sendfile is not asyncio.AbstractEventLoop.sendfile


async def serve(root, host, port, body, quiet):
    loop = asyncio.get_running_loop()
    if body == "auto":
        body = "sendfile" if loop_has_sendfile(loop) else "write"
        if body == "write":
            print(f"asyncio_raw: {type(loop).__module__}.{type(loop).__name__} has no loop.sendfile(); "
                  "sending file bodies with transport.write()", file=sys.stderr, flush=True)
    elif body == "sendfile" and not loop_has_sendfile(loop):
        sys.exit(f"asyncio_raw: {type(loop).__module__}.{type(loop).__name__} does not implement loop.sendfile()")
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    use_sendfile = body == "sendfile"
    server = await loop.create_server(lambda: RawFileProtocol(root, use_sendfile), host, port, backlog=1024)
    if not quiet:
        print(f"asyncio_raw: serving {root} on {host}:{port} "
              f"({type(loop).__module__}.{type(loop).__name__}, body via {body})",
              file=sys.stderr, flush=True)
    async with server:
        await stop
    server.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="directory whose files are served")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop instead of the asyncio loop")
    ap.add_argument("--body", choices=("auto", "sendfile", "write"), default="auto",
                    help="how the file body is sent (auto: loop.sendfile when the loop has it)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        sys.exit(f"asyncio_raw: {root} is not a directory")
    if args.uvloop:
        try:
            import uvloop
        except ImportError:
            sys.exit("asyncio_raw: --uvloop given but uvloop is not installed (pip install uvloop)")
        uvloop.run(serve(root, args.host, args.port, args.body, args.quiet))
    else:
        asyncio.run(serve(root, args.host, args.port, args.body, args.quiet))


if __name__ == "__main__":
    main()
