"""Echo server with a Python handler on pyiocp: the pyiocp side of the echo benchmark.

    python benchmarks/servers/pyiocp_echo.py --port 9000 [--threads N]

Every chunk received is sent back from Python (Handler.data_received), then
the next recv is posted.  Runs in the foreground until SIGINT/SIGTERM.
"""
import argparse
import sys

import pyiocp


class Echo(pyiocp.Handler):
    def connection_made(self, conn):
        conn.recv()

    def data_received(self, conn, data):
        conn.send(data)
        conn.recv()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--threads", type=int, default=1, help="engine worker threads (default 1)")
    ap.add_argument("--switch-interval", type=float, default=None, metavar="S",
                    help="sys.setswitchinterval(S) (Python's default is 0.005): for experiments with threads")
    ap.add_argument("--backend", default="auto", help="engine backend (auto, io_uring, epoll)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    engine = pyiocp.Engine(threads=args.threads, backend=args.backend)
    engine.listen((args.host, args.port), Echo)
    if not args.quiet:
        print(f"pyiocp_echo: listening on {args.host}:{args.port} with {args.threads} thread(s)",
              file=sys.stderr, flush=True)
    engine.run()


if __name__ == "__main__":
    main()
