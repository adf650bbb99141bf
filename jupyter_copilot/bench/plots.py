"""Figures for docs/benchmarks.md from the JSON files the benchmarks write.

matplotlib is needed here only (``pip install matplotlib``); it is not a runtime
dependency of jupyter-copilot.
"""

from __future__ import annotations

import json
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def replay_latency_cdf(json_path: str | Path, out_png: str | Path) -> Path:
    """Latency distribution per variant: cold (first request in a cell) and typed."""
    plt = _pyplot()
    data = json.loads(Path(json_path).read_text())
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, phases, title in (
        (axes[0], ("first",), "first request in a cell (cold or pre-warmed)"),
        (axes[1], ("typed",), "after one more typed character (warm)"),
    ):
        for variant, rows in data["results"].items():
            values = sorted(r["latency_ms"] / 1000 for r in rows if r["phase"] in phases)
            if values:
                fractions = [(i + 1) / len(values) for i in range(len(values))]
                ax.step(values, fractions, where="post", label=variant)
        ax.set_xscale("log")
        ax.set_xlabel("end-to-end latency (s, log scale)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("fraction of requests")
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle(_caption(data), fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return Path(out_png)


def replay_quality_bars(json_path: str | Path, out_png: str | Path) -> Path:
    """Exact match and edit similarity per variant."""
    plt = _pyplot()
    data = json.loads(Path(json_path).read_text())
    names = list(data["summary"])
    exact = [data["summary"][n]["line"]["exact_match"] or 0 for n in names]
    similarity = [data["summary"][n]["line"]["edit_similarity"] or 0 for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    positions = range(len(names))
    ax.bar([p - 0.2 for p in positions], exact, width=0.4, label="exact match")
    ax.bar([p + 0.2 for p in positions], similarity, width=0.4, label="edit similarity")
    ax.set_xticks(list(positions), names, fontsize=8)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(_caption(data), fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return Path(out_png)


def context_points(json_paths: list[str | Path]) -> list[dict]:
    """Quality of our server per context budget, from several replays of the same
    targets: `product-cell` is budget 0, `product` the run's `context_budget_tokens`
    (its `--set`, else the default). The first run to measure a budget wins."""
    from .completers import app_defaults

    default_budget = app_defaults().get("context_budget_tokens")
    points: dict[int, dict] = {}
    for path in json_paths:
        data = json.loads(Path(path).read_text())
        overrides = data["config"].get("overrides") or {}
        budgets = {"product": int(overrides.get("context_budget_tokens", default_budget)),
                   "product-cell": 0}
        for variant, budget in budgets.items():
            summary = data["summary"].get(variant)
            if summary is None or budget in points:
                continue
            points[budget] = {
                "budget": budget,
                "exact_match": summary["line"]["exact_match"] or 0,
                "edit_similarity": summary["line"]["edit_similarity"] or 0,
                "prompt_tokens": summary["prompt_tokens"]["cold"],
                "first_p50_ms": summary["latency"]["cold"]["p50_ms"],
                "prewarm_p50_ms": summary["latency"].get("prewarm", {}).get("p50_ms"),
                "targets": summary["line"]["n"],
            }
    return [points[b] for b in sorted(points)]


def replay_quality_by_context(json_paths: list[str | Path], out_png: str | Path) -> Path:
    """Exact match, edit similarity and first-request latency against the budget of
    earlier-cell context (several `notebooks --json` runs with --set
    context_budget_tokens=N)."""
    plt = _pyplot()
    points = context_points(json_paths)
    budgets = [p["budget"] for p in points]
    fig, (quality, latency) = plt.subplots(1, 2, figsize=(10, 3.8))
    quality.plot(budgets, [p["exact_match"] for p in points], "o-", label="exact match")
    quality.plot(budgets, [p["edit_similarity"] for p in points], "s-", label="edit similarity")
    quality.set_ylim(0, 1)
    quality.set_xlabel("context budget (tokens of earlier cells)")
    quality.legend(fontsize=8)
    quality.grid(True, alpha=0.3)
    latency.plot(budgets, [(p["first_p50_ms"] or 0) / 1000 for p in points], "o-",
                 label="first request in a cell (the student waits)")
    latency.plot(budgets, [(p["prewarm_p50_ms"] or 0) / 1000 for p in points], "s--",
                 label="pre-warm when entering the cell (while they read)")
    latency.set_ylim(bottom=0)
    latency.set_xlabel("context budget (tokens of earlier cells)")
    latency.set_ylabel("p50 (s)")
    latency.legend(fontsize=8)
    latency.grid(True, alpha=0.3)
    data = json.loads(Path(json_paths[0]).read_text())
    fig.suptitle(f"our server, {_caption(data)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return Path(out_png)


def _caption(data: dict) -> str:
    machine = data.get("machine", {})
    return (f"{data['config'].get('targets', '')} targets, {machine.get('nproc')} cores "
            f"({machine.get('cpu')}), {data.get('date', '')[:10]}")
