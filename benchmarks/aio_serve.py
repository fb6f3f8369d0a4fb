"""pyiocp.aio.serve inside an aiohttp process against a standalone `pyiocp serve`.

    python benchmarks/aio_serve.py [--rounds 3] [--connections 50] [--size 1024]

Issue 10's target: files served by `pyiocp.aio.serve(StaticFiles(root))`
next to an aiohttp application reach >= 0.9x a standalone `pyiocp serve`
(default configuration, no access log), while the application's loop stays
responsive.  Three servers, each pinned to the server CPU, run once per
round in a shuffled order:

- standalone: `python -m pyiocp serve ROOT --quiet`;
- aio-serve: benchmarks/servers/aiohttp_with_native.py on the default loop;
- aio-serve-uvloop: the same on uvloop.

loadgen (pinned to the client CPU) downloads one file over keep-alive
connections.  Meanwhile a probe on the client CPU asks the application's
GET /hello every 10 ms over one keep-alive connection and records each
round trip: its p50/p99 under file load, and with no file load (the probe
alone, before the load starts) for reference.  Ratios are taken within each
round (benchmarks/round_stats.py), reported as median (min-max).
Run it after installing the package (pip install . aiohttp uvloop): the
servers are started from a scratch directory, so they import the installed
pyiocp, not the source tree.
"""
import argparse
import json
import os
import random
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run_load  # noqa: E402  (its process helpers)
from round_stats import fmt_ratio_spread, fmt_spread, round_ratios, values  # noqa: E402

SERVERS = {
    "standalone": "pyiocp serve (standalone, default configuration)",
    "aio-serve": "pyiocp.aio.serve(StaticFiles) inside aiohttp (default loop)",
    "aio-serve-uvloop": "pyiocp.aio.serve(StaticFiles) inside aiohttp (uvloop)",
}


def server_argv(key, root, host, port, app_port):
    py = sys.executable
    if key == "standalone":
        return [py, "-m", "pyiocp", "serve", root, "--host", host, "--port", str(port), "--quiet"]
    argv = [py, os.path.join(HERE, "servers", "aiohttp_with_native.py"), root, "--host", host,
            "--port", str(port), "--app-port", str(app_port)]
    return argv + (["--uvloop"] if key.endswith("uvloop") else [])


class Probe(threading.Thread):
    """GET /hello every `every` seconds on one keep-alive connection; keeps
    the round-trip times (seconds) between start() and stop()."""

    REQUEST = b"GET /hello HTTP/1.1\r\nHost: bench\r\n\r\n"

    def __init__(self, host, port, every=0.01):
        super().__init__(daemon=True)
        self.addr, self.every = (host, port), every
        self.times, self.errors = [], []
        self._done = threading.Event()

    def run(self):
        try:
            sock = socket.create_connection(self.addr, timeout=5)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with sock:
                while not self._done.is_set():
                    t0 = time.perf_counter()
                    sock.sendall(self.REQUEST)
                    self._read_response(sock)
                    self.times.append(time.perf_counter() - t0)
                    self._done.wait(self.every)
        except OSError as exc:
            self.errors.append(exc)

    @staticmethod
    def _read_response(sock):
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("the application closed the connection")
            buf += chunk
        head, body = buf.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("the application closed the connection")
            body += chunk

    def stop(self):
        self._done.set()
        self.join(10)
        if self.errors:
            raise run_load.CaseFailed(f"probe failed: {self.errors[0]!r}")
        return self.times


def percentile(samples, q):
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))] if s else None


def run_one(key, args, loadgen, root, workdir, rnd):
    port, app_port = run_load.free_port(args.host), run_load.free_port(args.host)
    argv = ["taskset", "-c", args.server_cpus] + server_argv(key, root, args.host, port, app_port)
    logpath = os.path.join(workdir, f"{key}-{rnd}.log")
    with open(logpath, "wb") as logf:
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, cwd=workdir,
                                start_new_session=True)
    result = {"key": key, "round": rnd, "server_cmd": shlex.join(argv), "ok": False}
    try:
        run_load.wait_for_port(args.host, port, proc, logpath, 30)
        idle = probe = None
        if key != "standalone":
            run_load.wait_for_port(args.host, app_port, proc, logpath, 30)
            idle = Probe(args.host, app_port)
            idle.start()
            time.sleep(args.idle_probe)
            idle_times = idle.stop()
            result["idle_p50_us"] = percentile(idle_times, 0.50) * 1e6
            result["idle_p99_us"] = percentile(idle_times, 0.99) * 1e6
            probe = Probe(args.host, app_port)
            probe.start()
        cmd = ["taskset", "-c", args.client_cpus, loadgen, "--mode", "http", "--host", args.host,
               "--port", str(port), "--name", args.name, "--size", str(args.size),
               "--connections", str(args.connections), "--duration", str(args.duration),
               "--warmup", str(args.warmup), "--verify-every", "1", "--stall", "5"]
        rc, out, errs, cpu = run_load.run_loadgen(cmd, proc.pid, args.duration + args.warmup + 60,
                                                  run_load.parse_cpus(args.server_cpus),
                                                  run_load.parse_cpus(args.client_cpus))
        if probe is not None:
            times = probe.stop()
            result["app_requests"] = len(times)
            result["app_p50_us"] = percentile(times, 0.50) * 1e6
            result["app_p99_us"] = percentile(times, 0.99) * 1e6
        lg = json.loads(out.strip().splitlines()[-1]) if out.strip() else None
        if lg is None or rc != 0 or lg.get("errors") or "start" not in cpu or "end" not in cpu:
            raise run_load.CaseFailed(f"loadgen exited {rc}: " + "\n".join(errs[-10:]))
        server_cpu = (cpu["end"][0] - cpu["start"][0]) + (cpu["end"][1] - cpu["start"][1])
        result.update(ok=True, loadgen_cmd=shlex.join(cmd), rate=lg["rate"], p50_us=lg["p50_us"],
                      p99_us=lg["p99_us"], server_cpu_s=server_cpu,
                      per_cpu_s=lg["requests"] / server_cpu if server_cpu else None)
    except run_load.CaseFailed as exc:
        result["error"] = str(exc)
    finally:
        result["server_exit"] = run_load.stop_server(proc)
    return result


def report(results, args):
    by_key = {k: [r for r in results if r["key"] == k] for k in SERVERS}
    base = by_key["standalone"]
    us = lambda v: f"{v:,.0f}"  # noqa: E731
    lines = [f"#### {args.name} over {args.connections} keep-alive connection(s), "
             f"{args.rounds} round(s)", "",
             "| server | files rate/s | req per server-CPU-s | rate ÷ standalone | "
             "req/CPU-s ÷ standalone | files p99 µs | app p50 µs | app p99 µs | "
             "app p99 µs, no file load |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, label in SERVERS.items():
        runs = by_key[key]
        lines.append("| " + " | ".join([
            label, fmt_spread(values(runs, "rate"), us), fmt_spread(values(runs, "per_cpu_s"), us),
            fmt_ratio_spread(round_ratios(runs, base, "rate")) if key != "standalone" else "1",
            fmt_ratio_spread(round_ratios(runs, base, "per_cpu_s")) if key != "standalone" else "1",
            fmt_spread(values(runs, "p99_us"), us),
            fmt_spread(values(runs, "app_p50_us"), us) if key != "standalone" else "n/a",
            fmt_spread(values(runs, "app_p99_us"), us) if key != "standalone" else "n/a",
            fmt_spread(values(runs, "idle_p99_us"), us) if key != "standalone" else "n/a",
        ]) + " |")
    failed = [r for r in results if not r["ok"]]
    for r in failed:
        lines.append(f"\n- {r['key']} round {r['round']} FAILED: {r.get('error')}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--size", type=int, default=1024, help="file size in bytes (default 1024)")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--idle-probe", type=float, default=2.0,
                    help="seconds of probing the application with no file load")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--server-cpus", default="0")
    ap.add_argument("--client-cpus", default="1")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--json", help="write every run's result to this file")
    args = ap.parse_args(argv)
    args.name = f"file-{args.size}.bin"
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print(f"aio_serve: seed {seed}", file=sys.stderr)
    rng = random.Random(seed)
    os.sched_setaffinity(0, run_load.parse_cpus(args.client_cpus))   # the probe's CPU
    with tempfile.TemporaryDirectory(prefix="pyiocp-aio-serve-") as workdir:
        root = os.path.join(workdir, "files")
        os.mkdir(root)
        with open(os.path.join(root, args.name), "wb") as f:
            f.write(random.Random(1).randbytes(args.size))
        loadgen = run_load.build_loadgen(workdir, os.environ.get("CC", "cc"))
        results = []
        for rnd in range(1, args.rounds + 1):
            order = list(SERVERS)
            rng.shuffle(order)
            for key in order:
                r = run_one(key, args, loadgen, root, workdir, rnd)
                print(f"--- {key} [round {rnd}]: " + (
                    f"{r['rate']:,.0f}/s, {r['per_cpu_s']:,.0f} per CPU-s"
                    + (f", app p99 {r['app_p99_us']:,.0f} µs" if "app_p99_us" in r else "")
                    if r["ok"] else f"FAILED {r.get('error')}"), file=sys.stderr)
                results.append(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seed": seed, "argv": sys.argv, "results": results}, f, indent=1)
    print(report(results, args))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
