#!/usr/bin/env python3
"""Load benchmarks: pyiocp against asyncio, uvloop, nginx and others, over loopback.

    python benchmarks/run_load.py [--rounds 3] [--duration 5] [--warmup 2] [--only TAGS] [--json PATH]

For every case the server runs pinned to one CPU (taskset -c 0) and the
client to another (taskset -c 1); this script pins itself to the client's
CPU too, so that it never takes time from the server.  The client is the C
load generator (benchmarks/loadgen.c, compiled into a temporary directory),
also for the HTTP cases (--mode http) unless --http-client wrk.  A case:

  1. starts the server and waits until its port accepts connections;
  2. runs the client: warm-up (not counted), then the measured window
     (HTTP: first two GETs on one connection, checked byte for byte against
     the file and for keep-alive, then a wrk warm-up run, then the measured
     wrk run);
  3. samples the server's CPU time (utime + stime of the process and all its
     threads, /proc/PID/stat; HTTP: summed over the server's processes) at
     the window's start and end (loadgen announces them; wrk's are its start
     and exit), and for HTTP the server's peak memory (VmHWM, summed over its
     processes) and wrk's own CPU time (wait4) at the end;
  4. stops the server with SIGTERM (and reports if it does not exit).

Rounds: every selected case runs once per round (--rounds, default 3), the
cases in an order shuffled per round (seeded; the seed is printed and
--seed repeats it), so that every server sees the same machine conditions,
drifts included.  A table cell is the median over the rounds with its
spread (min–max); a ratio between two rows (÷ asyncio, ÷ nginx, io_uring ÷
epoll) is taken within each round, then summarised the same way.  --rounds 1
runs each case once, in the listed order.

Cases (tags for --only: a case id such as raw1k/asyncio, a group such as
raw64k, a server key such as native_epoll, a family: pyiocp, asyncio, uvloop,
nginx, aiohttp, stdlib, bare, "http" for every HTTP case, a backend (io_uring,
epoll), c1/c10/c50 for one echo_conns connection count, or "baseline" for
the baseline twins of an A/B run; selecting a pyiocp case selects its twin):

  raw1k, raw64k   raw file protocol, one file of 1 KiB / 64 KiB:
                  native (python -m pyiocp serve --protocol raw, in C),
                  file_server (examples/file_server.py, Python handlers),
                  asyncio (loop.sendfile), asyncio_write (transport.write),
                  uvloop (transport.write: uvloop has no loop.sendfile)
  echo1k          echo of 1 KiB messages: pyiocp_echo (Python handler),
                  asyncio, uvloop
  echo_threads    pyiocp_echo with 1, 2 and 4 worker threads
  echo_conns      ping-pong echo of 1 KiB at 1, 10 and 50 connections
                  (--echo-connections): pyiocp_echo with 1 thread and with
                  the engine's default thread count (asked under the
                  server's taskset), asyncio, uvloop; ratios against uvloop
                  at the same connection count
  http1k, http64k HTTP/1.1 GET of a 1 KiB / 64 KiB file, 50 keep-alive
                  connections (--http-connections): native (python -m pyiocp serve,
                  in C), nginx (generated config, one process), asyncio
                  (benchmarks/servers/asyncio_http.py, loop.sendfile), uvloop
                  (same server, transport.write), aiohttp (web.FileResponse),
                  http_server (http.server speaking HTTP/1.1), bare_uring
                  (benchmarks/bare/uring_http.c, compiled into the temporary
                  directory: one thread, one ring, the file answered from
                  memory in one send per request; the floor pyiocp's native
                  server is measured against, "÷ bare io_uring")
  http100m        one connection downloading a 100 MiB file again and again:
                  native, nginx, asyncio, and (with http64k) bare_sendfile
                  (benchmarks/bare/epoll_sendfile_http.c: one thread,
                  edge-triggered epoll, head with MSG_MORE then sendfile
                  until EAGAIN, "÷ bare sendfile")

The HTTP cases are driven by loadgen --mode http (default), or by wrk with
--http-client wrk (Debian package wrk), which runs out of CPU here at 1 KiB
and on one-connection 100 MiB downloads; nginx (Debian nginx-light or nginx)
and aiohttp (pip) are optional: without them their rows are skipped with a
loud message.

A/B against a baseline: --baseline REF builds pyiocp as it was at git REF
(benchmarks/baseline_build.py: a `git clone --shared` checkout of REF and
its own venv, `pip install` as the README installs it; fresh for every run
unless --baseline-cache DIR keeps builds keyed by commit hash, and says so
when it reuses one), then runs every selected pyiocp case twice per round,
interleaved with everything else: once with the pyiocp this script's Python
imports (the current tree, as installed: reinstall after changing C code),
once with the baseline's Python, from a neutral directory, with the
servers and examples of the baseline's own checkout.  A "current ÷
baseline" table gives per row the per-round ratio of the rate, of the work
per server-CPU-second and of p99, as median (min–max), and flags rows whose
per-CPU median is off by more than --ab-tolerance (3 %).  For example, the
check that a change costs no performance:

    python benchmarks/run_load.py --baseline HEAD~1 --only pyiocp --rounds 5
    python benchmarks/run_load.py --baseline c215100 --only echo1k,raw1k --no-md

An A/B run writes its tables between <!-- ab:begin --> and <!-- ab:end -->
in BENCHMARKS.md and leaves the other sections alone.

Results: a Markdown table per group (printed, and written into BENCHMARKS.md
unless --no-md: the raw/echo groups between <!-- load:begin --> and
<!-- load:end -->, the HTTP groups between <!-- http:begin --> and
<!-- http:end -->; a section is rewritten only by a run that has cases of
its own), and with --json PATH every number as JSON (every round's result,
and a per-case summary).  Exit status 1 if any
case failed (server did not start or died, wrong byte counts, connection or
socket errors, non-2xx answers), 2 on bad usage; a missing tool that a
selected case needs stops the run before it starts, with a message and status 1.
"""
import argparse
import atexit
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import baseline_build
from load_report import (AB_MD_BEGIN, AB_MD_END, GROUPS, HTTP_GROUPS, HTTP_MD_BEGIN, HTTP_MD_END, MiB,
                         ab_markdown_section, aggregate, fmt_mib, http_markdown_section, markdown_section, report,
                         update_markdown, wrk_seconds)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SERVERS = os.path.join(HERE, "servers")
FILES = {"1k.bin": 1024, "64k.bin": 65536}
BIG_FILE = ("100m.bin", 100 * 1024 * 1024)    # made only when an http100m case runs


class CaseFailed(Exception):
    pass


# ------------------------------------------------------------------ cases --

class Build:
    """A pyiocp for the pyiocp cases: the current tree's (what the runner's
    Python imports, with this tree's servers and examples) or, with
    --baseline, a baseline's (its own venv, and the servers and examples of
    its own checkout, since their options may differ)."""

    def __init__(self, name, python, tree, env=None, short=""):
        self.name = name              # current | baseline
        self.python = python          # a baseline's is set once it is built
        self.tree = tree
        self.env = env                # None: the runner's environment for pyiocp
        self.short = short            # a baseline's short commit hash
        self.default_threads = None   # the engine's default thread count on the server's CPUs

    def path(self, *parts):
        return os.path.join(self.tree, *parts)


class Case:
    def __init__(self, group, key, label, family, server, load, threads=None, refs=(), http=None,
                 threads_label=None, aux_log=None):
        self.group = group
        self.key = key
        self.id = f"{group}/{key}"
        self.label = label
        self.family = family          # pyiocp | asyncio | uvloop | nginx | aiohttp | stdlib | bare
        self.server = server          # function(port) -> argv (without taskset)
        self.load = load              # loadgen arguments (without host/port/timing)
        self.threads = threads
        self.refs = refs
        # HTTP cases (driven by wrk instead of loadgen): {"name", "size", "connections", "timeout"}
        self.http = http
        self.kind = "wrk" if http else "loadgen"
        self.threads_label = threads_label
        self.aux_log = aux_log        # function(port) -> path of another log worth showing on failure
        self.backend = None           # pyiocp engine backend of this case, if pinned
        self.build = None             # pyiocp cases: the Build they run
        self.twin_of = None           # a baseline case: the id of the current tree's case it mirrors
        self.needs = ()               # files of the build's tree the server runs (checked before a run)
        self.connections = None       # loadgen connections, when not --connections
        self.default_threads = False  # pyiocp with the engine's default thread count (known once built)

    def tags(self):
        tags = {self.id, self.group, self.key, self.family}
        if self.backend:
            tags.add(self.backend)
        if self.http:
            tags.add("http")
        if self.connections:
            tags.add(f"c{self.connections}")          # echo_conns: one connection count
        if self.twin_of:
            # Selecting a pyiocp case selects its baseline twin too: an A/B row needs both.
            tags |= {self.twin_of, self.twin_of.split("/", 1)[1], "baseline"}
        return tags


def with_backend(case, backend):
    case.backend = backend
    return case


def per_build(builds, make):
    """make(build) -> Case, for every build: the current tree's case, then its baseline twin."""
    out = []
    for bld in builds:
        c = make(bld)
        c.build = bld
        if bld.name == "baseline":
            c.twin_of = c.id
            c.key += "@baseline"
            c.id = f"{c.group}/{c.key}"
            c.label += f" [baseline {bld.short}]"
        out.append(c)
    return out


def build_cases(args, root, builds):
    py = sys.executable
    host = args.host
    raw_asyncio = os.path.join(SERVERS, "asyncio_raw.py")
    echo_asyncio = os.path.join(SERVERS, "asyncio_echo.py")
    echo_pyiocp = ("benchmarks", "servers", "pyiocp_echo.py")
    file_server = ("examples", "file_server.py")
    t = str(args.threads)
    cases = []

    def native_raw(group, b, load):
        return lambda bld: with_backend(Case(
            group, f"native_{b}", f"pyiocp native (C raw server), {b}", "pyiocp",
            lambda p: [bld.python, "-m", "pyiocp", "serve", root, "--protocol", "raw", "--host", host,
                       "--port", str(p), "--threads", t, "--backend", b, "--quiet"], load, args.threads), b)

    def file_server_case(group, load):
        def make(bld):
            c = Case(group, "file_server", "pyiocp examples/file_server.py (Python handlers)", "pyiocp",
                     lambda p: [bld.python, bld.path(*file_server), root, "--port", str(p), "--threads", t],
                     load, args.threads)
            c.needs = ("/".join(file_server),)
            return c
        return make

    def echo_case(group, key, label, threads, b, load, connections=None, refs=()):
        """threads None: the engine's default count, probed per build under the server's taskset
        (pyiocp_echo.py's own default is 1, and a baseline's default may differ)."""
        def make(bld):
            c = with_backend(Case(group, key, label, "pyiocp",
                                  lambda p: [bld.python, bld.path(*echo_pyiocp), "--host", host, "--port", str(p),
                                             "--threads", str(threads or bld.default_threads), "--backend", b,
                                             "--quiet"],
                                  load, threads, refs=refs), b)
            c.needs = ("/".join(echo_pyiocp),)
            c.connections = connections
            c.default_threads = threads is None
            return c
        return make

    for group, name in (("raw1k", "1k.bin"), ("raw64k", "64k.bin")):
        load = ["--mode", "raw", "--name", name, "--expect-file", os.path.join(root, name)]
        for b in args.backends:
            cases += per_build(builds, native_raw(group, b, load))
        cases += per_build(builds, file_server_case(group, load))
        cases += [
            Case(group, "asyncio", "asyncio (loop.sendfile)", "asyncio",
                 lambda p: [py, raw_asyncio, root, "--host", host, "--port", str(p), "--body", "sendfile",
                            "--quiet"], load),
            Case(group, "asyncio_write", "asyncio (transport.write)", "asyncio",
                 lambda p: [py, raw_asyncio, root, "--host", host, "--port", str(p), "--body", "write",
                            "--quiet"], load),
            Case(group, "uvloop", "uvloop (transport.write)", "uvloop",
                 lambda p: [py, raw_asyncio, root, "--host", host, "--port", str(p), "--uvloop",
                            "--quiet"], load),
        ]
    echo = ["--mode", "echo", "--msg", str(args.msg)]
    for b in args.backends:
        cases += per_build(builds, echo_case("echo1k", f"pyiocp_echo_{b}", f"pyiocp Python handler, {b}",
                                             args.threads, b, echo))
    cases += [
        Case("echo1k", "asyncio", "asyncio Protocol", "asyncio",
             lambda p: [py, echo_asyncio, "--host", host, "--port", str(p), "--quiet"], echo),
        Case("echo1k", "uvloop", "uvloop Protocol", "uvloop",
             lambda p: [py, echo_asyncio, "--host", host, "--port", str(p), "--uvloop", "--quiet"], echo),
    ]
    for b in args.backends:
        for n in args.thread_counts:
            cases += per_build(builds, echo_case("echo_threads", f"t{n}_{b}",
                                                 f"pyiocp Python handler, {b}, {n} thread(s)", n, b, echo))
    # Ping-pong at several connection counts: few busy connections make small completion batches,
    # where a per-batch cost (a thread state per batch, a wake-up) shows.
    for n in args.echo_connections:
        ref = [("uvloop", f"echo_conns/c{n}_uvloop")]
        for b in args.backends:
            for threads, tkey, tlabel in ((1, "t1", "1 thread"), (None, "tdefault", "default threads")):
                cases += per_build(builds, echo_case(
                    "echo_conns", f"c{n}_pyiocp_{b}_{tkey}", f"pyiocp Python handler, {b}, {tlabel}",
                    threads, b, echo, connections=n, refs=ref))
        for key, label, extra in (("asyncio", "asyncio Protocol", []), ("uvloop", "uvloop Protocol", ["--uvloop"])):
            c = Case("echo_conns", f"c{n}_{key}", label, key,
                     lambda p, extra=extra: [py, echo_asyncio, "--host", host, "--port", str(p), *extra, "--quiet"],
                     echo, refs=ref)
            c.connections = n
            cases.append(c)
    cases += build_http_cases(args, root, builds)
    return cases


def nginx_conf_dir(root, port):
    return os.path.join(os.path.dirname(root), f"nginx-{port}")


def nginx_argv(nginx, root, host, port):
    """Writes an nginx configuration for one run into the work directory (pid,
    error log and temp paths included: nothing of the system's nginx is used)
    and returns the command that runs it in the foreground, one process."""
    d = nginx_conf_dir(root, port)
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""# Generated by benchmarks/run_load.py for one benchmark case.
worker_processes 1;
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {host}:{port};
        root {root};
    }}
}}
""")
    return [nginx, "-p", d + "/", "-c", conf, "-e", os.path.join(d, "error.log")]


def build_http_cases(args, root, builds):
    py = sys.executable
    host = args.host
    t = str(args.threads)
    asyncio_http = os.path.join(SERVERS, "asyncio_http.py")
    aiohttp_http = os.path.join(SERVERS, "aiohttp_http.py")
    stdlib_http = os.path.join(SERVERS, "stdlib_http.py")
    cases = []
    for group, name, size, conns, timeout in (
            ("http1k", "1k.bin", FILES["1k.bin"], args.http_connections, None),
            ("http64k", "64k.bin", FILES["64k.bin"], args.http_connections, None),
            ("http100m", BIG_FILE[0], BIG_FILE[1], 1, 30)):
        http = {"name": name, "size": size, "connections": conns, "timeout": timeout}
        for b in args.backends:
            cases += per_build(builds, lambda bld, b=b, group=group, http=http: with_backend(Case(
                group, f"native_{b}", f"pyiocp native (C HTTP/1.1 server), {b}", "pyiocp",
                lambda p: [bld.python, "-m", "pyiocp", "serve", root, "--host", host, "--port", str(p),
                           "--threads", t, "--backend", b, "--quiet"], None, args.threads, http=http), b))
        if group != "http100m":
            # The reference: what one thread and one ring cost when the answer is already in memory
            # and leaves in one send (main() compiles it into args.bare_uring).
            cases.append(Case(
                group, "bare_uring", "bare C io_uring (uring_http.c: from memory, one send per request)", "bare",
                lambda p, name=name: [args.bare_uring, "--file", os.path.join(root, name), "--host", host,
                                      "--port", str(p)], None, http=http, threads_label="1 (ring)"))
        if group != "http1k":
            # The big-file reference: one thread, edge-triggered epoll, the head with MSG_MORE and then
            # sendfile until EAGAIN (main() compiles it into args.bare_sendfile).
            cases.append(Case(
                group, "bare_sendfile", "bare C epoll + sendfile (epoll_sendfile_http.c)", "bare",
                lambda p, name=name: [args.bare_sendfile, "--file", os.path.join(root, name), "--path",
                                      "/" + name, "--host", host, "--port", str(p)], None, http=http,
                threads_label="1"))
        cases += [
            Case(group, "nginx", "nginx (sendfile, 1 worker, master_process off)", "nginx",
                 lambda p: nginx_argv(args.nginx, root, host, p), None, http=http, threads_label="1 (worker)",
                 aux_log=lambda p: os.path.join(nginx_conf_dir(root, p), "error.log")),
            Case(group, "asyncio", "asyncio Protocol (loop.sendfile)", "asyncio",
                 lambda p: [py, asyncio_http, root, "--host", host, "--port", str(p), "--body", "sendfile",
                            "--quiet"], None, http=http, threads_label="1 (loop)"),
        ]
        # aiohttp's FileResponse on both loops, with and without pyiocp.aio
        # (issue 10): the same server script, its loop and install() chosen
        # by flags; the engine's worker threads count in the server's CPU.
        for variant, flags, label, threads in (
                ("aiohttp_uvloop", ["--uvloop"],
                 "aiohttp web.FileResponse on uvloop (no loop.sendfile: read + write in Python)",
                 "1 (loop) + executor"),
                ("aiohttp_pyiocp", ["--pyiocp-aio"],
                 "aiohttp web.FileResponse + pyiocp.aio.install() (default loop)",
                 "1 (loop) + engine"),
                ("aiohttp_uvloop_pyiocp", ["--uvloop", "--pyiocp-aio"],
                 "aiohttp web.FileResponse on uvloop + pyiocp.aio.install()", "1 (loop) + engine")):
            cases.append(Case(group, variant, label, "aiohttp",
                              lambda p, flags=flags: [py, aiohttp_http, root, "--host", host, "--port",
                                                      str(p), *flags, "--quiet"], None,
                              http=http, threads_label=threads))
        if group == "http100m":
            cases.append(Case(group, "aiohttp", "aiohttp web.FileResponse (loop.sendfile)", "aiohttp",
                              lambda p: [py, aiohttp_http, root, "--host", host, "--port", str(p),
                                         "--quiet"], None, http=http,
                              threads_label="1 (loop) + executor"))
            continue        # only pyiocp, nginx, asyncio and aiohttp download the big file
        cases += [
            Case(group, "uvloop", "uvloop Protocol (transport.write: uvloop has no loop.sendfile)", "uvloop",
                 lambda p: [py, asyncio_http, root, "--host", host, "--port", str(p), "--uvloop",
                            "--quiet"], None, http=http, threads_label="1 (loop)"),
            Case(group, "aiohttp", "aiohttp web.FileResponse (loop.sendfile)", "aiohttp",
                 lambda p: [py, aiohttp_http, root, "--host", host, "--port", str(p), "--quiet"], None,
                 http=http, threads_label="1 (loop) + executor"),
            Case(group, "http_server", "http.server (ThreadingHTTPServer, HTTP/1.1 keep-alive, TCP_NODELAY)",
                 "stdlib",
                 lambda p: [py, stdlib_http, root, "--host", host, "--port", str(p), "--quiet"], None,
                 http=http, threads_label="1 per connection"),
        ]
    return cases


# -------------------------------------------------------------- utilities --

def log(msg=""):
    print(msg, flush=True)


def free_port(host):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def proc_cpu_split(pid):
    """(utime, stime) in seconds of a whole process (all its threads, live and exited)."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    hz = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / hz, int(fields[12]) / hz


def parse_cpus(spec):
    cpus = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def cpu_times(cpus):
    """Busy and steal seconds, summed over the given CPUs, from /proc/stat."""
    hz = os.sysconf("SC_CLK_TCK")
    busy = steal = 0
    with open("/proc/stat") as f:
        for line in f:
            name, *vals = line.split()
            if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
                continue
            v = [int(x) for x in vals] + [0] * 8
            # user nice system idle iowait irq softirq steal
            busy += v[0] + v[1] + v[2] + v[5] + v[6]
            steal += v[7]
    return busy / hz, steal / hz


def proc_threads(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def build_loadgen(build_dir, cc):
    src = os.path.join(HERE, "loadgen.c")
    exe = os.path.join(build_dir, "loadgen")
    cmd = [cc, "-O2", "-std=c11", "-Wall", "-Wextra", "-o", exe, src]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"run_load: compiling loadgen failed:\n{shlex.join(cmd)}\n{r.stderr}")
    if r.stderr.strip():
        log(f"run_load: compiler warnings for loadgen.c:\n{r.stderr}")
    return exe


def build_bare_uring(build_dir, cc):
    """Compiles benchmarks/bare/uring_http.c with our ring layer (engine/backends/uring.c) and asks
    it whether this kernel lets it make a ring: (executable, None), or (None, why not)."""
    exe = os.path.join(build_dir, "uring_http")
    cmd = [cc, "-O2", "-std=c11", "-Wall", "-Wextra", "-D_GNU_SOURCE", "-I", os.path.join(REPO, "engine"),
           "-o", exe, os.path.join(HERE, "bare", "uring_http.c"), os.path.join(REPO, "engine", "backends", "uring.c")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"compiling it failed: {shlex.join(cmd)}\n{r.stderr.strip()}"
    if r.stderr.strip():
        log(f"run_load: compiler warnings for uring_http.c:\n{r.stderr}")
    r = subprocess.run([exe, "--check"], capture_output=True, text=True)
    if r.returncode != 0:
        return None, (r.stderr.strip() or f"`{exe} --check` exited {r.returncode}")
    return exe, None


def build_bare_sendfile(build_dir, cc):
    """Compiles benchmarks/bare/epoll_sendfile_http.c: (executable, None), or (None, why not)."""
    exe = os.path.join(build_dir, "epoll_sendfile_http")
    cmd = [cc, "-O2", "-std=c11", "-Wall", "-Wextra", "-o", exe,   # it defines _GNU_SOURCE itself
           os.path.join(HERE, "bare", "epoll_sendfile_http.c")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"compiling it failed: {shlex.join(cmd)}\n{r.stderr.strip()}"
    if r.stderr.strip():
        log(f"run_load: compiler warnings for epoll_sendfile_http.c:\n{r.stderr}")
    return exe, None


def make_files(root, big=False):
    rng = random.Random(20240501)
    for name, size in FILES.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(rng.randbytes(size))
    if big:
        name, size = BIG_FILE
        with open(os.path.join(root, name), "wb") as f:
            for _ in range(size // MiB):
                f.write(rng.randbytes(MiB))


def pyiocp_environment():
    """How a child Python finds pyiocp: returns (env, version) or (None, reason)."""
    probe = [sys.executable, "-c", "import pyiocp; print(getattr(pyiocp, '__version__', '?'))"]
    env = dict(os.environ)
    # First as installed (from a neutral directory, so the source tree does not shadow it).
    r = subprocess.run(probe, capture_output=True, text=True, cwd=tempfile.gettempdir(), env=env)
    if r.returncode == 0:
        return env, r.stdout.strip()
    env2 = dict(env)
    env2["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    r2 = subprocess.run(probe, capture_output=True, text=True, cwd=tempfile.gettempdir(), env=env2)
    if r2.returncode == 0:
        return env2, r2.stdout.strip()
    return None, (r2.stderr.strip().splitlines() or r.stderr.strip().splitlines() or ["?"])[-1]


def case_identity(case):
    """What the tables need besides the numbers: which build a pyiocp case ran, whose twin it is."""
    return {"build": case.build.name if case.build else None, "twin_of": case.twin_of,
            "refs": [list(x) for x in case.refs] or None, "threads_label": case.threads_label,
            "connections_label": str(case.connections) if case.connections else None}


def case_env(case, env):
    """A baseline case runs with its build's environment (nothing pointing at the current tree)."""
    return case.build.env if case.build is not None and case.build.env is not None else env


def stale_install(package_dir):
    """A warning when the pyiocp the runner imports was built before the tree's engine or binding
    last changed (then 'current' is not this tree), else None."""
    if os.path.abspath(package_dir).startswith(REPO + os.sep):
        return None                  # an in-place build: nothing installed to go stale
    cores = [os.path.join(package_dir, f) for f in os.listdir(package_dir) if f.startswith("_core")]
    if not cores:
        return None
    built = max(os.path.getmtime(f) for f in cores)
    r = subprocess.run(["git", "-C", REPO, "ls-files", "engine", "pyiocp", "setup.py"],
                       capture_output=True, text=True)
    newest = None
    for name in r.stdout.split():
        path = os.path.join(REPO, name)
        if os.path.exists(path) and (newest is None or os.path.getmtime(path) > newest[0]):
            newest = (os.path.getmtime(path), name)
    if newest is None or newest[0] <= built:
        return None
    when = lambda t: time.strftime("%Y-%m-%d %H:%M", time.localtime(t))      # noqa: E731
    return (f"the pyiocp this runner imports ({package_dir}, built {when(built)}) may be older than the "
            f"tree: {newest[1]} changed at {when(newest[0])}. Reinstall it (pip install .) so that the "
            f"'current' rows measure this tree")


def default_threads(build, env, cpus):
    """The engine's default worker count for a build, asked under the servers' taskset (a default
    that follows the process's CPU affinity must see the CPUs the servers get)."""
    code = ("import pyiocp; f = getattr(pyiocp, 'default_threads', None); "
            "print(f() if f else pyiocp.Engine().threads)")
    r = subprocess.run(["taskset", "-c", cpus, build.python, "-c", code], capture_output=True, text=True,
                       cwd=tempfile.gettempdir(), env=build.env if build.env is not None else env)
    try:
        return int(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        sys.exit(f"run_load: cannot ask the {build.name} pyiocp for its default thread count "
                 f"(needed by the default-thread echo cases): {(r.stderr.strip().splitlines() or ['?'])[-1]}")


def wait_for_port(host, port, proc, logpath, timeout):
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise CaseFailed(f"server exited with status {proc.returncode} before accepting connections;"
                             f" its output:\n{tail(logpath)}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise CaseFailed(f"server did not accept connections on {host}:{port} within {timeout:.0f} s;"
                             f" its output:\n{tail(logpath)}")
        time.sleep(0.05)


def stop_server(proc, timeout=10.0):
    """SIGTERM, then wait; returns a short description of how it ended."""
    if proc.poll() is not None:
        return f"had already exited with status {proc.returncode}"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return f"did not exit within {timeout:.0f} s of SIGTERM: killed"
    dt = time.monotonic() - t0
    if rc == 0:
        return f"exited 0 after SIGTERM in {dt:.2f} s"
    return f"exited with status {rc} after SIGTERM in {dt:.2f} s"


def run_loadgen(cmd, server_pid, timeout, server_cpus, client_cpus):
    """Runs the load generator; samples the server CPU (and the pinned CPUs'
    total busy time, to see other work on them) at the window's edges."""
    lg = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(timeout, lg.kill)
    timer.start()
    cpu = {}
    stderr_lines = []
    try:
        for line in lg.stderr:
            if line.startswith("loadgen: measuring"):
                cpu["start"] = proc_cpu_split(server_pid)
                cpu["threads"] = proc_threads(server_pid)
                cpu["scpu_start"] = cpu_times(server_cpus)
                cpu["ccpu_start"] = cpu_times(client_cpus)
            elif line.startswith("loadgen: window end"):
                cpu["end"] = proc_cpu_split(server_pid)
                cpu["threads_end"] = proc_threads(server_pid)
                cpu["scpu_end"] = cpu_times(server_cpus)
                cpu["ccpu_end"] = cpu_times(client_cpus)
            else:
                stderr_lines.append(line.rstrip("\n"))
        out = lg.stdout.read()
        rc = lg.wait()
    finally:
        timer.cancel()
        if lg.poll() is None:
            lg.kill()
            lg.wait()
    return rc, out, stderr_lines, cpu


def run_case(case, args, loadgen, env, workdir, tag=""):
    port = free_port(args.host)
    argv = case.server(port)
    server_cmd = ["taskset", "-c", args.server_cpus] + argv
    logpath = os.path.join(workdir, case.id.replace("/", "-") + tag + ".log")
    result = {"id": case.id, "group": case.group, "key": case.key, "label": case.label,
              "family": case.family, "threads": case.threads, "server_cmd": shlex.join(server_cmd)}
    result.update(case_identity(case))
    env = case_env(case, env)
    # From the work directory, not the source tree: `python -m pyiocp` puts the current directory
    # first on sys.path, and the tree's unbuilt pyiocp/ would shadow the installed package.
    with open(logpath, "wb") as logf:
        proc = subprocess.Popen(server_cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=workdir, env=env,
                                start_new_session=True)
    try:
        wait_for_port(args.host, port, proc, logpath, args.start_timeout)
        lg_cmd = ["taskset", "-c", args.client_cpus, loadgen, "--host", args.host, "--port", str(port),
                  "--connections", str(case.connections or args.connections), "--duration", str(args.duration),
                  "--warmup", str(args.warmup), "--verify-every", str(args.verify_every)] + case.load
        result["loadgen_cmd"] = shlex.join(lg_cmd)
        rc, out, errs, cpu = run_loadgen(lg_cmd, proc.pid, args.duration + args.warmup + 60,
                                         parse_cpus(args.server_cpus), parse_cpus(args.client_cpus))
        alive = proc.poll() is None
        try:
            lg = json.loads(out.strip().splitlines()[-1]) if out.strip() else None
        except ValueError:
            lg = None
        if lg is None:
            raise CaseFailed(f"load generator exited {rc} without a result; stderr:\n" + "\n".join(errs[-20:]))
        result["loadgen"] = lg
        if rc != 0 or lg.get("errors"):
            raise CaseFailed(f"load generator reported {lg.get('errors')} error(s) (exit {rc}):\n"
                             + "\n".join(errs[-20:]) + (f"\nserver output:\n{tail(logpath)}" if tail(logpath) else ""))
        if not alive:
            raise CaseFailed(f"server died during the run (status {proc.returncode}):\n{tail(logpath)}")
        if "start" not in cpu or "end" not in cpu:
            raise CaseFailed("could not sample the server's CPU time at the window's edges")
        server_user = cpu["end"][0] - cpu["start"][0]
        server_sys = cpu["end"][1] - cpu["start"][1]
        server_cpu = server_user + server_sys
        result["server_user_s"] = server_user
        result["server_sys_s"] = server_sys
        secs = lg["seconds"]
        # Time the pinned CPUs spent on anything but the server / load generator
        # (other processes, this script, kernel threads) and time stolen by the host.
        s_busy = cpu["scpu_end"][0] - cpu["scpu_start"][0]
        s_steal = cpu["scpu_end"][1] - cpu["scpu_start"][1]
        c_busy = cpu["ccpu_end"][0] - cpu["ccpu_start"][0]
        c_steal = cpu["ccpu_end"][1] - cpu["ccpu_start"][1]
        result["other_on_server_cpus_pct"] = 100.0 * max(0.0, s_busy - server_cpu) / secs if secs else None
        result["other_on_client_cpus_pct"] = (100.0 * max(0.0, c_busy - lg["client_cpu_s"]) / secs
                                              if secs else None)
        result["steal_pct"] = 100.0 * (s_steal + c_steal) / secs if secs else None
        noisy = []
        if result["other_on_server_cpus_pct"] is not None and result["other_on_server_cpus_pct"] > args.noise_pct:
            noisy.append(f"{result['other_on_server_cpus_pct']:.0f} % of the server's CPU went to other work")
        if result["other_on_client_cpus_pct"] is not None and result["other_on_client_cpus_pct"] > args.noise_pct:
            noisy.append(f"{result['other_on_client_cpus_pct']:.0f} % of the load generator's CPU went to other work")
        if result["steal_pct"] is not None and result["steal_pct"] > args.noise_pct:
            noisy.append(f"{result['steal_pct']:.0f} % steal time")
        if noisy:
            result["noise"] = "noisy run: " + "; ".join(noisy)
        result.update({
            "ok": True,
            "rate": lg["rate"],
            "requests": lg["requests"],
            "seconds": lg["seconds"],
            "p50_us": lg["p50_us"],
            "p99_us": lg["p99_us"],
            "server_cpu_s": server_cpu,
            "server_cpu_pct": 100.0 * server_cpu / lg["seconds"] if lg["seconds"] else None,
            "per_cpu_s": lg["requests"] / server_cpu if server_cpu > 0 else None,
            "client_cpu_pct": 100.0 * lg["client_cpu_s"] / lg["seconds"] if lg["seconds"] else None,
            "server_threads": cpu.get("threads_end") or cpu.get("threads"),
            "fairness": lg.get("fairness"),
            "per_conn_min": lg.get("per_conn_min"),
            "per_conn_max": lg.get("per_conn_max"),
        })
    except CaseFailed as e:
        result["ok"] = False
        result["error"] = str(e)
    finally:
        result["server_exit"] = stop_server(proc)
    notes = []
    if result["ok"] and not result["server_exit"].startswith("exited 0"):
        notes.append("server " + result["server_exit"])
    if result.get("noise"):
        notes.append(result["noise"])
    if result["ok"] and result.get("fairness") is not None and result["fairness"] < 0.9:
        notes.append(f"unfair service: answers per connection ranged from {result['per_conn_min']:,} to "
                     f"{result['per_conn_max']:,} (Jain index {result['fairness']:.2f})")
    if (result["ok"] and result.get("client_cpu_pct", 0) >= 90
            and (result.get("server_cpu_pct") or 0) < 90):
        notes.append(f"load generator saturated ({result['client_cpu_pct']:.0f} % of its CPU) while the server "
                     f"used {result['server_cpu_pct']:.0f} % of its: the rate is a lower bound; compare "
                     f"req per server-CPU-s")
    if notes:
        result["note"] = "; ".join(notes)
    return result


# ------------------------------------------------------------ HTTP (wrk) --

def tree_pids(pid):
    """pid and all its descendants (scanning /proc: the servers fork rarely, if ever)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                data = f.read()
        except OSError:
            continue
        ppid = int(data[data.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def tree_cpu_split(pid):
    """(utime, stime) summed over a process and its descendants."""
    u = s = 0.0
    for p in tree_pids(pid):
        try:
            pu, ps = proc_cpu_split(p)
        except (OSError, ValueError, IndexError):
            continue
        u += pu
        s += ps
    return u, s


def tree_status_kib(pid, field):
    """A /proc/PID/status field in kB (VmHWM, VmRSS), summed over the process tree."""
    total, n = 0, 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
                        n += 1
                        break
        except OSError:
            continue
    return total if n else None, n


def tool_version(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (r.stdout + r.stderr).strip()
    return text.splitlines()[0].strip() if text else None


_UNITS_TIME = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
_UNITS_BYTES = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}


def _wrk_time_us(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"not a wrk time: {text!r}")
    return float(m.group(1)) * _UNITS_TIME[m.group(2)]


def _wrk_bytes(text):
    m = re.fullmatch(r"([0-9.]+)(B|KB|MB|GB|TB)", text.strip())
    if not m:
        raise ValueError(f"not a wrk size: {text!r}")
    return float(m.group(1)) * _UNITS_BYTES[m.group(2)]


def parse_wrk(out):
    """wrk's report (with --latency) -> dict; raises ValueError when a line is missing.
    wrk prints sizes in binary units (1 MB = 2^20 bytes) with two decimals."""
    r = {"socket_errors": {}, "non2xx": 0}
    pct = {}
    for line in out.splitlines():
        t = line.strip()
        m = re.fullmatch(r"(50|75|90|99)%\s+(\S+)", t)
        if m:
            pct[int(m.group(1))] = _wrk_time_us(m.group(2))
            continue
        m = re.fullmatch(r"(\d+) requests in (\S+), (\S+) read", t)
        if m:
            r["requests"] = int(m.group(1))
            r["seconds"] = _wrk_time_us(m.group(2)) / 1e6
            r["bytes_read"] = _wrk_bytes(m.group(3))
            continue
        m = re.fullmatch(r"Socket errors: (.*)", t)
        if m:
            for part in m.group(1).split(","):
                k, v = part.split()
                r["socket_errors"][k] = int(v)
            continue
        m = re.fullmatch(r"Non-2xx or 3xx responses: (\d+)", t)
        if m:
            r["non2xx"] = int(m.group(1))
            continue
        m = re.fullmatch(r"Requests/sec:\s+(\S+)", t)
        if m:
            r["rate"] = float(m.group(1))
            continue
        m = re.fullmatch(r"Transfer/sec:\s+(\S+)", t)
        if m:
            r["transfer_Bps"] = _wrk_bytes(m.group(1))
    missing = [k for k in ("requests", "rate", "transfer_Bps") if k not in r]
    missing += [f"{p}%" for p in (50, 99) if p not in pct]
    if missing:
        raise ValueError("wrk's report lacks " + ", ".join(missing))
    r["p50_us"], r["p99_us"] = pct[50], pct[99]
    r["p75_us"], r["p90_us"] = pct.get(75), pct.get(90)
    return r


def run_wrk(cmd, timeout, out_path):
    """Runs wrk to the end; returns (exit status, output, its user+sys CPU
    seconds from wait4's rusage, wall seconds, killed by the timeout?)."""
    killed = threading.Event()
    with open(out_path, "w+") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)

        def kill():
            killed.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, ru = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            timer.cancel()
            if proc.returncode is None:
                proc.kill()
                proc.wait()
        wall = time.monotonic() - t0
        out.seek(0)
        text = out.read()
    return proc.returncode, text, ru.ru_utime + ru.ru_stime, wall, killed.is_set()


def verify_http(host, port, name, path, size, timeout=30.0):
    """Two GETs of the file on one connection: status 200, Content-Length and
    every byte equal to the file, and the connection kept open in between.
    Returns the first answer's headers (for the record)."""
    import http.client
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        first_sock = None
        headers = None
        for i in range(2):
            conn.request("GET", "/" + name)
            resp = conn.getresponse()
            if i == 0:
                first_sock = conn.sock
                headers = dict(resp.getheaders())
            elif conn.sock is not first_sock:
                raise CaseFailed("the server closed the connection after the first answer (no keep-alive)")
            if resp.status != 200:
                raise CaseFailed(f"GET /{name} answered {resp.status} {resp.reason}: {resp.read(200)!r}")
            clen = resp.getheader("Content-Length")
            if clen is None or int(clen) != size:
                raise CaseFailed(f"GET /{name}: Content-Length {clen!r}, the file has {size} bytes")
            with open(path, "rb") as f:
                got = 0
                while True:
                    chunk = resp.read(MiB)
                    if not chunk:
                        break
                    if chunk != f.read(len(chunk)):
                        raise CaseFailed(f"GET /{name}: the body differs from the file near byte {got}")
                    got += len(chunk)
            if got != size:
                raise CaseFailed(f"GET /{name}: body of {got} bytes, the file has {size}")
            if resp.will_close:
                raise CaseFailed(f"GET /{name}: the server closes the connection after each answer "
                                 f"(HTTP/{resp.version / 10:.1f}, Connection: {resp.getheader('Connection')})")
        return headers
    except (OSError, http.client.HTTPException) as e:
        raise CaseFailed(f"checking GET /{name} before the load failed: {type(e).__name__}: {e}")
    finally:
        conn.close()


def wrk_problems(w, size, conns):
    """Errors in one wrk report: any makes the case fail."""
    probs = []
    errs = {k: v for k, v in w["socket_errors"].items() if v}
    if errs:
        probs.append("socket errors: " + ", ".join(f"{k} {v}" for k, v in errs.items()))
    if w["non2xx"]:
        probs.append(f"{w['non2xx']} answer(s) not 2xx/3xx")
    if w["requests"] == 0:
        probs.append("no request completed")
    else:
        # wrk counts every byte read (heads, and a last answer cut by the stop), printed
        # with two decimals of its unit: the bodies alone must fit, with < 1 KiB of head each.
        lo = 0.99 * w["requests"] * size
        hi = 1.01 * (w["requests"] + conns) * (size + 1024) + 10 * MiB
        if not lo <= w["bytes_read"] <= hi:
            probs.append(f"{w['bytes_read']:,.0f} bytes read for {w['requests']:,} answers of a "
                         f"{size:,}-byte file")
    return probs


def http_loadgen_window(case, args, loadgen, port, proc, workdir, tag):
    """Drives an HTTP case with loadgen --mode http; returns what the wrk
    path measures (rate, latency, bytes, server and client CPU) in the same
    keys, with the server's CPU sampled at loadgen's window edges."""
    h = case.http
    size = h["size"]
    # checking 100 MiB bodies would cost the client more than the server
    verify = 0 if size > 16 * MiB else args.verify_every
    cmd = ["taskset", "-c", args.client_cpus, loadgen, "--mode", "http", "--host", args.host,
           "--port", str(port), "--name", h["name"], "--size", str(size),
           "--connections", str(h["connections"]), "--duration", str(args.duration),
           "--warmup", str(args.warmup), "--verify-every", str(verify),
           "--stall", str(h["timeout"] or 5)]
    rc, out, errs, cpu = run_loadgen(cmd, proc.pid, args.duration + args.warmup + 60,
                                     parse_cpus(args.server_cpus), parse_cpus(args.client_cpus))
    try:
        lg = json.loads(out.strip().splitlines()[-1]) if out.strip() else None
    except ValueError:
        lg = None
    if lg is None or rc != 0 or lg.get("errors"):
        raise CaseFailed(f"load generator ({shlex.join(cmd)}) exited {rc}"
                         + (f" with {lg.get('errors')} error(s)" if lg else " without a result")
                         + ":\n" + "\n".join(errs[-20:]))
    if "start" not in cpu or "end" not in cpu:
        raise CaseFailed("could not sample the server's CPU time at the window's edges")
    wire_bytes = lg["wire_mbytes_per_s"] * 1e6 * lg["seconds"]
    return {
        "cmd": shlex.join(cmd), "loadgen": lg, "rate": lg["rate"], "requests": lg["requests"],
        "seconds": lg["seconds"], "p50_us": lg["p50_us"], "p99_us": lg["p99_us"],
        "transfer_Bps": wire_bytes / lg["seconds"] if lg["seconds"] else 0.0, "bytes_read": wire_bytes,
        "server": (cpu["end"][0] - cpu["start"][0], cpu["end"][1] - cpu["start"][1]),
        "server_busy": (cpu["scpu_end"][0] - cpu["scpu_start"][0], cpu["scpu_end"][1] - cpu["scpu_start"][1]),
        "client_busy": (cpu["ccpu_end"][0] - cpu["ccpu_start"][0], cpu["ccpu_end"][1] - cpu["ccpu_start"][1]),
        "client_cpu_s": lg["client_cpu_s"],
    }


def run_http_case(case, args, env, workdir, tag="", loadgen=None):
    h = case.http
    port = free_port(args.host)
    argv = case.server(port)
    server_cmd = ["taskset", "-c", args.server_cpus] + argv
    logpath = os.path.join(workdir, case.id.replace("/", "-") + tag + ".log")
    path = os.path.join(workdir, "files", h["name"])
    result = {"id": case.id, "group": case.group, "key": case.key, "label": case.label, "kind": "wrk",
              "family": case.family, "threads": case.threads, "threads_label": case.threads_label,
              "server_cmd": shlex.join(server_cmd), "file": h["name"], "size": h["size"],
              "connections": h["connections"]}
    result.update(case_identity(case))
    env = case_env(case, env)

    def server_output():
        text = tail(logpath)
        if case.aux_log and os.path.exists(case.aux_log(port)):
            text += tail(case.aux_log(port))
        return f"\nserver output:\n{text}" if text.strip() else ""

    with open(logpath, "wb") as logf:
        proc = subprocess.Popen(server_cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=workdir, env=env,
                                start_new_session=True)
    try:
        wait_for_port(args.host, port, proc, logpath, args.start_timeout)
        result["response_headers"] = verify_http(args.host, port, h["name"], path, h["size"])
        if args.http_client == "loadgen":
            m = http_loadgen_window(case, args, loadgen, port, proc, workdir, tag)
            if proc.poll() is not None:
                raise CaseFailed(f"server died during the run (status {proc.returncode}){server_output()}")
            result["loadgen_cmd"] = m["cmd"]
            result["loadgen"] = m["loadgen"]
            w = {k: m[k] for k in ("rate", "requests", "seconds", "p50_us", "p99_us", "transfer_Bps",
                                   "bytes_read")}
            server_user, server_sys = m["server"]
            (s_busy, s_steal), (c_busy, c_steal) = m["server_busy"], m["client_busy"]
            client_cpu, wall = m["client_cpu_s"], m["seconds"]
        else:
            w, server_user, server_sys, s_busy, s_steal, c_busy, c_steal, client_cpu, wall = \
                http_wrk_window(case, args, port, proc, workdir, tag, result, server_output)
        hwm, nproc = tree_status_kib(proc.pid, "VmHWM")
        result["peak_rss_kib"] = hwm
        result["server_procs"] = nproc
        result["server_threads"] = sum(proc_threads(p) or 0 for p in tree_pids(proc.pid))
        server_cpu = server_user + server_sys
        secs = wall
        client_name = "wrk" if args.http_client == "wrk" else "the load generator"
        result["other_on_server_cpus_pct"] = 100.0 * max(0.0, s_busy - server_cpu) / secs
        result["other_on_client_cpus_pct"] = 100.0 * max(0.0, c_busy - client_cpu) / secs
        result["steal_pct"] = 100.0 * (s_steal + c_steal) / secs
        noisy = []
        if result["other_on_server_cpus_pct"] > args.noise_pct:
            noisy.append(f"{result['other_on_server_cpus_pct']:.0f} % of the server's CPU went to other work")
        if result["other_on_client_cpus_pct"] > args.noise_pct:
            noisy.append(f"{result['other_on_client_cpus_pct']:.0f} % of {client_name}'s CPU went to other work")
        if result["steal_pct"] > args.noise_pct:
            noisy.append(f"{result['steal_pct']:.0f} % steal time")
        if noisy:
            result["noise"] = "noisy run: " + "; ".join(noisy)
        result.update({
            "ok": True,
            "rate": w["rate"],
            "requests": w["requests"],
            "seconds": w["seconds"],
            "wall_s": wall,
            "p50_us": w["p50_us"],
            "p99_us": w["p99_us"],
            "transfer_mib_s": w["transfer_Bps"] / MiB,
            "read_mib": w["bytes_read"] / MiB,
            "server_user_s": server_user,
            "server_sys_s": server_sys,
            "server_cpu_s": server_cpu,
            "server_cpu_pct": 100.0 * server_cpu / wall,
            "per_cpu_s": w["requests"] / server_cpu if server_cpu > 0 else None,
            "mib_per_cpu_s": w["bytes_read"] / MiB / server_cpu if server_cpu > 0 else None,
            "client_cpu_s": client_cpu,
            "client_cpu_pct": 100.0 * client_cpu / wall,
        })
    except CaseFailed as e:
        result["ok"] = False
        result["error"] = str(e)
    finally:
        result["server_exit"] = stop_server(proc)
    notes = []
    if result["ok"] and not result["server_exit"].startswith("exited 0"):
        notes.append("server " + result["server_exit"])
    if result.get("noise"):
        notes.append(result["noise"])
    if result["ok"] and result["client_cpu_pct"] >= 90 and result["server_cpu_pct"] < 90:
        notes.append(f"{'wrk' if args.http_client == 'wrk' else 'the load generator'} saturated its CPU "
                     f"({result['client_cpu_pct']:.0f} %) while the server used "
                     f"{result['server_cpu_pct']:.0f} % of its own: the rate is a lower bound, compare "
                     f"{'MiB' if case.group == 'http100m' else 'req'} per server-CPU-s")
    if notes:
        result["note"] = "; ".join(notes)
    return result


def http_wrk_window(case, args, port, proc, workdir, tag, result, server_output):
    """Drives an HTTP case with wrk (warm-up, then the measured run)."""
    h = case.http
    url = f"http://{args.host}:{port}/{h['name']}"

    def wrk_cmd(seconds):
        cmd = ["taskset", "-c", args.client_cpus, args.wrk, "-t1", f"-c{h['connections']}",
               f"-d{wrk_seconds(seconds)}s", "--latency"]
        if h["timeout"]:
            cmd.append(f"--timeout={h['timeout']}s")
        return cmd + [url]

    if args.warmup > 0:
        cmd = wrk_cmd(args.warmup)
        rc, out, _, _, killed = run_wrk(cmd, wrk_seconds(args.warmup) + 60,
                                        os.path.join(workdir, case.id.replace("/", "-") + tag + ".warmup.txt"))
        try:
            probs = wrk_problems(parse_wrk(out), h["size"], h["connections"]) if rc == 0 else []
        except ValueError as e:
            probs = [str(e)]
        if rc != 0 or killed or probs:
            raise CaseFailed(f"wrk warm-up ({shlex.join(cmd)}) "
                             + ("was killed after its time-out" if killed else f"exited {rc}")
                             + (": " + "; ".join(probs) if probs else "") + f"\n{out.strip()}"
                             + server_output())
        if proc.poll() is not None:
            raise CaseFailed(f"server died during the warm-up (status {proc.returncode}){server_output()}")

    cmd = wrk_cmd(args.duration)
    result["wrk_cmd"] = shlex.join(cmd)
    server_cpus, client_cpus = parse_cpus(args.server_cpus), parse_cpus(args.client_cpus)
    s0, sc0, cc0 = tree_cpu_split(proc.pid), cpu_times(server_cpus), cpu_times(client_cpus)
    rc, out, wrk_cpu, wall, killed = run_wrk(cmd, wrk_seconds(args.duration) + 60,
                                             os.path.join(workdir, case.id.replace("/", "-") + tag + ".wrk.txt"))
    s1, sc1, cc1 = tree_cpu_split(proc.pid), cpu_times(server_cpus), cpu_times(client_cpus)
    alive = proc.poll() is None
    result["wrk_output"] = out
    if killed or rc != 0:
        raise CaseFailed(("wrk was killed after its time-out" if killed else f"wrk exited {rc}")
                         + f":\n{out.strip()}" + server_output())
    try:
        w = parse_wrk(out)
    except ValueError as e:
        raise CaseFailed(f"{e}:\n{out.strip()}")
    result["wrk"] = w
    probs = wrk_problems(w, h["size"], h["connections"])
    if probs:
        raise CaseFailed("wrk: " + "; ".join(probs) + f"\n{out.strip()}" + server_output())
    if not alive:
        raise CaseFailed(f"server died during the run (status {proc.returncode}){server_output()}")
    return (w, s1[0] - s0[0], s1[1] - s0[1], sc1[0] - sc0[0], sc1[1] - sc0[1],
            cc1[0] - cc0[0], cc1[1] - cc0[1], wrk_cpu, wall)


def noise_score(r):
    return sum(r.get(k) or 0.0 for k in ("other_on_server_cpus_pct", "other_on_client_cpus_pct", "steal_pct"))


def run_with_retries(case, args, run_one, tag):
    """One measurement of a case: run again while noisy (up to --noise-retries
    times) and keep the quietest attempt; logs the result."""
    tries = [run_one(case, tag)]
    while tries[-1]["ok"] and tries[-1].get("noise") and len(tries) <= args.noise_retries:
        log(f"    {tries[-1]['rate']:,.0f}/s, but {tries[-1]['noise']}: running it again")
        tries.append(run_one(case, tag))
    r = min(tries, key=noise_score) if tries[-1]["ok"] else tries[-1]
    r["attempts"] = len(tries)
    r["attempt_rates"] = [t.get("rate") for t in tries]
    if len(tries) > 1 and r["ok"]:
        log(f"    keeping attempt {tries.index(r) + 1} of {len(tries)} (the quietest):")
    if r["ok"] and r.get("kind") == "wrk":
        log(f"    {r['rate']:,.1f}/s  {r['transfer_mib_s']:,.1f} MiB/s  p50 {r['p50_us']:,.0f} µs  "
            f"p99 {r['p99_us']:,.0f} µs  server CPU {r['server_cpu_s']:.2f} s "
            f"({r['server_cpu_pct']:.0f} %, user {r['server_user_s']:.2f} s, sys {r['server_sys_s']:.2f} s, "
            f"{r['server_threads']} threads, {r['server_procs']} process(es))  peak RSS "
            f"{fmt_mib(r['peak_rss_kib'])} MiB  client CPU {r['client_cpu_pct']:.0f} %  "
            f"[server {r['server_exit']}]" + (f"\n    NOTE: {r['note']}" if r.get("note") else ""))
    elif r["ok"]:
        log(f"    {r['rate']:,.0f}/s  p50 {r['p50_us']:,.0f} µs  p99 {r['p99_us']:,.0f} µs  "
            f"server CPU {r['server_cpu_s']:.2f} s ({r['server_cpu_pct']:.0f} %, "
            f"user {r['server_user_s']:.2f} s, sys {r['server_sys_s']:.2f} s, "
            f"{r['server_threads']} threads)  client CPU {r['client_cpu_pct']:.0f} %  "
            f"fairness {r['fairness']:.2f}  "
            f"[server {r['server_exit']}]" + (f"\n    NOTE: {r['noise']}" if r.get("noise") else ""))
    else:
        log(f"    FAILED: {r['error']}\n    [server {r['server_exit']}]")
    return r


# ------------------------------------------------------------------ main --

def parse_args(argv):
    ap = argparse.ArgumentParser(description="Load benchmarks: pyiocp vs asyncio vs uvloop (loopback).",
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per case (default 5)")
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per case (default 2)")
    ap.add_argument("--connections", type=int, default=50, help="client connections (default 50)")
    ap.add_argument("--threads", type=int, default=1,
                    help="pyiocp worker threads for native, file_server and echo1k (default 1: the server "
                         "has one pinned CPU)")
    ap.add_argument("--thread-counts", default="1,2,4", help="threads for the echo_threads group (default 1,2,4)")
    ap.add_argument("--msg", type=int, default=1024, help="echo message size (default 1024)")
    ap.add_argument("--echo-connections", default="1,10,50",
                    help="connection counts for the echo_conns group (default 1,10,50)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="run every case once per round, in an order shuffled per round (default 3); tables "
                         "show the median and spread over the rounds, ratios are taken within each round. "
                         "--rounds 1: one run per case, in the listed order")
    ap.add_argument("--seed", type=int, default=None,
                    help="seed of the per-round shuffle (default: a new one, printed; pass it to repeat an order)")
    ap.add_argument("--baseline", metavar="REF",
                    help="A/B run: also run every selected pyiocp case with pyiocp built from git REF (a hash, "
                         "a branch, HEAD~N) in its own venv, interleaved with the current one; adds a "
                         "'current ÷ baseline' table. See 'A/B against a baseline' below")
    ap.add_argument("--baseline-cache", metavar="DIR",
                    help="keep baseline builds in DIR, keyed by commit hash and Python version, and reuse "
                         "them (announced) instead of building again (default: a fresh build per run, "
                         "in the temporary directory)")
    ap.add_argument("--ab-tolerance", type=float, default=3.0, metavar="PCT",
                    help="flag an A/B row whose median current ÷ baseline per server-CPU-second is off by "
                         "more than PCT %% (default 3)")
    ap.add_argument("--only", default="", help="comma-separated tags: case ids, groups, server keys or families")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--json", metavar="PATH", help="write all results as JSON to PATH")
    ap.add_argument("--md", default=os.path.join(REPO, "BENCHMARKS.md"),
                    help="Markdown file whose load section is written (default BENCHMARKS.md at the top)")
    ap.add_argument("--no-md", action="store_true", help="do not write the Markdown file")
    ap.add_argument("--server-cpus", default="0", help="taskset CPU list for the server (default 0)")
    ap.add_argument("--client-cpus", default="1", help="taskset CPU list for the load generator (default 1)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--verify-every", type=int, default=1,
                    help="compare the content of every Nth answer (default 1: all; 0: sizes only)")
    ap.add_argument("--noise-pct", type=float, default=5.0,
                    help="flag a case when other work took more than this %% of a pinned CPU (default 5)")
    ap.add_argument("--noise-retries", type=int, default=2,
                    help="run a noisy case again up to this many times and keep the quietest run (default 2)")
    ap.add_argument("--start-timeout", type=float, default=20.0, help="seconds to wait for a server's port")
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"),
                    help="C compiler for loadgen.c and benchmarks/bare/uring_http.c")
    ap.add_argument("--http-client", choices=("loadgen", "wrk"), default="loadgen",
                    help="what drives the HTTP cases: loadgen --mode http (default: about a third of wrk's "
                         "CPU per byte, so it saturates later) or wrk")
    ap.add_argument("--wrk", default="wrk", help="wrk executable for the HTTP cases with --http-client wrk")
    ap.add_argument("--nginx", default="nginx",
                    help="nginx executable for the HTTP nginx cases (default: nginx on PATH or in /usr/sbin)")
    ap.add_argument("--http-connections", type=int, default=50,
                    help="wrk connections for http1k and http64k (default 50; http100m always uses 1)")
    ap.add_argument("--backends", default="io_uring,epoll",
                    help="pyiocp engine backends run side by side for native, echo1k and http "
                         "(default io_uring,epoll)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (build, files, logs)")
    args = ap.parse_args(argv)
    args.bare_uring = None        # the compiled reference servers, once main() has built them
    args.bare_sendfile = None
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not args.backends or any(b not in ("io_uring", "epoll") for b in args.backends):
        ap.error("--backends takes io_uring and/or epoll, separated by commas")
    try:
        args.thread_counts = [int(x) for x in args.thread_counts.split(",") if x.strip()]
    except ValueError:
        ap.error("--thread-counts must be integers separated by commas")
    try:
        args.echo_connections = [int(x) for x in args.echo_connections.split(",") if x.strip()]
    except ValueError:
        ap.error("--echo-connections must be integers separated by commas")
    if any(n < 1 for n in args.echo_connections + args.thread_counts):
        ap.error("--echo-connections and --thread-counts take counts of 1 or more")
    if args.rounds < 1:
        ap.error("--rounds must be 1 or more")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 32)
    if (args.duration <= 0 or args.warmup < 0 or args.connections < 1 or args.threads < 1
            or args.http_connections < 1):
        ap.error("bad --duration, --warmup, --connections, --http-connections or --threads")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not shutil.which("taskset"):
        sys.exit("run_load: taskset not found (util-linux)")
    for cpus in (args.server_cpus, args.client_cpus):
        for part in cpus.split(","):
            for c in part.split("-"):
                if not c.isdigit() or int(c) >= os.cpu_count():
                    sys.exit(f"run_load: CPU list {cpus!r} does not fit this machine's {os.cpu_count()} CPUs")

    workdir = tempfile.mkdtemp(prefix="pyiocp-bench-")
    if not args.keep:
        # Also when a check below stops the run with sys.exit.
        atexit.register(shutil.rmtree, workdir, True)
    root = os.path.join(workdir, "files")
    os.mkdir(root)
    current = Build("current", sys.executable, REPO)
    builds = [current]
    baseline = None
    if args.baseline:
        try:
            commit, subject = baseline_build.resolve(REPO, args.baseline)
        except baseline_build.BaselineError as e:
            sys.exit(f"run_load: {e}")
        baseline = Build("baseline", None, None, env=baseline_build.clean_env(), short=commit[:9])
        builds.append(baseline)
    cases = build_cases(args, root, builds)
    if args.list:
        for c in cases:
            log(f"{c.id:36} {c.label}   [tags: {', '.join(sorted(c.tags()))}]")
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    only = [t.strip() for t in args.only.split(",") if t.strip()]
    if only:
        known = set().union(*(c.tags() for c in cases))
        unknown = [t for t in only if t not in known]
        if unknown:
            sys.exit(f"run_load: --only: unknown tag(s) {', '.join(unknown)}; see --list")
        unselected_http = [c.id for c in cases if c.http and not c.tags() & set(only)]
        cases = [c for c in cases if c.tags() & set(only)]
    else:
        unselected_http = []

    skipped = []
    http_skipped = []

    def skip_family(family, msg):
        """An optional baseline that is missing: loud, and fatal when asked for by name."""
        nonlocal cases
        gone = [c for c in cases if c.family == family]
        if not gone:
            return
        if only and any(t == family or t.endswith("/" + family) or t in {c.key for c in gone} for t in only):
            sys.exit("run_load: " + msg)
        log("run_load: " + "!" * 60)
        log("run_load: " + msg + ": " + ", ".join(c.id for c in gone))
        log("run_load: " + "!" * 60)
        if any(c.kind == "loadgen" for c in gone):
            skipped.append(msg)
        if any(c.kind == "wrk" for c in gone):
            http_skipped.append(msg)
        cases = [c for c in cases if c.family != family]

    wrk_version = nginx_version = aiohttp_version = None
    if any(c.kind == "wrk" for c in cases):
        wrk = shutil.which(args.wrk) if args.http_client == "wrk" else "(not used)"
        if not wrk:
            sys.exit(f"run_load: wrk not found ({args.wrk!r}): it drives the HTTP cases "
                     f"({', '.join(HTTP_GROUPS)}). Install it (Debian: apt-get install -y wrk) or pass --wrk "
                     f"PATH, or leave the HTTP cases out: --only {','.join(GROUPS)}")
        args.wrk = wrk
        if args.http_client == "wrk":
            wrk_version = tool_version([wrk, "--version"])
            if wrk_version:
                wrk_version = wrk_version.split(" Copyright")[0]
        else:
            wrk_version = "not used: loadgen --mode http drives the HTTP cases"
        nginx = shutil.which(args.nginx) or shutil.which(args.nginx, path="/usr/sbin:/usr/local/sbin")
        if not nginx:
            skip_family("nginx", f"nginx not found ({args.nginx!r}; Debian: apt-get install -y nginx-light, "
                                 f"or nginx): the nginx cases are NOT run and the ÷ nginx ratios are n/a")
        else:
            args.nginx = nginx    # the nginx cases read it when they start
            nginx_version = (tool_version([nginx, "-v"]) or "nginx ?").replace("nginx version: ", "")
        if importlib.util.find_spec("aiohttp") is None:
            skip_family("aiohttp", "aiohttp is not installed (pip install aiohttp): the aiohttp cases are NOT run")
        else:
            aiohttp_version = importlib.metadata.version("aiohttp")
        if any(c.key == "bare_sendfile" for c in cases):
            args.bare_sendfile, why = build_bare_sendfile(workdir, args.cc)
            if why:
                sys.exit(f"run_load: {why}")
        if any(c.key == "bare_uring" for c in cases):
            args.bare_uring, why = build_bare_uring(workdir, args.cc)
            if why:
                skip_family("bare", f"the bare io_uring reference cannot run here ({why}): its rows are NOT run "
                                    f"and the ÷ bare io_uring ratios are n/a")

    uvloop_version = None
    if importlib.util.find_spec("uvloop") is None:
        uv = [c for c in cases if c.family == "uvloop"]
        if uv:
            msg = "uvloop is not installed (pip install uvloop): the uvloop cases are NOT run"
            if only and any(t in ("uvloop",) or t.endswith("/uvloop") for t in only):
                sys.exit("run_load: " + msg)
            log("run_load: " + "!" * 60)
            log("run_load: " + msg + ": " + ", ".join(c.id for c in uv))
            log("run_load: " + "!" * 60)
            if any(c.kind == "loadgen" for c in uv):
                skipped.append(msg)
            if any(c.kind == "wrk" for c in uv):
                http_skipped.append(msg)
            cases = [c for c in cases if c.family != "uvloop"]
    else:
        import uvloop
        uvloop_version = getattr(uvloop, "__version__", "?")

    env = dict(os.environ)
    pyiocp_version = None
    if any(c.family == "pyiocp" for c in cases):
        penv, info = pyiocp_environment()
        if penv is None:
            sys.exit(f"run_load: pyiocp is not importable ({info}).\n"
                     "Build and install it first (pip install -e .), or run only the baselines with "
                     "--only asyncio,uvloop")
        env, pyiocp_version = penv, info
    if not cases:
        sys.exit("run_load: no case selected")
    missing = [(c, path) for c in cases if c.build is current for path in c.needs
               if not os.path.exists(os.path.join(REPO, path))]
    if baseline:
        if not any(c.twin_of for c in cases):
            sys.exit("run_load: --baseline compares pyiocp cases, and none is selected (see --list; "
                     "for example --only pyiocp, or --only echo1k,raw1k)")
        missing += [(c, path) for c in cases if c.build is baseline for path in c.needs
                    if not baseline_build.has_file(REPO, commit, path)]
    if missing:
        sys.exit("run_load: " + "; ".join(
            f"{c.id} needs {path}, which {'the baseline ' + baseline.short if c.build is baseline else 'this tree'}"
            f" does not have" for c, path in missing) + " (leave those cases out with --only)")
    current_info = None
    if any(c.build is current for c in cases):
        try:
            current_info = baseline_build.probe_pyiocp(sys.executable, env)
        except baseline_build.BaselineError as e:
            sys.exit(f"run_load: {e}")
        warning = stale_install(current_info["package"])
        if warning:
            log("run_load: " + "!" * 60)
            log("run_load: WARNING: " + warning)
            log("run_load: " + "!" * 60)
    base = None
    if baseline:
        # Before this script pins itself to the client's CPU: the build may use every CPU.
        try:
            base = baseline_build.build(REPO, args.baseline, workdir, cache_dir=args.baseline_cache,
                                        log=lambda m: log("run_load: " + m))
        except baseline_build.BaselineError as e:
            hint = ("" if args.keep or args.baseline_cache else
                    "\n(the work directory goes at exit: --keep or --baseline-cache DIR keeps the whole log)")
            sys.exit(f"run_load: {e}{hint}")
        baseline.python, baseline.tree = base.python, base.src
    for bld in builds:
        users = [c for c in cases if c.build is bld and c.default_threads]
        if users:
            bld.default_threads = default_threads(bld, env, args.server_cpus)
            for c in users:
                c.threads = bld.default_threads
                c.threads_label = f"default: {bld.default_threads}"

    # Keep this script off the server's CPU.
    try:
        os.sched_setaffinity(0, parse_cpus(args.client_cpus))
    except (OSError, AttributeError):
        pass

    make_files(root, big=any(c.group == "http100m" for c in cases))
    needs_loadgen = any(c.kind == "loadgen" or (c.kind == "wrk" and args.http_client == "loadgen")
                        for c in cases)
    loadgen = build_loadgen(workdir, args.cc) if needs_loadgen else None
    meta = {
        "command": shlex.join([os.path.basename(sys.executable),
                               os.path.relpath(os.path.abspath(sys.argv[0]), REPO)] + sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "kernel": platform.release(),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "uvloop": uvloop_version,
        "pyiocp": pyiocp_version,
        "current": ({"tree": baseline_build.tree_state(REPO), "package": current_info["package"],
                     "version": current_info["version"]} if current_info else None),
        "baseline": ({"ref": args.baseline, "commit": base.commit, "subject": base.subject,
                      "version": base.info.get("version"), "root": base.root, "reused": base.reused,
                      "cache": args.baseline_cache} if base else None),
        "ab_tolerance_pct": args.ab_tolerance,
        "server_cpus": args.server_cpus,
        "client_cpus": args.client_cpus,
        "connections": args.connections,
        "duration": args.duration,
        "warmup": args.warmup,
        "verify_every": args.verify_every,
        "noise_pct": args.noise_pct,
        "noise_retries": args.noise_retries,
        "only": args.only,
        "rounds": args.rounds,
        "seed": args.seed,
        "skipped": skipped,
        "http_skipped": http_skipped,
        "http_unselected": unselected_http,
        "http_connections": args.http_connections,
        "wrk": wrk_version,
        "http_client": args.http_client,
        "nginx": nginx_version,
        "aiohttp": aiohttp_version,
    }
    log(f"run_load: {len(cases)} case(s) × {args.rounds} round(s)"
        + (f" in an order shuffled per round (seed {args.seed}; --seed {args.seed} repeats it)"
           if args.rounds > 1 else "")
        + f", {args.warmup:g} s warm-up + {args.duration:g} s each; "
        f"server on CPU {args.server_cpus}, load generator / wrk on CPU {args.client_cpus}; work dir {workdir}")
    if args.http_client == "wrk" and any(c.kind == "wrk" for c in cases) and (args.duration != wrk_seconds(args.duration)
                                                or (args.warmup and args.warmup != wrk_seconds(args.warmup))):
        log(f"run_load: wrk takes whole seconds: the HTTP cases run {wrk_seconds(args.duration)} s "
            f"(warm-up {wrk_seconds(args.warmup) if args.warmup else 0} s)")

    def run_one(case, tag):
        if case.kind == "wrk":
            return run_http_case(case, args, env, workdir, tag, loadgen)
        return run_case(case, args, loadgen, env, workdir, tag)

    runs = {c.id: [] for c in cases}      # every round's result, per case
    rng = random.Random(args.seed)
    try:
        for rnd in range(1, args.rounds + 1):
            order = list(cases)
            if args.rounds > 1:
                rng.shuffle(order)
                log(f"=== round {rnd} of {args.rounds} (seed {args.seed})")
            for case in order:
                log(f"--- {case.id}: {case.label}" + (f"  [round {rnd}]" if args.rounds > 1 else ""))
                r = run_with_retries(case, args, run_one, f".r{rnd}" if args.rounds > 1 else "")
                r["round"] = rnd
                runs[case.id].append(r)
    except KeyboardInterrupt:
        log("run_load: interrupted; reporting the cases that finished")
    finally:
        if args.keep:
            log(f"run_load: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    results = [r for c in cases for r in runs[c.id]]
    rows = [aggregate(runs[c.id]) for c in cases if runs[c.id]]
    log("")
    log(report(rows, meta))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results,
                       "summary": [{k: v for k, v in row.items() if k != "runs"} for row in rows]}, f, indent=2)
        log(f"run_load: wrote {args.json}")
    if not args.no_md and base:
        # An A/B run checks a change; it has its own section and leaves the reference tables alone.
        update_markdown(args.md, ab_markdown_section(rows, meta), AB_MD_BEGIN, AB_MD_END)
        log(f"run_load: updated the A/B section of {args.md}")
    elif not args.no_md:
        # Each section is rewritten only by a run that has cases of its own.
        if any(r["group"] in GROUPS for r in rows):
            update_markdown(args.md, markdown_section([r for r in rows if r["group"] in GROUPS], meta))
            log(f"run_load: updated the load section of {args.md}")
        if any(r["group"] in HTTP_GROUPS for r in rows):
            update_markdown(args.md, http_markdown_section([r for r in rows if r["group"] in HTTP_GROUPS],
                                                           meta), HTTP_MD_BEGIN, HTTP_MD_END)
            log(f"run_load: updated the HTTP section of {args.md}")
    failed = [f"{r['id']}" + (f" (round {r['round']})" if args.rounds > 1 else "") for r in results if not r["ok"]]
    if failed:
        log(f"run_load: FAILED case(s): {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
