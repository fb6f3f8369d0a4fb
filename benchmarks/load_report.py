"""Tables and Markdown for the load runner (benchmarks/run_load.py).

Turns the runner's per-case results into the Markdown tables it prints and
writes into BENCHMARKS.md between the markers below.
"""

import os

from round_stats import fmt_ratio_spread, fmt_spread, round_ratios, summary, values

MD_BEGIN = "<!-- load:begin -->"
MD_END = "<!-- load:end -->"
HTTP_MD_BEGIN = "<!-- http:begin -->"
HTTP_MD_END = "<!-- http:end -->"
AB_MD_BEGIN = "<!-- ab:begin -->"
AB_MD_END = "<!-- ab:end -->"
MiB = 1024 * 1024

GROUPS = {
    "raw1k": "Raw file protocol, 1 KiB file",
    "raw64k": "Raw file protocol, 64 KiB file",
    "echo1k": "Echo, 1 KiB messages",
    "echo_threads": "pyiocp echo (Python handler): worker threads",
    "echo_conns": "Echo, 1 KiB ping-pong, by connection count (pyiocp: 1 thread and the engine's default)",
}
HTTP_GROUPS = {
    "http1k": "HTTP/1.1 static file, 1 KiB (50 keep-alive connections)",
    "http64k": "HTTP/1.1 static file, 64 KiB (50 keep-alive connections)",
    "http100m": "HTTP/1.1 static file, 100 MiB, one connection downloading it again and again",
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


def fmt_pct(v):
    return "n/a" if v is None else f"{v:.0f} %"


def fmt_mib(kib):
    return "n/a" if kib is None else f"{kib / 1024:,.1f}"


# Numbers kept per case: a row shows each one's median over the rounds (and its spread).
METRICS = ("rate", "requests", "p50_us", "p99_us", "server_cpu_s", "server_cpu_pct", "per_cpu_s",
           "client_cpu_pct", "transfer_mib_s", "mib_per_cpu_s", "peak_rss_kib", "fairness")


def aggregate(runs):
    """One table row from a case's runs (one per round, in round order): the
    case's identity, its runs, and each metric's median over the good runs."""
    first = runs[0]
    row = {k: first.get(k) for k in ("id", "group", "key", "label", "family", "threads", "threads_label",
                                      "kind", "connections_label", "refs", "variant", "twin_of")}
    row["runs"] = runs
    row["ok"] = any(r["ok"] for r in runs)
    row["spread"] = {}
    for k in METRICS:
        s = summary(values(runs, k))
        row[k] = s[0] if s else None
        if s:
            row["spread"][k] = [s[1], s[2]]
    return row


def cell(row, key, fmt):
    """A metric over the rounds: 'median' or 'median (min–max)'."""
    return fmt_spread(values(row["runs"], key), fmt)


def ratio_cell(row, ref, key):
    """row ÷ ref, taken within each round, then 'median (min–max)'."""
    if ref is None:
        return "n/a"
    return fmt_ratio_spread(round_ratios(row["runs"], ref["runs"], key))


def refs_for(row):
    """Reference rows for the ratio columns: (column title, case id)."""
    if row.get("refs"):
        return [tuple(x) for x in row["refs"]]
    group = row["group"]
    if group in ("raw1k", "raw64k"):
        return [("asyncio", f"{group}/asyncio"), ("uvloop", f"{group}/uvloop")]
    if group == "echo1k":
        return [("asyncio", "echo1k/asyncio"), ("uvloop", "echo1k/uvloop")]
    if group == "echo_threads":
        return [("uvloop", "echo1k/uvloop")]
    return []


def table_lines(head):
    return ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]


def group_table(group, rows, by_id):
    rows = [r for r in rows if r["group"] == group]
    refs = refs_for(rows[0])
    conns = any(r.get("connections_label") for r in rows)
    head = ["server", "threads"] + (["connections"] if conns else []) + [
        "rate/s", "p50 µs", "p99 µs", "server CPU s", "req per server-CPU-s", "client CPU"]
    for title, _ in refs:
        head += [f"rate ÷ {title}", f"req/CPU-s ÷ {title}"]
    lines = table_lines(head)
    for r in rows:
        thr = r.get("threads_label") or (str(r["threads"]) if r.get("threads") else "1 (loop)")
        first = [r["label"], thr] + ([r.get("connections_label") or ""] if conns else [])
        if not r["ok"]:
            cells = first + ["FAILED"] + [""] * (len(head) - len(first) - 1)
        else:
            cells = first + [cell(r, "rate", fmt_num), cell(r, "p50_us", fmt_us), cell(r, "p99_us", fmt_us),
                             cell(r, "server_cpu_s", lambda v: fmt_num(v, 2)), cell(r, "per_cpu_s", fmt_num),
                             cell(r, "client_cpu_pct", fmt_pct)]
            for _, ref_id in refs_for(r):
                ref = by_id.get(ref_id)
                cells += [ratio_cell(r, ref, "rate"), ratio_cell(r, ref, "per_cpu_s")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def http_group_table(group, rows, by_id):
    rows = [r for r in rows if r["group"] == group]
    ref = by_id.get(f"{group}/nginx")
    # The bare io_uring reference (benchmarks/bare/uring_http.c), when this run has it: the floor
    # a server answering from memory in one send per request sets.
    bare = by_id.get(f"{group}/bare_uring")
    # The big-file reference (benchmarks/bare/epoll_sendfile_http.c): epoll + sendfile, nothing else.
    bare_sf = by_id.get(f"{group}/bare_sendfile")
    big = group == "http100m"
    if big:
        head = ["server", "threads", "MiB/s", "downloads/s", "p50 ms", "p99 ms", "server CPU s",
                "MiB per server-CPU-s", "peak RSS MiB", "client CPU", "MiB/s ÷ nginx", "MiB/CPU-s ÷ nginx"]
        if bare_sf:
            head += ["MiB/s ÷ bare sendfile", "MiB/CPU-s ÷ bare sendfile"]
    else:
        head = ["server", "threads", "rate/s", "p50 µs", "p99 µs", "MiB/s", "server CPU s",
                "req per server-CPU-s", "peak RSS MiB", "client CPU", "rate ÷ nginx", "req/CPU-s ÷ nginx"]
        if bare:
            head += ["rate ÷ bare io_uring", "req/CPU-s ÷ bare io_uring"]
        if bare_sf:
            head += ["rate ÷ bare sendfile", "req/CPU-s ÷ bare sendfile"]
    lines = table_lines(head)
    ms = lambda v: fmt_num(v / 1000, 1)          # noqa: E731
    for r in rows:
        thr = str(r["threads"]) if r.get("threads") else (r.get("threads_label") or "1")
        if not r["ok"]:
            cells = [r["label"], thr, "FAILED"] + [""] * (len(head) - 3)
        elif big:
            cells = [r["label"], thr, cell(r, "transfer_mib_s", fmt_num), cell(r, "rate", lambda v: fmt_num(v, 1)),
                     cell(r, "p50_us", ms), cell(r, "p99_us", ms),
                     cell(r, "server_cpu_s", lambda v: fmt_num(v, 2)), cell(r, "mib_per_cpu_s", fmt_num),
                     cell(r, "peak_rss_kib", fmt_mib), cell(r, "client_cpu_pct", fmt_pct),
                     ratio_cell(r, ref, "transfer_mib_s"), ratio_cell(r, ref, "mib_per_cpu_s")]
            if bare_sf:
                cells += [ratio_cell(r, bare_sf, "transfer_mib_s"), ratio_cell(r, bare_sf, "mib_per_cpu_s")]
        else:
            cells = [r["label"], thr, cell(r, "rate", fmt_num), cell(r, "p50_us", fmt_us), cell(r, "p99_us", fmt_us),
                     cell(r, "transfer_mib_s", lambda v: fmt_num(v, 1)),
                     cell(r, "server_cpu_s", lambda v: fmt_num(v, 2)), cell(r, "per_cpu_s", fmt_num),
                     cell(r, "peak_rss_kib", fmt_mib), cell(r, "client_cpu_pct", fmt_pct),
                     ratio_cell(r, ref, "rate"), ratio_cell(r, ref, "per_cpu_s")]
            if bare:
                cells += [ratio_cell(r, bare, "rate"), ratio_cell(r, bare, "per_cpu_s")]
            if bare_sf:
                cells += [ratio_cell(r, bare_sf, "rate"), ratio_cell(r, bare_sf, "per_cpu_s")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rate_keys(group):
    """(rate, per server-CPU-second) metric names and the rate's unit for a group."""
    if group == "http100m":
        return "transfer_mib_s", "mib_per_cpu_s", " MiB/s"
    return "rate", "per_cpu_s", "/s"


# pyiocp.aio.install() against the same aiohttp server without it, on each loop
AIO_PAIRS = (("aiohttp_uvloop_pyiocp", "aiohttp_uvloop", "uvloop"),
             ("aiohttp_pyiocp", "aiohttp", "default loop"))


def aio_table(rows, by_id):
    """aiohttp's FileResponse with pyiocp.aio.install() ÷ without, on the
    same loop, per group: rate and work per server-CPU-second, ratio per
    round (issue 10's targets are stated this way)."""
    head = ["case", "loop", "rate ÷ without", "per server-CPU-s ÷ without"]
    lines = table_lines(head)
    found = False
    for group in HTTP_GROUPS:
        rate, per, _ = rate_keys(group)
        for with_key, without_key, loop in AIO_PAIRS:
            a, b = by_id.get(f"{group}/{with_key}"), by_id.get(f"{group}/{without_key}")
            if not a or not b or not a["ok"] or not b["ok"]:
                continue
            found = True
            lines.append("| " + " | ".join([
                group, loop, fmt_ratio_spread(round_ratios(a["runs"], b["runs"], rate)),
                fmt_ratio_spread(round_ratios(a["runs"], b["runs"], per))]) + " |")
    return "\n".join(lines) if found else ""


def backend_table(rows, by_id):
    """io_uring against epoll, case by case, from the same rounds: rate and work
    done per server CPU-second (the load generator often saturates first)."""
    head = ["case", "io_uring rate", "epoll rate", "rate io_uring ÷ epoll",
            "io_uring per server-CPU-s", "epoll per server-CPU-s", "per-CPU io_uring ÷ epoll"]
    lines = table_lines(head)
    found = False
    for group in list(GROUPS) + list(HTTP_GROUPS):
        key = "pyiocp_echo" if group == "echo1k" else "native"
        a, b = by_id.get(f"{group}/{key}_io_uring"), by_id.get(f"{group}/{key}_epoll")
        if not (a and b and a["ok"] and b["ok"]):
            continue
        found = True
        rate, per, unit = rate_keys(group)
        lines.append("| " + " | ".join([
            group, with_unit(cell(a, rate, fmt_num), unit), with_unit(cell(b, rate, fmt_num), unit),
            ratio_cell(a, b, rate),
            cell(a, per, fmt_num), cell(b, per, fmt_num), ratio_cell(a, b, per)]) + " |")
    return "\n".join(lines) if found else ""


def with_unit(text, unit):
    """'1,234 (1,200–1,300)' -> '1,234/s (1,200–1,300)'."""
    head, sep, rest = text.partition(" (")
    return head + unit + sep + rest if text != "n/a" else text


def ab_pairs(rows, by_id):
    """(current row, baseline row) for every baseline twin whose current case ran, in table order."""
    return [(by_id[r["twin_of"]], r) for r in rows if r.get("twin_of") and r["twin_of"] in by_id]


def spread_wider_than(ratios, tolerance):
    """Whether the rounds disagree by more than the whole ±tolerance band."""
    s = summary(ratios)
    return s is not None and (s[2] - s[1]) * 100.0 > 2 * tolerance


def ab_verdict(ratios, tolerance):
    """The flag of an A/B row from its per-round ratios per server-CPU-second: (text, outside?)."""
    s = summary(ratios)
    if s is None:
        return "n/a (no round with both)", False
    d = (s[0] - 1.0) * 100.0
    change = "±0.0 %" if abs(d) < 0.05 else f"{d:+.1f} %"
    # A spread wider than the band itself means the rounds disagree more than the
    # tolerance: the verdict then needs more rounds or a quieter machine.
    wide = "; spread wider than the band" if spread_wider_than(ratios, tolerance) else ""
    if d < -tolerance:
        return f"**{change}: below −{tolerance:g} %**{wide}", True
    if d > tolerance:
        return f"**{change}: above +{tolerance:g} %**{wide}", True
    return f"{change}: within ±{tolerance:g} %{wide}", False


def ab_table(rows, by_id, tolerance):
    """current ÷ baseline per pyiocp case: (Markdown table, one verdict per row: {"id", "change" (the
    median per-CPU change in %, None without a round where both ran), "outside", "wide"}), or
    (None, []) when the run had no baseline."""
    pairs = ab_pairs(rows, by_id)
    if not pairs:
        return None, []
    head = ["case", "rounds", "current rate", "baseline rate", "rate ÷", "per server-CPU-s ÷",
            "p99 ÷ (lower is better)", f"per server-CPU-s vs ±{tolerance:g} %"]
    lines = table_lines(head)
    verdicts = []
    for cur, base in pairs:
        rate, per, unit = rate_keys(cur["group"])
        per_ratios = round_ratios(cur["runs"], base["runs"], per)
        verdict, outside = ab_verdict(per_ratios, tolerance)
        s = summary(per_ratios)
        verdicts.append({"id": cur["id"], "change": (s[0] - 1.0) * 100.0 if s else None, "outside": outside,
                         "wide": spread_wider_than(per_ratios, tolerance)})
        if not (cur["ok"] and base["ok"]) or len(per_ratios) < len(cur["runs"]):
            verdict = "**FAILED** (see the notes)" if not per_ratios else verdict + " (some rounds failed)"
        lines.append("| " + " | ".join([
            cur["id"], str(len(per_ratios)), with_unit(cell(cur, rate, fmt_num), unit),
            with_unit(cell(base, rate, fmt_num), unit),
            ratio_cell(cur, base, rate), fmt_ratio_spread(per_ratios, 3),
            fmt_ratio_spread(round_ratios(cur["runs"], base["runs"], "p99_us"), 2), verdict]) + " |")
    return "\n".join(lines), verdicts


def ab_summary(verdicts, tolerance):
    """One paragraph under the A/B table: the rows outside the band, the rows without a verdict."""
    n = len(verdicts)
    outside = [v for v in verdicts if v["outside"]]
    missing = [v["id"] for v in verdicts if v["change"] is None]
    wide = [v for v in verdicts if v["wide"]]
    parts = []
    if outside:
        parts.append(f"{len(outside)} of {n} row(s) outside ±{tolerance:g} % per server-CPU-second (median of "
                     f"the rounds): " + ", ".join(f"{v['id']} ({v['change']:+.1f} %)" for v in outside) + ".")
    elif not missing:
        parts.append(f"All {n} row(s) within ±{tolerance:g} % per server-CPU-second (median of the rounds).")
    else:
        parts.append(f"No row with a verdict outside ±{tolerance:g} % per server-CPU-second.")
    if missing:
        parts.append(f"{len(missing)} row(s) without a round in which both sides ran, so no verdict: "
                     + ", ".join(missing) + ".")
    if wide:
        parts.append(f"In {len(wide)} row(s) the rounds themselves spread wider than the band "
                     f"({', '.join(v['id'] for v in wide)}): more rounds or a quieter machine before drawing "
                     f"a conclusion.")
    return " ".join(parts)


def row_notes(row, rounds):
    """The notes under a table for one row: failures and noise, per round when there are several."""
    notes = []
    for r in row["runs"]:
        where = f" (round {r['round']})" if rounds > 1 else ""
        if not r["ok"]:
            first = r["error"].strip().splitlines()[0] if r["error"].strip() else "?"
            notes.append(f"- **{row['label']} FAILED**{where}: {first}")
        elif r.get("note"):
            notes.append(f"- {row['label']}{where}: {r['note']}")
    return notes


def report(rows, meta, groups=None):
    by_id = {r["id"]: r for r in rows}
    rounds = meta.get("rounds", 1)
    out = []
    tol = meta.get("ab_tolerance_pct", 3.0)
    ab, verdicts = ab_table(rows, by_id, tol)
    if ab:
        base, cur = meta["baseline"], meta.get("current") or {}
        out.append(f"### current ÷ baseline (this tree, {cur.get('tree', '?')}, against {base['commit'][:9]} "
                   f"\"{base['subject']}\"; ratio per round, median (min–max))\n")
        out.append(ab)
        out.append("\n" + ab_summary(verdicts, tol))
        out.append("")
    aio = aio_table(rows, by_id)
    if aio:
        out.append("### aiohttp FileResponse: pyiocp.aio.install() ÷ the same loop without it "
                   + ("(ratio per round, median (min–max))\n" if rounds > 1 else "(one run)\n"))
        out.append(aio)
        out.append("")
    backends = backend_table(rows, by_id)
    if backends:
        out.append("### io_uring ÷ epoll (pyiocp's two Linux backends, same "
                   + ("rounds: ratio per round, median (min–max))\n" if rounds > 1 else "run)\n"))
        out.append(backends)
        out.append("")
    for group, title in (groups or {**GROUPS, **HTTP_GROUPS}).items():
        if not any(r["group"] == group for r in rows):
            continue
        if group in ("http1k", "http64k"):
            # the connection count the rows were measured with (--http-connections)
            conns = sorted({run.get("connections") for r in rows if r["group"] == group
                            for run in r.get("runs", ())} - {None})
            if conns and conns != [50]:
                counts = ", ".join(str(c) for c in conns)
                title = title.replace("(50 keep-alive connections)",
                                      f"({counts} keep-alive connection{'s' if conns != [1] else ''})")
        out.append(f"### {title}\n")
        out.append(http_group_table(group, rows, by_id) if group in HTTP_GROUPS
                   else group_table(group, rows, by_id))
        notes = [n for r in rows if r["group"] == group for n in row_notes(r, rounds)]
        if notes:
            out.append("\n" + "\n".join(notes))
        out.append("")
    return "\n".join(out)


def rounds_line(meta):
    n = meta.get("rounds", 1)
    if n == 1:
        return "- One round (`--rounds 1`): every case ran once, in the listed order."
    return (f"- {n} rounds: every case ran once per round, in an order shuffled per round (seed "
            f"{meta['seed']}; `--seed {meta['seed']}` repeats the order). A cell is the median over the rounds, "
            f"with the spread (min–max) in brackets; a ratio is taken between two rows within each round, then "
            f"summarised the same way.")


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
    lines.append(rounds_line(meta))
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
    def client_cmd(r):
        return r.get("loadgen_cmd") or r.get("wrk_cmd")

    ex = next((r for r in results if client_cmd(r) and r["group"] != "http100m"), None)
    ex_big = next((r for r in results if client_cmd(r) and r["group"] == "http100m"), None)
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
    if meta.get("http_client") == "loadgen":
        lines[-1] = (
            f"- Every server serves the same temporary folder (1 KiB, 64 KiB and 100 MiB files of random bytes) "
            f"under `taskset -c {meta['server_cpus']}`; the compiled load generator drives it under `taskset -c "
            f"{meta['client_cpus']}`: `loadgen --mode http`, {meta['http_connections']} keep-alive connections "
            f"(1 for the 100 MiB file), each with one request in flight, every answer's status, length and "
            f"(up to 16 MiB) content checked; rate, p50/p99 (from the request's write to the answer's last "
            f"byte) and the server's CPU are taken over loadgen's measured window, after a "
            f"{meta['warmup']:g} s warm-up. It costs about a third of wrk's CPU per byte, so it saturates later "
            f"(`--http-client wrk` runs the same cases with wrk).")
    if ex:
        lines.append(f"- For example: server `{ex['server_cmd']}`, client `{client_cmd(ex)}` "
                     f"(ports and paths change per run).")
    if ex_big:
        lines.append(f"- 100 MiB: client `{client_cmd(ex_big)}`.")
    lines += [
        "- rate = wrk's Requests/sec; p50/p99 from `--latency` (wrk times a request from its write to the "
        "answer's last byte); MiB/s = wrk's Transfer/sec (heads included, 1 MiB = 2^20 bytes); server CPU = "
        "utime+stime of the server's processes and threads (/proc/PID/stat) over the wrk run; peak RSS = VmHWM "
        "from /proc/PID/status summed over the server's processes, read at the end of the case (warm-up "
        "included); wrk CPU = wrk's user+sys time (wait4) / the run's wall time. "
        "Ratios are against the nginx row of the same table, same run, and, in the 1 KiB and 64 KiB tables, "
        "against the bare io_uring row (÷ bare io_uring) when the run has it.",
        "- Failures are loud: any wrk socket error (connect, read, write, timeout), any answer that is not "
        "2xx/3xx, or a byte count that does not fit the file's size fails the case (FAILED row, exit "
        "status 1).",
        rounds_line(meta),
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
        "delayed ACK; `--nagle` keeps that) and a listen backlog of 1024 instead of 5. *bare C io_uring* is "
        "`benchmarks/bare/uring_http.c`, compiled by the runner with pyiocp's ring layer "
        "(`engine/backends/uring.c`): one thread, one ring, the file read into memory at start and each "
        "answer (head and body) sent with one ring send, no file system call per request; a yardstick for "
        "the native server, not a general server (no timeouts, one file).",
    ]
    if meta.get("http_skipped"):
        lines.append("- Not run: " + "; ".join(meta["http_skipped"]))
    if meta.get("http_unselected"):
        lines.append(f"- Partial run: `--only {meta['only']}` left out " + ", ".join(meta["http_unselected"]))
    lines += ["", report(results, meta, HTTP_GROUPS).rstrip(), "", HTTP_MD_END]
    return "\n".join(lines)


def ab_markdown_section(rows, meta):
    base, cur = meta["baseline"], meta.get("current") or {}
    lines = [
        AB_MD_BEGIN,
        "## A/B: the current tree against a baseline build",
        "",
        "Generated by `benchmarks/run_load.py --baseline REF`; do not edit by hand between the markers.",
        "",
        f"- Command: `{meta['command']}`",
        f"- Date: {meta['date']}",
        f"- Kernel: `{meta['kernel']}`; CPU: {meta['cpu_model']} ({meta['cpus']} CPUs); Python {meta['python']}",
        f"- Current: tree {cur.get('tree', '?')}, pyiocp {cur.get('version', '?')} imported from "
        f"`{cur.get('package', '?')}`.",
        f"- Baseline: {base['commit'][:9]} \"{base['subject']}\" (`--baseline {base['ref']}`), cloned with "
        f"`git clone --shared`, installed with `pip install` into its own venv; its servers and examples come "
        f"from its own checkout"
        + (f"; build reused from the cache `{base['root']}`" if base.get("reused") else "; built for this run")
        + ".",
        f"- Placement: servers under `taskset -c {meta['server_cpus']}`, load generator / wrk under "
        f"`taskset -c {meta['client_cpus']}`; {meta['warmup']:g} s warm-up, {meta['duration']:g} s measured "
        f"per case.",
        rounds_line(meta),
        f"- A row is flagged when its median current ÷ baseline ratio of work per server-CPU-second (server "
        f"CPU = all its threads) is outside ±{meta.get('ab_tolerance_pct', 3.0):g} %; p99 ratios below 1 "
        f"mean the current tree answers faster.",
    ]
    if meta.get("only"):
        lines.append(f"- Partial run: `--only {meta['only']}`")
    lines += ["", report(rows, meta).rstrip(), "", AB_MD_END]
    return "\n".join(lines)


def update_markdown(path, section, begin=MD_BEGIN, end=MD_END):
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
    else:
        text = "# Benchmarks\n\n"
    # A marker counts only on a line of its own: prose may name the markers.
    lines = text.split("\n")
    b = next((i for i, line in enumerate(lines) if line.strip() == begin), -1)
    e = next((i for i, line in enumerate(lines) if line.strip() == end and i > b), -1) if b >= 0 else -1
    if b >= 0 and e > b:
        text = "\n".join(lines[:b] + [section] + lines[e + 1:])
    else:
        if not text.endswith("\n\n"):
            text = text.rstrip("\n") + "\n\n"
        text += section + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
