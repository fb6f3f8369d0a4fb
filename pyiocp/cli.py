"""`pyiocp serve | info | --version`: serve a folder from the command line."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Optional, Sequence

from . import (Engine, EngineConfig, RawFileServer, StaticFiles, __version__, available_backends,
               backend_names, cpu_info, default_threads, serve_workers)
from ._core import describe_backend, http_defaults
from .config import BACKENDS, MAX_CONNECTIONS, MAX_IDLE_TIMEOUT, MAX_THREADS

PROTOCOLS = ("http", "raw")
MAX_WORKERS = 256


def _bounded_int(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low}..{high}, not {value}")
        return value
    return parse


def _seconds(text: str, allow_zero: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= MAX_IDLE_TIMEOUT):   # also refuses nan and inf
        low = "[0" if allow_zero else "(0"
        raise argparse.ArgumentTypeError(f"must be in {low}, {MAX_IDLE_TIMEOUT:.0f}] seconds, not {text}")
    return value


def _seconds_or_zero(text: str) -> float:
    return _seconds(text, allow_zero=True)


def build_parser() -> argparse.ArgumentParser:
    engine = EngineConfig()      # the engine's defaults (read from C)
    http = http_defaults()       # the HTTP server's (read from C)
    parser = argparse.ArgumentParser(prog="pyiocp", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pyiocp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve a folder")
    serve.add_argument("root", nargs="?", default=".", metavar="ROOT",
                       help="folder to serve (default: the current one)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_bounded_int(0, 65535), default=8182,
                       help="port (default 8182; 0 picks a free one)")
    serve.add_argument("--protocol", choices=PROTOCOLS, default="http",
                       help='"http" (default): HTTP/1.1; "raw": a file name per line in, '
                            "the file's bytes out")
    serve.add_argument("--no-listing", dest="listing", action="store_false",
                       help="http: answer 403 for directories without index.html")
    serve.add_argument("--header-timeout", type=_seconds, default=http["header_timeout"],
                       metavar="SECONDS",
                       help="http: a request head must arrive within this (default %(default)g)")
    serve.add_argument("--keepalive-timeout", type=_seconds, default=http["keepalive_timeout"],
                       metavar="SECONDS",
                       help="http: idle time allowed between requests (default %(default)g)")
    serve.add_argument("--cache-valid", type=_seconds_or_zero, default=http["cache_valid"],
                       metavar="SECONDS",
                       help="http: serve an open file from the cache this long before checking its name "
                            "again (inotify drops changed files sooner); 0: check on every request "
                            "(default %(default)g)")
    serve.add_argument("--threads", type=_bounded_int(1, MAX_THREADS), default=engine.threads,
                       help="worker threads (default: twice the CPUs this process may use, "
                            f"here {default_threads()}; `pyiocp info` says why)")
    serve.add_argument("--workers", type=_bounded_int(1, MAX_WORKERS), default=1,
                       help="processes serving one listening socket (default 1: this process "
                            "serves); SIGHUP reloads them gracefully")
    serve.add_argument("--backend", choices=BACKENDS, default=engine.backend,
                       help="the kernel mechanism (default %(default)s: the best this kernel allows)")
    serve.add_argument("--max-connections", type=_bounded_int(1, MAX_CONNECTIONS),
                       default=engine.max_connections,
                       help="beyond this, new connections are refused (default %(default)s)")
    serve.add_argument("--idle-timeout", type=_seconds, default=60.0, metavar="SECONDS",
                       help="drop peers that make no progress this long (default 60)")
    serve.add_argument("--drain-timeout", type=_seconds_or_zero, default=10.0, metavar="SECONDS",
                       help="on Ctrl-C/SIGTERM, how long running transfers may finish (default 10)")
    serve.add_argument("--quiet", action="store_true", help="no access log")

    commands.add_parser("info", help="what this machine supports")
    return parser


def _make_engine(args: argparse.Namespace, root: str, threads: Optional[int]):
    """The engine and its native handler, as `serve` configures them
    (listening is the caller's: an address, or a worker's socket)."""
    engine = Engine(threads=threads, backend=args.backend,
                    max_connections=args.max_connections, idle_timeout=args.idle_timeout)
    access_log = None if args.quiet else sys.stdout
    if args.protocol == "http":
        handler = StaticFiles(root, listing=args.listing, access_log=access_log,
                              header_timeout=args.header_timeout,
                              keepalive_timeout=args.keepalive_timeout,
                              cache_valid=args.cache_valid)
    else:
        handler = RawFileServer(root, access_log=access_log)
    return engine, handler


def serve(args: argparse.Namespace) -> int:
    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        print(f"pyiocp: {args.root}: not a directory", file=sys.stderr)
        return 2
    if args.workers > 1:
        return serve_with_workers(args, root)
    try:
        engine, handler = _make_engine(args, root, args.threads)
        listener = engine.listen((args.host, args.port), handler)
    except OSError as exc:
        print(f"pyiocp: {exc}", file=sys.stderr)
        return 1
    # Ctrl-C and SIGTERM both mean "stop gracefully"; a second one while
    # draining changes nothing.  Installed before the startup line, which
    # tells supervisors that signals are now handled.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda signum, frame: engine.request_stop())
    host, port = listener.address[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"pyiocp {__version__}: serving {root} over {args.protocol} on {shown}:{port} "
          f"(backend {engine.backend}, {_count(engine.threads, 'thread')})", flush=True)
    engine.run(drain_timeout=args.drain_timeout)
    print("pyiocp: stopped", file=sys.stderr, flush=True)
    return 0


def serve_with_workers(args: argparse.Namespace, root: str) -> int:
    """`serve --workers N`: N processes on one socket (pyiocp.serve_workers),
    each with its own engine and native handler, made after the fork."""
    # the CPUs are shared by the workers: by default each gets its share
    threads = args.threads or max(1, -(-default_threads() // args.workers))
    backend = args.backend if args.backend != "auto" else (available_backends() or ["none"])[0]

    def setup(listen_socket):
        engine, handler = _make_engine(args, root, threads)
        engine.listen(sock=listen_socket, handler=handler)
        return engine

    def announce(address):
        host, port = address[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"pyiocp {__version__}: serving {root} over {args.protocol} on {shown}:{port} "
              f"(backend {backend}, {_count(threads, 'thread')} in each of "
              f"{_count(args.workers, 'worker')})", flush=True)

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        rc = serve_workers(args.workers, setup, address=(args.host, args.port),
                           drain_timeout=args.drain_timeout, on_ready=announce)
    except OSError as exc:
        print(f"pyiocp: {exc}", file=sys.stderr)
        return 1
    print("pyiocp: stopped", file=sys.stderr, flush=True)
    return rc


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def describe_cpus(cpus: dict, threads: int) -> str:
    """One line on the CPUs this process may use and the pool they give:
    "CPUs: 8 online, 2 usable by this process (affinity 2, cgroup quota
    1.5) -> default threads 4"."""
    affinity = f"affinity {cpus['affinity']}" if cpus["affinity"] else "affinity unknown"
    quota = (f"cgroup quota {cpus['quota_cpus']:g}" if cpus["quota_cpus"] is not None
             else "no cgroup quota")
    return (f"CPUs: {cpus['online']} online, {cpus['usable']} usable by this process "
            f"({affinity}, {quota}) -> default threads {threads}")


def info() -> int:
    backends = available_backends()
    print(f"pyiocp {__version__}")
    print(f"backends available: {', '.join(backends) or 'none'}")
    print(f"auto picks: {backends[0] if backends else 'nothing (no backend works here)'}")
    for name in backend_names():
        print(f"  {describe_backend(name)}")
    print(describe_cpus(cpu_info(), default_threads()))
    print("zero-copy paths:")
    print("  epoll:    recv/send/sendfile(2) system calls on readiness")
    print("  io_uring: recv and send on the ring; a transmit's file part by sendfile(2)")
    print("            when the ring says the socket is writable (io_uring has no sendfile)")
    print("  files up to 16 KiB: cached bytes sent with the header in one send")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "info":
        return info()
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
