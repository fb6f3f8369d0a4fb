"""Echo server on asyncio (or uvloop): the baseline for the pyiocp echo benchmark.

    python benchmarks/servers/asyncio_echo.py --port 9000 [--uvloop]

A plain asyncio.Protocol: every chunk received is written back at once.
Stops cleanly on SIGINT/SIGTERM.
"""
import argparse
import asyncio
import signal
import sys


class Echo(asyncio.Protocol):
    __slots__ = ("transport",)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def serve(host, port, quiet):
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    server = await loop.create_server(Echo, host, port, backlog=1024)
    if not quiet:
        print(f"asyncio_echo: listening on {host}:{port} ({type(loop).__module__}.{type(loop).__name__})",
              file=sys.stderr, flush=True)
    async with server:
        await stop
    server.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop instead of the asyncio loop")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.uvloop:
        try:
            import uvloop
        except ImportError:
            sys.exit("asyncio_echo: --uvloop given but uvloop is not installed (pip install uvloop)")
        uvloop.run(serve(args.host, args.port, args.quiet))
    else:
        asyncio.run(serve(args.host, args.port, args.quiet))


if __name__ == "__main__":
    main()
