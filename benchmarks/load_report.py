"""Tables and Markdown for the load runner (benchmarks/run_load.py).

Turns the runner's per-case results into the Markdown tables it prints and
writes into BENCHMARKS.md between the markers below.
"""

import os

MD_BEGIN = "<!-- load:begin -->"
MD_END = "<!-- load:end -->"
HTTP_MD_BEGIN = "<!-- http:begin -->"
HTTP_MD_END = "<!-- http:end -->"
MiB = 1024 * 1024

GROUPS = {
    "raw1k": "Raw file protocol, 1 KiB file",
    "raw64k": "Raw file protocol, 64 KiB file",
    "echo1k": "Echo, 1 KiB messages",
    "echo_threads": "pyiocp echo (Python handler): worker threads",
}
HTTP_GROUPS = {
    "http1k": "HTTP/1.1 static file, 1 KiB (wrk, 50 keep-alive connections)",
    "http64k": "HTTP/1.1 static file, 64 KiB (wrk, 50 keep-alive connections)",
    "http100m": "HTTP/1.1 static file, 100 MiB, one connection downloading it again and again (wrk -c1)",
}


def wrk_seconds(x):
    return max(1, int(round(x)))


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
        return [("uvloop", "echo1k/uvloop")]
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


def fmt_mib(kib):
    return "n/a" if kib is None else f"{kib / 1024:,.1f}"


def http_group_table(group, results, by_id):
    rows = [r for r in results if r["group"] == group]
    ref = by_id.get(f"{group}/nginx")
    ref = ref if ref is not None and ref["ok"] else None
    big = group == "http100m"
    if big:
        head = ["server", "threads", "MiB/s", "downloads/s", "p50 ms", "p99 ms", "server CPU s",
                "MiB per server-CPU-s", "peak RSS MiB", "wrk CPU", "MiB/s ÷ nginx", "MiB/CPU-s ÷ nginx"]
    else:
        head = ["server", "threads", "rate/s", "p50 µs", "p99 µs", "MiB/s", "server CPU s",
                "req per server-CPU-s", "peak RSS MiB", "wrk CPU", "rate ÷ nginx", "req/CPU-s ÷ nginx"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in rows:
        thr = str(r["threads"]) if r.get("threads") else (r.get("threads_label") or "1")
        if not r["ok"]:
            cells = [r["label"], thr, "FAILED"] + [""] * (len(head) - 3)
        elif big:
            cells = [r["label"], thr, fmt_num(r["transfer_mib_s"]), fmt_num(r["rate"], 1),
                     fmt_num(r["p50_us"] / 1000, 1), fmt_num(r["p99_us"] / 1000, 1),
                     fmt_num(r["server_cpu_s"], 2), fmt_num(r["mib_per_cpu_s"]), fmt_mib(r.get("peak_rss_kib")),
                     f"{r['client_cpu_pct']:.0f} %",
                     fmt_ratio(r["transfer_mib_s"], ref["transfer_mib_s"]) if ref else "n/a",
                     fmt_ratio(r["mib_per_cpu_s"], ref["mib_per_cpu_s"]) if ref else "n/a"]
        else:
            cells = [r["label"], thr, fmt_num(r["rate"]), fmt_us(r["p50_us"]), fmt_us(r["p99_us"]),
                     fmt_num(r["transfer_mib_s"], 1), fmt_num(r["server_cpu_s"], 2), fmt_num(r["per_cpu_s"]),
                     fmt_mib(r.get("peak_rss_kib")), f"{r['client_cpu_pct']:.0f} %",
                     fmt_ratio(r["rate"], ref["rate"]) if ref else "n/a",
                     fmt_ratio(r["per_cpu_s"], ref["per_cpu_s"]) if ref else "n/a"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def backend_table(results, by_id):
    """io_uring against epoll, case by case, from the same run: rate and work
    done per server CPU-second (the load generator often saturates first)."""
    head = ["case", "io_uring rate", "epoll rate", "rate io_uring ÷ epoll",
            "io_uring per server-CPU-s", "epoll per server-CPU-s", "per-CPU io_uring ÷ epoll"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    found = False
    for group in list(GROUPS) + list(HTTP_GROUPS):
        key = "pyiocp_echo" if group == "echo1k" else "native"
        a, b = by_id.get(f"{group}/{key}_io_uring"), by_id.get(f"{group}/{key}_epoll")
        if not (a and b and a["ok"] and b["ok"]):
            continue
        found = True
        rate, per = ("transfer_mib_s", "mib_per_cpu_s") if group == "http100m" else ("rate", "per_cpu_s")
        unit = " MiB/s" if group == "http100m" else "/s"
        lines.append("| " + " | ".join([
            group, fmt_num(a[rate]) + unit, fmt_num(b[rate]) + unit, fmt_ratio(a[rate], b[rate]),
            fmt_num(a[per]), fmt_num(b[per]), fmt_ratio(a[per], b[per])]) + " |")
    return "\n".join(lines) if found else ""


def report(results, meta, groups=None):
    by_id = {r["id"]: r for r in results}
    out = []
    backends = backend_table(results, by_id)
    if backends:
        out.append("### io_uring ÷ epoll (pyiocp's two Linux backends, same run)\n")
        out.append(backends)
        out.append("")
    for group, title in (groups or {**GROUPS, **HTTP_GROUPS}).items():
        if not any(r["group"] == group for r in results):
            continue
        out.append(f"### {title}\n")
        out.append(http_group_table(group, results, by_id) if group in HTTP_GROUPS
                   else group_table(group, results, by_id))
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
    lines += ["", report(results, meta, GROUPS).rstrip(), "", MD_END]
    return "\n".join(lines)


def http_markdown_section(results, meta):
    ex = next((r for r in results if r.get("wrk_cmd") and r["group"] != "http100m"), None)
    ex_big = next((r for r in results if r.get("wrk_cmd") and r["group"] == "http100m"), None)
    lines = [
        HTTP_MD_BEGIN,
        "## HTTP static-file benchmarks",
        "",
        "Generated by `benchmarks/run_load.py`; do not edit by hand between the markers.",
        "",
        f"- Command: `{meta['command']}`",
        f"- Date: {meta['date']}",
        f"- Kernel: `{meta['kernel']}`; CPU: {meta['cpu_model']} ({meta['cpus']} CPUs); "
        f"Python {meta['python']}; pyiocp {meta['pyiocp'] or 'not run'}; {meta['nginx'] or 'nginx not run'}; "
        f"aiohttp {meta['aiohttp'] or 'not run'}; uvloop {meta['uvloop'] or 'not installed'}; "
        f"{meta['wrk'] or 'wrk'}",
        f"- Every server serves the same temporary folder (1 KiB, 64 KiB and 100 MiB files of random bytes) "
        f"under `taskset -c {meta['server_cpus']}`; wrk runs under `taskset -c {meta['client_cpus']}` with one "
        f"thread and keep-alive connections (wrk's default), each with one request in flight: "
        f"`wrk -t1 -c{meta['http_connections']} -d{wrk_seconds(meta['duration'])}s --latency URL`, and "
        f"`wrk -t1 -c1 -d{wrk_seconds(meta['duration'])}s --latency --timeout=30s URL` for the 100 MiB file. "
        f"Before that, per case: two GETs on one connection whose bodies are compared byte for byte with the "
        f"file (the connection must stay open), then a {wrk_seconds(meta['warmup'])} s wrk warm-up, not counted."
        if meta["warmup"] > 0 else
        f"- Every server serves the same temporary folder under `taskset -c {meta['server_cpus']}`; wrk runs "
        f"under `taskset -c {meta['client_cpus']}`, `wrk -t1 -c{meta['http_connections']} "
        f"-d{wrk_seconds(meta['duration'])}s --latency URL` (no warm-up).",
    ]
    if ex:
        lines.append(f"- For example: server `{ex['server_cmd']}`, client `{ex['wrk_cmd']}` "
                     f"(ports and paths change per run).")
    if ex_big:
        lines.append(f"- 100 MiB: client `{ex_big['wrk_cmd']}`.")
    lines += [
        "- rate = wrk's Requests/sec; p50/p99 from `--latency` (wrk times a request from its write to the "
        "answer's last byte); MiB/s = wrk's Transfer/sec (heads included, 1 MiB = 2^20 bytes); server CPU = "
        "utime+stime of the server's processes and threads (/proc/PID/stat) over the wrk run; peak RSS = VmHWM "
        "from /proc/PID/status summed over the server's processes, read at the end of the case (warm-up "
        "included); wrk CPU = wrk's user+sys time (wait4) / the run's wall time. "
        "Ratios are against the nginx row of the same table, same run.",
        "- Failures are loud: any wrk socket error (connect, read, write, timeout), any answer that is not "
        "2xx/3xx, or a byte count that does not fit the file's size fails the case (FAILED row, exit "
        "status 1).",
        f"- Noise: as for the load benchmarks (above {meta['noise_pct']:g} % of a pinned CPU spent on other work "
        f"or stolen: run again, up to {meta['noise_retries']} times, the quietest run kept).",
        "- Servers: *pyiocp native* is `python -m pyiocp serve` (HTTP/1.1 in C, `--quiet`: no access log). "
        "*nginx* runs from a generated config in the temporary folder: `worker_processes 1; daemon off; "
        "master_process off;`, `access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;`, "
        "pid, error log and temp paths in the temporary folder (nothing of /etc/nginx). *asyncio* is "
        "`benchmarks/servers/asyncio_http.py`: head with `transport.write`, body with `loop.sendfile`; "
        "*uvloop* is the same server on uvloop, which has no `loop.sendfile`, so head and file bytes go out "
        "in one `transport.write`. *aiohttp* is `benchmarks/servers/aiohttp_http.py`, a handler returning "
        "`web.FileResponse` (loop.sendfile; file open and stat run in the default executor). *http.server* "
        "is `benchmarks/servers/stdlib_http.py`: `python -m http.server`'s ThreadingHTTPServer and "
        "SimpleHTTPRequestHandler with `protocol_version = \"HTTP/1.1\"` so that connections are kept open "
        "(stock `python -m http.server` answers HTTP/1.0 and closes each connection, which would make wrk "
        "reconnect for every request), `disable_nagle_algorithm = True` (TCP_NODELAY: it writes head and body "
        "in two sends, and with Nagle on a kept-open connection each body waits ~40 ms for the client's "
        "delayed ACK; `--nagle` keeps that) and a listen backlog of 1024 instead of 5.",
    ]
    if meta.get("http_skipped"):
        lines.append("- Not run: " + "; ".join(meta["http_skipped"]))
    if meta.get("http_unselected"):
        lines.append(f"- Partial run: `--only {meta['only']}` left out " + ", ".join(meta["http_unselected"]))
    lines += ["", report(results, meta, HTTP_GROUPS).rstrip(), "", HTTP_MD_END]
    return "\n".join(lines)


def update_markdown(path, section, begin=MD_BEGIN, end=MD_END):
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
    else:
        text = "# Benchmarks\n\n"
    b, e = text.find(begin), text.find(end)
    if b >= 0 and e > b:
        text = text[:b] + section + text[e + len(end):]
    else:
        if not text.endswith("\n\n"):
            text = text.rstrip("\n") + "\n\n"
        text += section + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
