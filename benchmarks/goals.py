"""The issue's goals, each judged against figures measured in the same run, and the table that shows them."""

from __future__ import annotations

from dataclasses import asdict, dataclass

MB = 1_000_000


@dataclass
class Result:
    """One row: nnseal's figure, the baseline's (if any), the ratio the goal is stated in, pass/fail."""

    metric: str
    nnseal: float
    baseline: float | None  # same-run figure of the peer tool; None for absolute goals
    baseline_name: str
    unit: str  # "s" | "bytes"
    ratio: float | None
    ratio_kind: str  # "speedup" (baseline/nnseal), "fraction" (nnseal/baseline) or "" for absolute goals
    goal: str
    passed: bool | None  # None: reported, no goal
    note: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def speedup(metric: str, nnseal_s: float, baseline_s: float, baseline_name: str, at_least: float,
            note: str = "") -> Result:
    ratio = baseline_s / nnseal_s
    return Result(metric, nnseal_s, baseline_s, baseline_name, "s", ratio, "speedup", f">= {at_least:g}x",
                  ratio >= at_least, note)


def fraction(metric: str, nnseal_bytes: float, baseline_bytes: float, baseline_name: str, at_most: float,
             note: str = "") -> Result:
    ratio = nnseal_bytes / baseline_bytes
    return Result(metric, nnseal_bytes, baseline_bytes, baseline_name, "bytes", ratio, "fraction",
                  f"<= {at_most:.0%}", ratio <= at_most, note)


def ceiling(metric: str, value: float, unit: str, at_most: float, *, baseline: float | None = None,
            baseline_name: str = "", note: str = "") -> Result:
    shown = f"< {at_most / MB:g} MB" if unit == "bytes" else f"< {at_most:g} s"
    return Result(metric, value, baseline, baseline_name, unit, None, "", shown, value < at_most, note)


def reported(metric: str, value: float, unit: str, *, baseline: float | None = None, baseline_name: str = "",
             note: str = "") -> Result:
    """A figure shown for completeness: the issue sets no goal for it."""
    return Result(metric, value, baseline, baseline_name, unit, None, "", "-", None, note)


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "bytes":
        return f"{value / MB:,.0f} MB"
    return f"{value:.2f} s"


def _ratio(result: Result) -> str:
    if result.ratio is None:
        return "-"
    if result.ratio_kind == "speedup":
        return f"{result.ratio:.1f}x faster"
    return f"{result.ratio:.0%} of it"


def format_table(results: list[Result]) -> str:
    header = ("metric", "nnseal", "baseline (same run)", "ratio", "goal", "result")
    rows = [header]
    for r in results:
        baseline = f"{_figure(r.baseline, r.unit)} {r.baseline_name}".strip() if r.baseline is not None else "-"
        verdict = "-" if r.passed is None else ("PASS" if r.passed else "MISS")
        rows.append((r.metric, _figure(r.nnseal, r.unit), baseline, _ratio(r), r.goal, verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown(results: list[Result]) -> str:
    lines = ["| metric | nnseal | baseline (same run) | ratio | goal | result |", "|---|---|---|---|---|---|"]
    for r in results:
        baseline = f"{_figure(r.baseline, r.unit)} {r.baseline_name}".strip() if r.baseline is not None else "-"
        verdict = "-" if r.passed is None else ("pass" if r.passed else "**missed**")
        lines.append(f"| {r.metric} | {_figure(r.nnseal, r.unit)} | {baseline} | {_ratio(r)} | {r.goal} | {verdict} |")
    return "\n".join(lines)
