"""Summaries over benchmark rounds: medians, spreads and per-round ratios.

The load runner runs every case once per round, in a shuffled order, so that
all servers see the same machine conditions.  A metric is summarised as the
median of its rounds and the spread min..max; a ratio between two cases is
taken within each round (both measured minutes apart on the same machine)
and only then summarised, never as a ratio of two medians: on a shared
machine the rounds drift, and a per-round ratio cancels most of the drift.
"""
import statistics


def values(runs, key):
    """The metric's value in every successful run that has it."""
    return [r[key] for r in runs if r.get("ok") and r.get(key) is not None]


def summary(vals):
    """(median, min, max) of a list of numbers, or None when it is empty."""
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def round_ratios(runs_a, runs_b, key, invert=False):
    """a/b (or b/a) for every round in which both cases succeeded."""
    by_round = {r.get("round"): r for r in runs_b if r.get("ok") and r.get(key)}
    out = []
    for ra in runs_a:
        rb = by_round.get(ra.get("round"))
        if rb is None or not ra.get("ok") or ra.get(key) is None:
            continue
        out.append(rb[key] / ra[key] if invert else ra[key] / rb[key])
    return out


def fmt_spread(vals, fmt):
    """'median' for one value, 'median (min–max)' for several, 'n/a' for none."""
    s = summary(vals)
    if s is None:
        return "n/a"
    med, lo, hi = s
    if len(vals) == 1:
        return fmt(med)
    return f"{fmt(med)} ({fmt(lo)}–{fmt(hi)})"


def fmt_ratio_spread(ratios, digits=2):
    """'1.02×' or '1.02× (0.98–1.05)', 'n/a' when no round had both cases."""
    s = summary(ratios)
    if s is None:
        return "n/a"
    med, lo, hi = s
    if len(ratios) == 1 or lo == hi:
        return f"{med:.{digits}f}×"
    return f"{med:.{digits}f}× ({lo:.{digits}f}–{hi:.{digits}f})"
