#!/usr/bin/env python3
"""Load benchmarks: pyiocp against asyncio and uvloop, over loopback.

    python benchmarks/run_load.py [--duration 5] [--warmup 2] [--only TAGS] [--json PATH]

For every case the server runs pinned to one CPU (taskset -c 0) and the C
load generator (benchmarks/loadgen.c, compiled into a temporary directory)
to another (taskset -c 1); this script pins itself to the load generator's
CPU too, so that it never takes time from the server.  A case:

  1. starts the server and waits until its port accepts connections;
  2. runs the load generator: warm-up (not counted), then the measured window;
  3. samples the server's CPU time (utime + stime of the process and all its
     threads, /proc/PID/stat) when the load generator says the window starts
     and again when it ends;
  4. stops the server with SIGTERM (and reports if it does not exit).

Cases (tags for --only: a case id such as raw1k/asyncio, a group such as
raw64k, a server key such as native, or a family: pyiocp, asyncio, uvloop):

  raw1k, raw64k   raw file protocol, one file of 1 KiB / 64 KiB:
                  native (python -m pyiocp serve --protocol raw, in C),
                  file_server (examples/file_server.py, Python handlers),
                  asyncio (loop.sendfile), asyncio_write (transport.write),
                  uvloop (transport.write: uvloop has no loop.sendfile)
  echo1k          echo of 1 KiB messages: pyiocp_echo (Python handler),
                  asyncio, uvloop
  echo_threads    pyiocp_echo with 1, 2 and 4 worker threads

Results: a Markdown table per group (printed, and written between the
markers <!-- load:begin --> and <!-- load:end --> of BENCHMARKS.md unless
--no-md), and with --json PATH every number as JSON.  Exit status 1 if any
case failed (server did not start or died, wrong byte counts, connection
errors), 2 on bad usage.
"""
import argparse
import datetime
import importlib.util
import json
import os
import platform
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SERVERS = os.path.join(HERE, "servers")
MD_BEGIN = "<!-- load:begin -->"
MD_END = "<!-- load:end -->"
FILES = {"1k.bin": 1024, "64k.bin": 65536}

GROUPS = {
    "raw1k": "Raw file protocol, 1 KiB file",
    "raw64k": "Raw file protocol, 64 KiB file",
    "echo1k": "Echo, 1 KiB messages",
    "echo_threads": "pyiocp echo (Python handler): worker threads",
}


class CaseFailed(Exception):
    pass


# ------------------------------------------------------------------ cases --

class Case:
    def __init__(self, group, key, label, family, server, load, threads=None, refs=()):
        self.group = group
        self.key = key
        self.id = f"{group}/{key}"
        self.label = label
        self.family = family          # pyiocp | asyncio | uvloop
        self.server = server          # function(port) -> argv (without taskset)
        self.load = load              # loadgen arguments (without host/port/timing)
        self.threads = threads
        self.refs = refs

    def tags(self):
        return {self.id, self.group, self.key, self.family}


def build_cases(args, root):
    py = sys.executable
    host = args.host
    raw_asyncio = os.path.join(SERVERS, "asyncio_raw.py")
    echo_asyncio = os.path.join(SERVERS, "asyncio_echo.py")
    echo_pyiocp = os.path.join(SERVERS, "pyiocp_echo.py")
    file_server = os.path.join(REPO, "examples", "file_server.py")
    t = str(args.threads)
    cases = []
    for group, name in (("raw1k", "1k.bin"), ("raw64k", "64k.bin")):
        load = ["--mode", "raw", "--name", name, "--expect-file", os.path.join(root, name)]
        cases += [
            Case(group, "native", "pyiocp native (C raw server)", "pyiocp",
                 lambda p: [py, "-m", "pyiocp", "serve", root, "--protocol", "raw", "--host", host,
                            "--port", str(p), "--threads", t, "--quiet"], load, args.threads),
            Case(group, "file_server", "pyiocp examples/file_server.py (Python handlers)", "pyiocp",
                 lambda p: [py, file_server, root, "--port", str(p), "--threads", t], load, args.threads),
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
    cases += [
        Case("echo1k", "pyiocp_echo", "pyiocp Python handler", "pyiocp",
             lambda p: [py, echo_pyiocp, "--host", host, "--port", str(p), "--threads", t, "--quiet"],
             echo, args.threads),
        Case("echo1k", "asyncio", "asyncio Protocol", "asyncio",
             lambda p: [py, echo_asyncio, "--host", host, "--port", str(p), "--quiet"], echo),
        Case("echo1k", "uvloop", "uvloop Protocol", "uvloop",
             lambda p: [py, echo_asyncio, "--host", host, "--port", str(p), "--uvloop", "--quiet"], echo),
    ]
    for n in args.thread_counts:
        cases.append(Case("echo_threads", f"t{n}", f"pyiocp Python handler, {n} thread(s)", "pyiocp",
                          lambda p, n=n: [py, echo_pyiocp, "--host", host, "--port", str(p),
                                          "--threads", str(n), "--quiet"], echo, n))
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


def make_files(root):
    rng = random.Random(20240501)
    for name, size in FILES.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(rng.randbytes(size))


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


def run_case(case, args, loadgen, env, workdir):
    port = free_port(args.host)
    argv = case.server(port)
    server_cmd = ["taskset", "-c", args.server_cpus] + argv
    logpath = os.path.join(workdir, case.id.replace("/", "-") + ".log")
    result = {"id": case.id, "group": case.group, "key": case.key, "label": case.label,
              "family": case.family, "threads": case.threads, "server_cmd": shlex.join(server_cmd)}
    with open(logpath, "wb") as logf:
        proc = subprocess.Popen(server_cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                                start_new_session=True)
    try:
        wait_for_port(args.host, port, proc, logpath, args.start_timeout)
        lg_cmd = ["taskset", "-c", args.client_cpus, loadgen, "--host", args.host, "--port", str(port),
                  "--connections", str(args.connections), "--duration", str(args.duration),
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


def noise_score(r):
    return sum(r.get(k) or 0.0 for k in ("other_on_server_cpus_pct", "other_on_client_cpus_pct", "steal_pct"))


# ---------------------------------------------------------------- tables --

def fmt_num(v, digits=0):
    if v is None:
        return "n/a"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def fmt_us(v):
    if v is None:
        return "n/a"
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}×"


def refs_for(group):
    """Reference rows for the ratio columns: (column title, case id)."""
    if group in ("raw1k", "raw64k"):
        return [("asyncio", f"{group}/asyncio"), ("uvloop", f"{group}/uvloop")]
    if group == "echo1k":
        return [("asyncio", "echo1k/asyncio"), ("uvloop", "echo1k/uvloop")]
    if group == "echo_threads":
        return [("1 thread", "echo_threads/t1"), ("asyncio", "echo1k/asyncio"), ("uvloop", "echo1k/uvloop")]
    return []


def group_table(group, results, by_id):
    rows = [r for r in results if r["group"] == group]
    refs = refs_for(group)
    head = ["server", "threads", "rate/s", "p50 µs", "p99 µs", "server CPU s", "req per server-CPU-s",
            "client CPU"]
    for title, _ in refs:
        head += [f"rate ÷ {title}", f"req/CPU-s ÷ {title}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in rows:
        thr = str(r["threads"]) if r.get("threads") else "1 (loop)"
        if not r["ok"]:
            cells = [r["label"], thr, "FAILED"] + [""] * (len(head) - 3)
        else:
            cells = [r["label"], thr, fmt_num(r["rate"]), fmt_us(r["p50_us"]), fmt_us(r["p99_us"]),
                     fmt_num(r["server_cpu_s"], 2), fmt_num(r["per_cpu_s"]),
                     f"{r['client_cpu_pct']:.0f} %" if r.get("client_cpu_pct") is not None else "n/a"]
            for _, ref_id in refs:
                ref = by_id.get(ref_id)
                ok = ref is not None and ref["ok"]
                cells += [fmt_ratio(r["rate"], ref["rate"]) if ok else "n/a",
                          fmt_ratio(r["per_cpu_s"], ref["per_cpu_s"]) if ok else "n/a"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(results, meta):
    by_id = {r["id"]: r for r in results}
    out = []
    for group, title in GROUPS.items():
        if not any(r["group"] == group for r in results):
            continue
        out.append(f"### {title}\n")
        out.append(group_table(group, results, by_id))
        notes = []
        for r in results:
            if r["group"] != group:
                continue
            if not r["ok"]:
                first = r["error"].strip().splitlines()[0] if r["error"].strip() else "?"
                notes.append(f"- **{r['label']} FAILED**: {first}")
            elif r.get("note"):
                notes.append(f"- {r['label']}: {r['note']}")
        if notes:
            out.append("\n" + "\n".join(notes))
        out.append("")
    return "\n".join(out)


def markdown_section(results, meta):
    lines = [
        MD_BEGIN,
        "## Load benchmarks",
        "",
        "Generated by `benchmarks/run_load.py`; do not edit by hand between the markers.",
        "",
        f"- Command: `{meta['command']}`",
        f"- Date: {meta['date']}",
        f"- Kernel: `{meta['kernel']}`; CPU: {meta['cpu_model']} ({meta['cpus']} CPUs); "
        f"Python {meta['python']}; uvloop {meta['uvloop'] or 'not installed'}; pyiocp {meta['pyiocp'] or 'not run'}",
        f"- Server pinned with `taskset -c {meta['server_cpus']}`, load generator (benchmarks/loadgen.c, one "
        f"thread, epoll) with `taskset -c {meta['client_cpus']}`; {meta['connections']} connections over "
        f"loopback, each with one request in flight; {meta['warmup']} s warm-up, then {meta['duration']} s "
        f"measured. Every answer's size is checked; content of every "
        f"{'answer' if meta['verify_every'] == 1 else str(meta['verify_every']) + 'th answer'} is compared.",
        "- rate = answers completed in the window / window length; p50/p99 = latency from sending a request "
        "to its answer's last byte; server CPU = utime+stime of the server process and all its threads "
        "(/proc/PID/stat) over the window; client CPU = the load generator's share of its own CPU. "
        "Ratios are taken between rows of this same run.",
    ]
    lines.append(f"- Noise: time the two pinned CPUs spent on other work or lost to steal is read from "
                 f"/proc/stat; a case above {meta['noise_pct']:g} % is run again (up to {meta['noise_retries']} "
                 f"times) and the quietest run kept; a case still noisy says so under its table. A case whose "
                 f"connections were served very unevenly (Jain index < 0.9) says so too.")
    if meta.get("skipped"):
        lines.append("- Not run: " + "; ".join(meta["skipped"]))
    if meta.get("only"):
        lines.append(f"- Partial run: `--only {meta['only']}`")
    lines += ["", report(results, meta).rstrip(), "", MD_END]
    return "\n".join(lines)


def update_markdown(path, section):
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
    else:
        text = "# Benchmarks\n\n"
    b, e = text.find(MD_BEGIN), text.find(MD_END)
    if b >= 0 and e > b:
        text = text[:b] + section + text[e + len(MD_END):]
    else:
        if not text.endswith("\n\n"):
            text = text.rstrip("\n") + "\n\n"
        text += section + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


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
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"), help="C compiler for loadgen.c")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (build, files, logs)")
    args = ap.parse_args(argv)
    try:
        args.thread_counts = [int(x) for x in args.thread_counts.split(",") if x.strip()]
    except ValueError:
        ap.error("--thread-counts must be integers separated by commas")
    if args.duration <= 0 or args.warmup < 0 or args.connections < 1 or args.threads < 1:
        ap.error("bad --duration, --warmup, --connections or --threads")
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
    root = os.path.join(workdir, "files")
    os.mkdir(root)
    cases = build_cases(args, root)
    if args.list:
        for c in cases:
            log(f"{c.id:28} {c.label}   [tags: {', '.join(sorted(c.tags()))}]")
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    only = [t.strip() for t in args.only.split(",") if t.strip()]
    if only:
        known = set().union(*(c.tags() for c in cases))
        unknown = [t for t in only if t not in known]
        if unknown:
            sys.exit(f"run_load: --only: unknown tag(s) {', '.join(unknown)}; see --list")
        cases = [c for c in cases if c.tags() & set(only)]

    skipped = []
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
            skipped.append(msg)
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
        if any(c.key == "file_server" for c in cases) and not os.path.exists(
                os.path.join(REPO, "examples", "file_server.py")):
            sys.exit("run_load: examples/file_server.py does not exist (needed by the file_server cases; "
                     "leave them out with --only)")
    if not cases:
        sys.exit("run_load: no case selected")

    # Keep this script off the server's CPU.
    try:
        os.sched_setaffinity(0, parse_cpus(args.client_cpus))
    except (OSError, AttributeError):
        pass

    make_files(root)
    loadgen = build_loadgen(workdir, args.cc)
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
        "server_cpus": args.server_cpus,
        "client_cpus": args.client_cpus,
        "connections": args.connections,
        "duration": args.duration,
        "warmup": args.warmup,
        "verify_every": args.verify_every,
        "noise_pct": args.noise_pct,
        "noise_retries": args.noise_retries,
        "only": args.only,
        "skipped": skipped,
    }
    log(f"run_load: {len(cases)} case(s), {args.warmup:g} s warm-up + {args.duration:g} s each; "
        f"server on CPU {args.server_cpus}, load generator on CPU {args.client_cpus}; work dir {workdir}")

    results = []
    try:
        for case in cases:
            log(f"--- {case.id}: {case.label}")
            r = run_case(case, args, loadgen, env, workdir)
            tries = [r]
            while tries[-1]["ok"] and tries[-1].get("noise") and len(tries) <= args.noise_retries:
                log(f"    {tries[-1]['rate']:,.0f}/s, but {tries[-1]['noise']}: running it again")
                tries.append(run_case(case, args, loadgen, env, workdir))
            if tries[-1]["ok"]:
                r = min(tries, key=noise_score)
            else:
                r = tries[-1]
            r["attempts"] = len(tries)
            r["attempt_rates"] = [t.get("rate") for t in tries]
            if len(tries) > 1 and r["ok"]:
                log(f"    keeping attempt {tries.index(r) + 1} of {len(tries)} (the quietest):")
            results.append(r)
            if r["ok"]:
                log(f"    {r['rate']:,.0f}/s  p50 {r['p50_us']:,.0f} µs  p99 {r['p99_us']:,.0f} µs  "
                    f"server CPU {r['server_cpu_s']:.2f} s ({r['server_cpu_pct']:.0f} %, "
                    f"user {r['server_user_s']:.2f} s, sys {r['server_sys_s']:.2f} s, "
                    f"{r['server_threads']} threads)  client CPU {r['client_cpu_pct']:.0f} %  "
                    f"fairness {r['fairness']:.2f}  "
                    f"[server {r['server_exit']}]" + (f"\n    NOTE: {r['noise']}" if r.get("noise") else ""))
            else:
                log(f"    FAILED: {r['error']}\n    [server {r['server_exit']}]")
    except KeyboardInterrupt:
        log("run_load: interrupted; reporting the cases that finished")
    finally:
        if args.keep:
            log(f"run_load: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    log("")
    log(report(results, meta))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)
        log(f"run_load: wrote {args.json}")
    if not args.no_md:
        update_markdown(args.md, markdown_section(results, meta))
        log(f"run_load: updated {args.md}")
    failed = [r["id"] for r in results if not r["ok"]]
    if failed:
        log(f"run_load: FAILED case(s): {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
