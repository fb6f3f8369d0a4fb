"""`pyiocp info --live URL`: a running server's counters, for a person.

Reads the Prometheus text that `pyiocp serve --metrics` serves and prints
what an operator asks first: is it up, how busy, how many errors, and (with
--workers) how the load spreads.  The parser reads the text format's sample
lines only (comments, labels with escapes, values), which is all our
endpoint writes.
"""
from __future__ import annotations

import re
import sys
import urllib.error
import urllib.request
from collections import defaultdict
from typing import Dict, List, Optional, TextIO, Tuple

Labels = Tuple[Tuple[str, str], ...]
Samples = Dict[str, List[Tuple[Dict[str, str], float]]]

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse(text: str) -> Samples:
    """{family or sample name: [(labels, value), ...]}; raises ValueError on
    a line that is not a comment or a sample."""
    samples: Samples = defaultdict(list)
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            raise ValueError(f"line {number}: not a sample: {line!r}")
        name, label_text, value = match.groups()
        labels: Dict[str, str] = {}
        at = 0
        label_text = label_text or ""
        while at < len(label_text):
            label = _LABEL.match(label_text, at)
            if not label or label.end() == at:
                raise ValueError(f"line {number}: bad labels: {label_text!r}")
            labels[label.group(1)] = re.sub(r"\\[\\\"n]", lambda m: _UNESCAPE[m.group(0)],
                                            label.group(2))
            at = label.end()
        samples[name].append((labels, float(value)))
    return samples


def url_of(target: str) -> str:
    """HOST:PORT or a URL without a path -> http://HOST:PORT/metrics."""
    if "://" not in target:
        target = "http://" + target
    scheme, _, rest = target.partition("://")
    if "/" not in rest:
        target += "/metrics"
    return target


def fetch(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return answer.read().decode("utf-8")


def _value(samples: Samples, name: str, worker: Optional[str] = None, **match: str) -> float:
    """The sum of `name`'s samples whose labels include `match`: the
    all-workers sample (no worker label) unless `worker` is given."""
    total = 0.0
    for labels, value in samples.get(name, ()):
        if labels.get("worker") != worker:
            continue
        if all(labels.get(k) == v for k, v in match.items()):
            total += value
    return total


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _labelled(samples: Samples, name: str, label: str, worker: Optional[str] = None
              ) -> List[Tuple[str, float]]:
    return [(labels[label], value) for labels, value in samples.get(name, ())
            if labels.get("worker") == worker and label in labels]


def report(samples: Samples, url: str, out: TextIO) -> None:
    infos = [labels for labels, _ in samples.get("pyiocp_info", ())]
    version = infos[0].get("version", "?") if infos else "?"
    backends = sorted({i.get("backend", "?") for i in infos}) or ["?"]
    workers = sorted({labels["worker"] for name in samples for labels, _ in samples[name]
                      if "worker" in labels}, key=int)
    print(f"pyiocp {version} at {url}: backend {', '.join(backends)}"
          + (f", {len(workers)} workers" if workers else ""), file=out)
    for i in infos:
        if i.get("backend_note"):
            print(f"  note: {i['backend_note']}", file=out)
    v = lambda name, **m: _value(samples, name, **m)  # noqa: E731
    print(f"connections  {v('pyiocp_connections_open'):.0f} open, "
          f"{v('pyiocp_connections_accepted_total'):.0f} accepted, "
          f"{v('pyiocp_connections_refused_total'):.0f} refused, "
          f"{v('pyiocp_accept_pauses_total'):.0f} accept pauses", file=out)
    requests = "  ".join(f"{op} {n:.0f}" for op, n in
                         _labelled(samples, "pyiocp_requests_total", "op") if n)
    print(f"requests     {requests or 'none yet'}", file=out)
    file_bytes = v("pyiocp_sent_bytes_total", source="file")
    copied = v("pyiocp_sent_file_copied_bytes_total")
    print(f"bytes        received {_size(v('pyiocp_received_bytes_total'))}, sent "
          f"{_size(v('pyiocp_sent_bytes_total'))} (files {_size(file_bytes)}, "
          f"{_size(file_bytes - copied)} of it zero-copy)", file=out)
    http = _labelled(samples, "pyiocp_http_responses_total", "class")
    if any(n for _, n in http):
        print("http         " + "  ".join(f"{cls} {n:.0f}" for cls, n in http), file=out)
    completions, batches = v("pyiocp_python_completions_total"), v("pyiocp_python_batches_total")
    if completions:
        print(f"python       {completions:.0f} completions in {batches:.0f} batches "
              f"({completions / max(batches, 1):.1f} a batch)", file=out)
    errors = [(labels, n) for labels, n in samples.get("pyiocp_errors_total", ())
              if "worker" not in labels and n]
    if errors:
        print("errors       " + "  ".join(f"{labels['op']} {labels['errno']} {n:.0f}"
                                          for labels, n in errors), file=out)
    else:
        print("errors       none", file=out)
    if workers:
        print("per worker   worker  pid      open  accepted  requests  sent", file=out)
        pids = {i.get("worker"): i.get("pid", "-") for i in infos}
        for w in workers:
            print(f"             {w:>6}  {pids.get(w, '-'):<7} "
                  f"{_value(samples, 'pyiocp_connections_open', w):>5.0f} "
                  f"{_value(samples, 'pyiocp_connections_accepted_total', w):>9.0f} "
                  f"{_value(samples, 'pyiocp_requests_total', w):>9.0f}  "
                  f"{_size(_value(samples, 'pyiocp_sent_bytes_total', w))}", file=out)


def live(target: str, out: TextIO = sys.stdout) -> int:
    url = url_of(target)
    try:
        text = fetch(url)
    except (OSError, urllib.error.URLError) as exc:
        print(f"pyiocp: cannot read {url}: {exc}", file=sys.stderr)
        return 1
    try:
        samples = parse(text)
    except ValueError as exc:
        print(f"pyiocp: {url} is not Prometheus text: {exc}", file=sys.stderr)
        return 1
    if "pyiocp_info" not in samples:
        print(f"pyiocp: {url} answers, but not with pyiocp's counters", file=sys.stderr)
        return 1
    report(samples, url, out)
    return 0
