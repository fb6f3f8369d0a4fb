"""Static files with aiohttp's web.FileResponse: a baseline for pyiocp's HTTP server.

    python benchmarks/servers/aiohttp_http.py ROOT --port 9000 [--uvloop] [--pyiocp-aio] [--quiet]

One route, GET (and HEAD) /{path}: the path is checked lexically against ROOT
(no "..", no NUL) and answered with web.FileResponse, which sends the body with
loop.sendfile() on the default asyncio loop (unless AIOHTTP_NOSENDFILE is set;
the server says which when it starts).  --uvloop runs it on uvloop, which
has no loop.sendfile (aiohttp then reads and writes the file in Python);
--pyiocp-aio calls pyiocp.aio.install() on the loop at startup, so
loop.sendfile goes through pyiocp's engine (zero-copy, on its workers).  No
access log.  Stops on SIGINT/SIGTERM (aiohttp's run_app).
"""
import argparse
import os
import sys

from aiohttp import web
import aiohttp


def make_app(root, use_pyiocp=False):
    async def handle(request):
        rel = request.match_info["path"]
        parts = [p for p in rel.split("/") if p]
        if "\0" in rel or "\\" in rel or ".." in parts:
            raise web.HTTPForbidden()
        path = os.path.join(root, *parts) if parts else root
        if not os.path.isfile(path):
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get("/{path:.*}", handle)   # add_get also answers HEAD
    if use_pyiocp:
        async def install(app):
            import pyiocp.aio
            pyiocp.aio.install()

        async def report(app):
            # where the bytes went: in place on the loop's thread, or lent
            import pyiocp.aio
            stats = pyiocp.aio.default_bridge().stats()
            print("aiohttp_http: pyiocp.aio " + ", ".join(
                f"{k} {stats.get(k, 0)}" for k in ("sent_in_place", "sent_in_place_bytes",
                                                    "borrowed", "borrowed_bytes")),
                  file=sys.stderr, flush=True)
        app.on_startup.append(install)
        app.on_cleanup.append(report)
    return app


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="directory whose files are served")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop")
    ap.add_argument("--pyiocp-aio", action="store_true",
                    help="pyiocp.aio.install() at startup: loop.sendfile through pyiocp's engine")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        sys.exit(f"aiohttp_http: {root} is not a directory")
    loop = None
    if args.uvloop:
        import uvloop
        loop = uvloop.new_event_loop()
    if not args.quiet:
        how = "a read/write fallback (AIOHTTP_NOSENDFILE)" if os.environ.get("AIOHTTP_NOSENDFILE") \
            else "pyiocp.aio (loop.sendfile through the engine)" if args.pyiocp_aio \
            else "aiohttp's read/write fallback (uvloop has no loop.sendfile)" if args.uvloop \
            else "loop.sendfile()"
        print(f"aiohttp_http: aiohttp {aiohttp.__version__} serving {root} on http://{args.host}:{args.port}/ "
              f"(web.FileResponse, body via {how})", file=sys.stderr, flush=True)
    web.run_app(make_app(root, args.pyiocp_aio), host=args.host, port=args.port, access_log=None,
                print=None, shutdown_timeout=1.0, backlog=1024, loop=loop)


if __name__ == "__main__":
    main()
