"""A small HTTP/1.1 static-file server on asyncio (or uvloop): a baseline for pyiocp's HTTP server.

    python benchmarks/servers/asyncio_http.py ROOT --port 9000 [--uvloop] [--body auto|sendfile|write]

Just enough HTTP for the benchmark, parsed minimally: a request line and
headers up to the blank line (no request bodies: a request announcing one is
answered 400 and the connection closed); GET and HEAD of regular files below
ROOT; keep-alive by default for HTTP/1.1, "Connection: close" (or HTTP/1.0
without "Connection: keep-alive") closes after the answer; pipelined requests
are answered in order.  Answers carry Content-Length and Content-Type
application/octet-stream; errors are 400, 403, 404, 405, 431 or 500 with a
short text body.

The head of an answer is written with transport.write(), then the body is sent
with loop.sendfile() (os.sendfile under the hood on the asyncio selector loop).
uvloop does not implement loop.sendfile() (it raises NotImplementedError), so
with --uvloop the default (--body auto) reads the file and writes its bytes with
transport.write(), in one call together with the head; the server says so on
stderr when it starts.  --body forces one method.

Paths are percent-decoded and checked lexically (no "..", no NUL, no
backslash); the file is opened per request, as a real file server would.
Stops on SIGINT/SIGTERM.
"""
import argparse
import asyncio
import collections
import os
import signal
import stat
import sys
import urllib.parse

MAX_HEAD = 16384
REASONS = {200: b"OK", 400: b"Bad Request", 403: b"Forbidden", 404: b"Not Found",
           405: b"Method Not Allowed", 431: b"Request Header Fields Too Large",
           500: b"Internal Server Error"}


class Request:
    __slots__ = ("method", "target", "keep_alive", "error")

    def __init__(self, method=b"", target=b"", keep_alive=False, error=None):
        self.method = method
        self.target = target
        self.keep_alive = keep_alive
        self.error = error          # status code of a request that cannot be served


def parse_head(head):
    """One request head (without the final blank line) -> Request."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return Request(error=400)
    method, target, version = parts
    keep_alive = version == b"HTTP/1.1"
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            return Request(error=400)
        name = name.strip().lower()
        if name == b"connection":
            tokens = [t.strip().lower() for t in value.split(b",")]
            if b"close" in tokens:
                keep_alive = False
            elif b"keep-alive" in tokens:
                keep_alive = True
        elif name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in (b"", b"0")):
            # No bodies here: the connection could not be kept in sync.
            return Request(error=400)
    if method not in (b"GET", b"HEAD"):
        return Request(method, target, keep_alive, error=405)
    return Request(method, target, keep_alive)


class HttpFileProtocol(asyncio.Protocol):
    def __init__(self, root, use_sendfile):
        self.root = root
        self.use_sendfile = use_sendfile
        self.transport = None
        self.buf = b""
        self.pending = collections.deque()
        self.busy = False
        self.closing = False         # an answer said "Connection: close", or the head was bad
        self.eof = False             # the peer has shut its sending side

    # -- asyncio callbacks --------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        if self.closing:
            return
        buf = self.buf + data if self.buf else data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head, buf = buf[:end], buf[end + 4:]
            req = parse_head(head)
            self.pending.append(req)
            if req.error == 400:
                buf = b""
                break
        if len(buf) > MAX_HEAD:
            self.pending.append(Request(error=431))
            buf = b""
        self.buf = buf
        if not self.busy:
            self._next()

    def eof_received(self):
        if not self.busy and not self.pending:
            self.transport.close()
            return False
        self.eof = True
        return True  # keep the write side open until the answers are out

    def connection_lost(self, exc):
        self.pending.clear()
        self.transport = None

    # -- request handling ---------------------------------------------------

    def _error(self, status, keep_alive):
        body = REASONS[status] + b"\n"
        head = (b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n"
                % (status, REASONS[status], len(body), b"" if keep_alive else b"Connection: close\r\n"))
        self.transport.write(head + body)

    def _open(self, target):
        """Returns (file, size) or (None, status)."""
        path = target.split(b"?", 1)[0].split(b"#", 1)[0]
        if not path.startswith(b"/"):
            return None, 400
        try:
            rel = urllib.parse.unquote(path.decode("ascii"), errors="strict")
        except (UnicodeError, ValueError):
            return None, 400
        parts = [p for p in rel.split("/") if p]
        if "\0" in rel or "\\" in rel or ".." in parts:
            return None, 403
        full = os.path.join(self.root, *parts) if parts else self.root
        try:
            f = open(full, "rb", buffering=0)
        except FileNotFoundError:
            return None, 404
        except IsADirectoryError:
            return None, 403
        except PermissionError:
            return None, 403
        except OSError:
            return None, 500
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            f.close()
            return None, 403
        return f, st.st_size

    def _next(self):
        while self.pending and self.transport is not None and not self.closing:
            req = self.pending.popleft()
            keep_alive = req.keep_alive and req.error not in (400, 431)
            if not keep_alive:
                self.closing = True
            if req.error:
                self._error(req.error, keep_alive)
                continue
            f, size = self._open(req.target)
            if f is None:
                self._error(size, keep_alive)
                continue
            head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n%s\r\n"
                    % (size, b"" if keep_alive else b"Connection: close\r\n"))
            if req.method == b"HEAD" or size == 0:
                f.close()
                self.transport.write(head)
                continue
            if not self.use_sendfile:
                with f:
                    data = f.read()
                self.transport.write(head + data)
                continue
            self.transport.write(head)
            self.busy = True
            asyncio.get_running_loop().create_task(self._sendfile(f, size))
            return
        if self.transport is not None and (self.closing or (self.eof and not self.pending)):
            self.transport.close()

    async def _sendfile(self, f, size):
        try:
            with f:
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
            print(f"asyncio_http: {type(loop).__module__}.{type(loop).__name__} has no loop.sendfile(); "
                  "sending file bodies with transport.write()", file=sys.stderr, flush=True)
    elif body == "sendfile" and not loop_has_sendfile(loop):
        sys.exit(f"asyncio_http: {type(loop).__module__}.{type(loop).__name__} does not implement loop.sendfile()")
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    use_sendfile = body == "sendfile"
    server = await loop.create_server(lambda: HttpFileProtocol(root, use_sendfile), host, port, backlog=1024)
    if not quiet:
        print(f"asyncio_http: serving {root} on http://{host}:{port}/ "
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
        sys.exit(f"asyncio_http: {root} is not a directory")
    if args.uvloop:
        try:
            import uvloop
        except ImportError:
            sys.exit("asyncio_http: --uvloop given but uvloop is not installed (pip install uvloop)")
        uvloop.run(serve(root, args.host, args.port, args.body, args.quiet))
    else:
        asyncio.run(serve(root, args.host, args.port, args.body, args.quiet))


if __name__ == "__main__":
    main()
