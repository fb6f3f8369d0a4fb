"""`pyiocp serve | info | --version`: serve a folder from the command line."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from typing import Optional, Sequence, Tuple

from . import (Engine, EngineConfig, RawFileServer, StaticFiles, __version__, available_backends,
               backend_names, cpu_info, default_threads, serve_workers, systemd)
from ._core import LOG_FORMATS, describe_backend, http_defaults
from .config import BACKENDS, MAX_CONNECTIONS, MAX_IDLE_TIMEOUT, MAX_THREADS
from .log_file import AccessLogFile, open_log

PROTOCOLS = ("http", "raw")
MAX_WORKERS = 256
# Errors and notices (not access lines, which go to stdout or --log-file)
# on stderr, stamped for whoever reads them later.
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"

log = logging.getLogger("pyiocp")


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


def _host_port(text: str) -> Tuple[str, int]:
    """"HOST:PORT", "[v6]:PORT" or ":PORT" (127.0.0.1)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected [HOST]:PORT, not {text!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return (host or "127.0.0.1", int(port))


class _Given(argparse.Action):
    """Stores the value and notes the option in args.given: socket
    activation warns about an explicit --host/--port it ignores."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.given = getattr(namespace, "given", ()) + (f"--{self.dest}",)


def build_parser() -> argparse.ArgumentParser:
    engine = EngineConfig()      # the engine's defaults (read from C)
    http = http_defaults()       # the HTTP server's (read from C)
    parser = argparse.ArgumentParser(prog="pyiocp", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pyiocp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve a folder")
    serve.add_argument("root", nargs="?", default=".", metavar="ROOT",
                       help="folder to serve (default: the current one)")
    serve.add_argument("--host", default="127.0.0.1", action=_Given,
                       help="address to listen on (default 127.0.0.1); ignored when systemd "
                            "passes listening sockets (socket activation): those are served")
    serve.add_argument("--port", type=_bounded_int(0, 65535), default=8182, action=_Given,
                       help="port (default 8182; 0 picks a free one); ignored when "
                            "socket-activated")
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
    serve.add_argument("--log-format", choices=LOG_FORMATS, default=http["log_format"],
                       help="http: access lines as the Common Log Format (default), nginx's "
                            '"combined" (common + referer and user-agent) or "json" (an object '
                            "per line)")
    serve.add_argument("--log-file", metavar="PATH",
                       help="append access lines to PATH (created 0644 less the umask) instead of "
                            "stdout; SIGHUP reopens it (logrotate), with --workers SIGHUP's "
                            "reload does")

    serve.add_argument("--metrics", type=_host_port, metavar="[HOST]:PORT",
                       help="serve counters in Prometheus' text format at "
                            "http://HOST:PORT/metrics (HOST defaults to 127.0.0.1; keep it "
                            "private); with --workers, each worker's and their sum")

    info = commands.add_parser("info", help="what this machine supports, or with --live what a "
                                            "running server did")
    info.add_argument("--live", metavar="URL",
                      help="print the counters of a server started with --metrics: its "
                           "http://HOST:PORT/metrics, or just HOST:PORT")
    return parser


def _access_log(args: argparse.Namespace):
    """Where access lines go: nowhere (--quiet), --log-file, or stdout."""
    if args.quiet:
        return None
    if args.log_file:
        return AccessLogFile(args.log_file)
    return sys.stdout


def _make_engine(args: argparse.Namespace, root: str, threads: Optional[int], access_log):
    """The engine and its native handler, as `serve` configures them
    (listening is the caller's: an address, or a worker's socket)."""
    engine = Engine(threads=threads, backend=args.backend,
                    max_connections=args.max_connections, idle_timeout=args.idle_timeout)
    if args.protocol == "http":
        handler = StaticFiles(root, listing=args.listing, access_log=access_log,
                              log_format=args.log_format,
                              header_timeout=args.header_timeout,
                              keepalive_timeout=args.keepalive_timeout,
                              cache_valid=args.cache_valid)
    else:
        handler = RawFileServer(root, access_log=access_log)
    return engine, handler


def _check_log_options(args: argparse.Namespace) -> Optional[str]:
    """What is wrong with the log options together, or None."""
    if args.quiet and args.log_file:
        return "--quiet and --log-file exclude each other"
    if args.protocol != "http" and args.log_format != "common":
        return "--log-format is for --protocol http (raw has its own line)"
    return None


def _reopen_on_sighup(access_log, handler) -> None:
    """logrotate's convention: SIGHUP reopens the log file (single process;
    with --workers the supervisor's SIGHUP reload opens it in new workers)."""
    if not isinstance(access_log, AccessLogFile) or not hasattr(signal, "SIGHUP"):
        return

    def reopen(signum, frame):
        try:
            access_log.reopen(handler)
        except OSError as exc:
            log.error("pyiocp: SIGHUP: cannot reopen the access log %s: %s; "
                      "still writing to the previous file", access_log.path, exc)
        else:
            log.info("pyiocp: SIGHUP: reopened the access log %s", access_log.path)
    signal.signal(signal.SIGHUP, reopen)


def serve(args: argparse.Namespace) -> int:
    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        log.error("pyiocp: %s: not a directory", args.root)
        return 2
    problem = _check_log_options(args)
    if problem:
        log.error("pyiocp: %s", problem)
        return 2
    sockets = _activated_sockets(args)   # before any fork: LISTEN_PID is ours only
    if sockets is None:
        return 2
    if args.workers > 1:
        return serve_with_workers(args, root, sockets)
    try:
        access_log = _access_log(args)
        engine, handler = _make_engine(args, root, args.threads, access_log)
        if sockets:   # the engine serves dups: ours would keep the sockets open after a stop
            listeners = [engine.listen(sock=sock, handler=handler) for sock in sockets]
            for sock in sockets:
                sock.close()
        else:
            listeners = [engine.listen((args.host, args.port), handler)]
        if args.metrics:
            _announce_metrics(engine.listen_metrics(args.metrics).address)
    except OSError as exc:
        log.error("pyiocp: %s", exc)
        return 1
    # Ctrl-C and SIGTERM both mean "stop gracefully"; a second one while
    # draining changes nothing.  Installed before the startup line, which
    # tells supervisors that signals are now handled.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda signum, frame: engine.request_stop())
    _reopen_on_sighup(access_log, handler)
    print(f"pyiocp {__version__}: serving {root} over {args.protocol} on "
          f"{_where(l.address for l in listeners)} (backend {engine.backend}, "
          f"{_count(engine.threads, 'thread')}{_activation_note(sockets)})", flush=True)
    engine.run(drain_timeout=args.drain_timeout)
    log.info("pyiocp: stopped")
    return 0


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _announce_metrics(address) -> None:
    print(f"pyiocp: metrics at http://{_where([address])}/metrics", flush=True)


def serve_with_workers(args: argparse.Namespace, root: str, sockets: list) -> int:
    """`serve --workers N`: N processes on one socket (pyiocp.serve_workers),
    each with its own engine and native handler, made after the fork.
    Socket-activated, every worker serves every passed socket (inherited
    through the fork); the supervisor holds them, as it holds its own."""
    if args.log_file:
        try:    # the workers open it: say here, once, if they cannot
            os.close(open_log(args.log_file))
        except OSError as exc:
            log.error("pyiocp: %s", exc)
            return 1
    # the CPUs are shared by the workers: by default each gets its share
    threads = args.threads or max(1, -(-default_threads() // args.workers))
    backend = args.backend if args.backend != "auto" else (available_backends() or ["none"])[0]

    def setup(listen_socket):
        # each worker opens --log-file itself (appending, as the others do);
        # a reload's new workers open it anew: that is the reopen
        engine, handler = _make_engine(args, root, threads, _access_log(args))
        for sock in sockets or [listen_socket]:
            engine.listen(sock=sock, handler=handler)
        return engine

    def announce(address):
        if metrics_sock is not None:
            _announce_metrics(metrics_sock.getsockname())
        where = _where(s.getsockname() for s in sockets) if sockets else _where([address])
        print(f"pyiocp {__version__}: serving {root} over {args.protocol} on {where} "
              f"(backend {backend}, {_count(threads, 'thread')} in each of "
              f"{_count(args.workers, 'worker')}{_activation_note(sockets)})", flush=True)

    listen = {"sock": sockets[0]} if sockets else {"address": (args.host, args.port)}
    try:
        metrics_sock = None
        if args.metrics:
            metrics_sock = socket.create_server(args.metrics, family=_family(args.metrics[0]))
        try:
            rc = serve_workers(args.workers, setup, **listen,
                               drain_timeout=args.drain_timeout, on_ready=announce,
                               metrics=metrics_sock, metrics_threads=threads)
        finally:
            if metrics_sock is not None:
                metrics_sock.close()
    except OSError as exc:
        log.error("pyiocp: %s", exc)
        return 1
    log.info("pyiocp: stopped")
    return rc


def _activated_sockets(args: argparse.Namespace) -> Optional[list]:
    """The listening sockets systemd passed ([] if none), or None once the
    error is logged (exit 2: a unit misconfigured, not a crash)."""
    try:
        sockets = systemd.listen_sockets()
    except systemd.ActivationError as exc:
        log.error("pyiocp: %s", exc)
        return None
    if sockets and getattr(args, "given", ()):
        log.warning("pyiocp: socket-activated: %s ignored, serving the passed sockets",
                    " and ".join(sorted(set(args.given))))
    return sockets


def _activation_note(sockets: list) -> str:
    return f"; {systemd.NOTE}" if sockets else ""


def _where(addresses) -> str:
    """The startup line's HOST:PORT ([HOST]:PORT for IPv6), comma-separated
    when socket activation passed several sockets."""
    return ", ".join(f"[{a[0]}]:{a[1]}" if ":" in a[0] else f"{a[0]}:{a[1]}" for a in addresses)


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
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
        return serve(args)
    if args.command == "info":
        if args.live:
            from .live import live
            return live(args.live)
        return info()
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
