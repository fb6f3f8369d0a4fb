"""Static files with aiohttp's web.FileResponse: a baseline for pyiocp's HTTP server.

    python benchmarks/servers/aiohttp_http.py ROOT --port 9000 [--quiet]

One route, GET (and HEAD) /{path}: the path is checked lexically against ROOT
(no "..", no NUL) and answered with web.FileResponse, which sends the body with
loop.sendfile() on the default asyncio loop (unless AIOHTTP_NOSENDFILE is set;
the server says which when it starts).  No access log.  Stops on
SIGINT/SIGTERM (aiohttp's run_app).
"""
import argparse
import os
import sys

from aiohttp import web
import aiohttp


def make_app(root):
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
    return app


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="directory whose files are served")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        sys.exit(f"aiohttp_http: {root} is not a directory")
    if not args.quiet:
        how = "a read/write fallback (AIOHTTP_NOSENDFILE)" if os.environ.get("AIOHTTP_NOSENDFILE") \
            else "loop.sendfile()"
        print(f"aiohttp_http: aiohttp {aiohttp.__version__} serving {root} on http://{args.host}:{args.port}/ "
              f"(web.FileResponse, body via {how})", file=sys.stderr, flush=True)
    web.run_app(make_app(root), host=args.host, port=args.port, access_log=None, print=None,
                shutdown_timeout=1.0, backlog=1024)


if __name__ == "__main__":
    main()
