"""Printing and saving benchmark results: machine facts, tables, side by side."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    """Facts that make a timing meaningful; load is sampled when called."""
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "load_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_json(path: str | os.PathLike, payload: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=1, ensure_ascii=False)
        f.write("\n")


def table(header: list[str], rows: list[list[object]]) -> str:
    """A plain aligned text table (also valid Markdown)."""
    cells = [[_fmt(value) for value in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.0f}"
    return str(value)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b in (None, 0):
        return None
    return round(a / b, 3)


def humaneval_table(summaries: dict[str, dict]) -> str:
    rows = []
    for name, s in summaries.items():
        lat = s["latency"]
        rows.append([name, s["n"], s["pass_at_1"], s["exact_match"], lat["p50_ms"],
                     lat["p95_ms"], f"{lat['n']}/{lat.get('all_n', lat['n'])}",
                     s["mean_prompt_tokens"], s["mean_generated_tokens"]])
    return table(["variant", "n", "pass@1", "exact", "p50 ms", "p95 ms", "timed (quiet)",
                  "prompt tok", "gen tok"], rows)


def replay_table(summaries: dict[str, dict]) -> str:
    rows = []
    for name, s in summaries.items():
        lat = s["latency"]
        rows.append([
            name, s["line"]["n"], s["line"]["exact_match"], s["line"]["edit_similarity"],
            lat["cold"]["p50_ms"], lat["cold"]["p95_ms"], lat["typed"]["p50_ms"],
            lat["typed"]["p95_ms"], lat.get("typed_model", {}).get("p50_ms"),
            s["typed"].get("reused"), lat["prewarm"]["p50_ms"],
            _timed(lat["cold"], lat["typed"]),
            s["errors"],
        ])  # fmt: skip
    return table(["variant", "targets", "exact", "edit sim", "cold p50", "cold p95",
                  "typed p50", "typed p95", "typed model p50", "reused", "prewarm p50",
                  "timed (quiet)", "errors"], rows)


def _timed(*summaries: dict) -> str:
    """"quiet requests / all requests" behind these latency summaries."""
    quiet = sum(s["n"] for s in summaries)
    return f"{quiet}/{sum(s.get('all_n', s['n']) for s in summaries)}"


def replay_ratios(summaries: dict[str, dict]) -> str:
    """Each product variant against the anchor variant with the same context."""
    rows = []
    for name, ours in summaries.items():
        if not name.startswith("product"):
            continue
        anchor = summaries.get(name.replace("product", "infill", 1))
        if anchor is None:
            continue
        rows.append([
            f"{name} / {name.replace('product', 'infill', 1)}",
            ratio(ours["line"]["exact_match"], anchor["line"]["exact_match"]),
            ratio(ours["line"]["edit_similarity"], anchor["line"]["edit_similarity"]),
            ratio(ours["latency"]["cold"]["p50_ms"], anchor["latency"]["cold"]["p50_ms"]),
            ratio(ours["latency"]["cold"]["p95_ms"], anchor["latency"]["cold"]["p95_ms"]),
            ratio(ours["latency"]["typed"]["p50_ms"], anchor["latency"]["typed"]["p50_ms"]),
            ratio(ours["latency"]["typed"]["p95_ms"], anchor["latency"]["typed"]["p95_ms"]),
        ])  # fmt: skip
    if not rows:
        return ""
    return table(["ratio", "exact", "edit sim", "cold p50", "cold p95", "typed p50",
                  "typed p95"], rows)


def executed_table(summary: dict) -> str:
    """Exact match (n) without and with the kernel's names, by kind of target."""
    groups = ("all", "runtime_only", "line_start", "mid_line", "key_targets")
    rows = []
    for variant in ("plain", "kernel"):
        if variant in summary:
            rows.append([variant] + [f"{_fmt(summary[variant][g]['exact_match'])} "
                                     f"(n={summary[variant][g]['n']})" for g in groups]
                        + [_fmt(summary[variant]["key_targets"][m])
                           for m in ("first_name", "real_name")])
    return table(["variant", *groups, "key: right name", "key: a real name"], rows)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
