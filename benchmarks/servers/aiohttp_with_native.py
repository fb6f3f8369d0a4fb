"""An aiohttp application with pyiocp's native file server beside it, in one
process: the shape pyiocp.aio.serve is for.

    python benchmarks/servers/aiohttp_with_native.py ROOT --port 9000 --app-port 9001 [--uvloop]

Files under ROOT are served on --port by pyiocp.StaticFiles on the engine's
own workers (default thread count, no access log); the loop runs an aiohttp
application on --app-port with one small JSON endpoint, GET /hello, whose
latency says whether the application stays responsive under file load.
Stops on SIGINT/SIGTERM.
"""
import argparse
import asyncio
import os
import signal
import sys

from aiohttp import web

import pyiocp
import pyiocp.aio


async def serve(root, host, port, app_port):
    async def hello(request):
        return web.json_response({"hello": "world"})

    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with pyiocp.aio.serve(pyiocp.StaticFiles(root), host, port):
        site = web.TCPSite(runner, host, app_port)
        await site.start()
        await stop.wait()
        await runner.cleanup()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True, help="the native file server's")
    ap.add_argument("--app-port", type=int, required=True, help="the aiohttp application's")
    ap.add_argument("--uvloop", action="store_true")
    args = ap.parse_args(argv)
    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        sys.exit(f"aiohttp_with_native: {root} is not a directory")
    main_coro = serve(root, args.host, args.port, args.app_port)
    if args.uvloop:
        import uvloop
        uvloop.run(main_coro)
    else:
        asyncio.run(main_coro)


if __name__ == "__main__":
    main()
