"""Python's http.server, as `python -m http.server` runs it, but speaking HTTP/1.1.

    python benchmarks/servers/stdlib_http.py ROOT --port 9000 [--quiet] [--nagle]

`python -m http.server` is ThreadingHTTPServer (a thread per connection) with
SimpleHTTPRequestHandler, whose protocol_version is "HTTP/1.0": it closes the
connection after every answer, so a keep-alive client such as wrk would have
to reconnect for each request.  This wrapper changes only what is needed to
compare it with keep-alive servers:

- protocol_version = "HTTP/1.1" (the handler already sends Content-Length, so
  connections stay open between requests);
- disable_nagle_algorithm = True (StreamRequestHandler's own switch for
  TCP_NODELAY), unless --nagle: the handler writes an answer's head and its body
  in two sends, and on a kept-open connection Nagle's algorithm then holds the
  body back until the client's delayed ACK of the head, about 40 ms later; with
  50 connections that caps the server near 1,100 requests/s at 20 % of a CPU,
  which measures the TCP timers rather than the server (closing the connection
  after each answer, as HTTP/1.0 does, flushes the body at once instead);
- request_queue_size = 1024 instead of 5 (the listen backlog: 50 clients
  connecting at once would otherwise wait on SYN retransmits);
- with --quiet, no access log on stderr; a client that drops its connection
  mid-answer (as wrk does when it stops) prints no traceback.

The body is copied with shutil.copyfileobj (read + write, no sendfile), as the
stock handler does.  Stops on SIGINT/SIGTERM.
"""
import argparse
import functools
import http.server
import os
import signal
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    quiet = False

    def log_message(self, format, *args):
        if not self.quiet:
            super().log_message(format, *args)


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        # A client that goes away mid-answer (wrk stopping) is not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="directory whose files are served")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--nagle", action="store_true",
                    help="leave Nagle's algorithm on, as the stock handler does (about 40 ms per answer "
                         "on a kept-open connection)")
    args = ap.parse_args(argv)
    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        sys.exit(f"stdlib_http: {root} is not a directory")
    Handler.quiet = args.quiet
    Handler.disable_nagle_algorithm = not args.nagle

    def stop(signum, frame):
        raise SystemExit(0)  # ends serve_forever(); handler threads are daemons

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with Server((args.host, args.port), functools.partial(Handler, directory=root)) as httpd:
        if not args.quiet:
            print(f"stdlib_http: serving {root} on http://{args.host}:{args.port}/ "
                  f"(ThreadingHTTPServer, SimpleHTTPRequestHandler, HTTP/1.1, "
                  f"TCP_NODELAY {'off' if args.nagle else 'on'})", file=sys.stderr, flush=True)
        httpd.serve_forever()


if __name__ == "__main__":
    main()
