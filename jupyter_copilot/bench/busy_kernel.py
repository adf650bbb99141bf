"""A completion while the notebook's kernel is busy (issue 14, item 4: thread settings
under a competing kernel).

A student's kernel that runs a cell (a Python loop, a model being fitted) takes a
core; the completion model wants both. Per target of the replay (the last of each
notebook: the deepest context), with the product's engine (its child process):

1. ``warm``: a completion at the target (its context is evaluated; not scored);
2. ``idle``: one more character typed, nobody else busy;
3. ``busy``: one more character again, while `busy_cores` spinning processes (a
   kernel running a pure-Python loop, one core each) have been running for a while.
   Their loop rate during the request, against their rate alone, is how much the
   model slowed the student's own code.

Run once per engine setting (`fit_threads` off: always every core; on: fewer while
others keep cores busy, engines/cpu_share.py), same targets, same engine code.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import time

from ..engines.base import CancelToken, GenerationStats

PHASES = ("warm", "idle", "busy")
# The spinners run this long before the request: the engine's sampler must have
# seen them (it reads every 0.25 s), as it would a cell that has been running.
SETTLE_S = 0.8


def _spin(counter) -> None:
    """A kernel busy with a Python loop: counts its turns in thousands."""
    while True:
        for _ in range(1000):
            pass
        with counter.get_lock():
            counter.value += 1


class Spinners:
    """`cores` busy processes; `rate()` is their loop rate (thousands of turns a second)."""

    def __init__(self, cores: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.counter = context.Value("q", 0)
        self.procs = [context.Process(target=_spin, args=(self.counter,), daemon=True)
                      for _ in range(cores)]  # fmt: skip

    def __enter__(self) -> Spinners:
        for proc in self.procs:
            proc.start()
        return self

    def __exit__(self, *exc) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.join(timeout=5)

    def count(self) -> tuple[float, int]:
        return time.perf_counter(), self.counter.value


def rate(before: tuple[float, int], after: tuple[float, int]) -> float:
    seconds = after[0] - before[0]
    return (after[1] - before[1]) / seconds if seconds > 0 else 0.0


async def _timed(engine, prompt, typed: str) -> dict:
    """One completion: latency, first token, tokens, ms per generated token, threads."""
    from .cache_plan import product_params

    stats = GenerationStats()
    started = time.perf_counter()
    first = None
    async for piece in engine.complete(prompt.text, product_params(prompt), CancelToken(), stats):
        if first is None and piece:
            first = time.perf_counter()
    end = time.perf_counter()
    first_ms = ((first or end) - started) * 1000
    after_first = stats.generated_tokens - 1
    return {
        "typed": typed,
        "ms": round((end - started) * 1000, 1),
        "first_token_ms": round(first_ms, 1),
        "generated_tokens": stats.generated_tokens,
        "prompt_tokens": stats.prompt_tokens,
        "cached_tokens": stats.cached_tokens,
        # Generation alone: the time after the first token, per later token.
        "ms_per_token": round(((end - started) * 1000 - first_ms) / after_first, 1)
        if after_first > 0 else None,
        "threads": stats.threads,
    }


async def measure_target(engine, fam, settings: dict, notebook: str, cells, target,
                         busy_cores: int, alone_rate: float) -> list[dict]:  # fmt: skip
    from .cache_plan import product_prompt

    expected = target.expected
    typed = [expected[:k] for k in (0, 1, 2)] if len(expected) >= 2 else ["", " ", "  "]
    rows = []
    for phase, extra in zip(PHASES, typed):
        prompt = product_prompt(target, cells, settings, fam, target.prefix + extra)
        row = {"notebook": notebook, "cell_index": target.cell_index, "phase": phase}
        if phase == "busy":
            with Spinners(busy_cores) as spinners:
                await asyncio.sleep(SETTLE_S)
                before = spinners.count()
                row.update(await _timed(engine, prompt, extra))
                during = rate(before, spinners.count())
            row["kernel_rate_share"] = round(during / alone_rate, 3) if alone_rate else None
        else:
            row.update(await _timed(engine, prompt, extra))
        rows.append(row)
    return rows


def alone_rate(busy_cores: int, seconds: float = 1.5) -> float:
    """The spinners' loop rate with nothing else running (the reference)."""
    with Spinners(busy_cores) as spinners:
        time.sleep(SETTLE_S)
        before = spinners.count()
        time.sleep(seconds)
        return rate(before, spinners.count())


def _p50(values, digits: int = 1) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), digits) if values else None


def summarize(rows: list[dict]) -> dict:
    out = {}
    for phase in PHASES[1:]:
        picked = [row for row in rows if row["phase"] == phase]
        if not picked:
            continue
        threads = [row["threads"] for row in picked if row["threads"] is not None]
        out[phase] = {
            "n": len(picked),
            "ms_p50": _p50(row["ms"] for row in picked),
            "ms_mean": round(statistics.mean(row["ms"] for row in picked), 1),
            "first_token_ms_p50": _p50(row["first_token_ms"] for row in picked),
            "ms_per_token_p50": _p50(row["ms_per_token"] for row in picked),
            "generated_tokens_mean": round(statistics.mean(row["generated_tokens"] for row in picked), 1),
            "threads": dict(sorted((t, threads.count(t)) for t in set(threads))),
            "kernel_rate_share_p50": _p50((row.get("kernel_rate_share") for row in picked), 3),
        }
    return out


def table(by_setting: dict[str, dict]) -> str:
    lines = [("| setting | phase | n | p50 ms | mean ms | first token p50 | ms/token p50 | "
              "tokens (mean) | threads used | kernel's speed during it |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for setting, summary in by_setting.items():
        for phase, s in summary.items():
            share = s["kernel_rate_share_p50"]
            lines.append(
                f"| {setting} | {phase} | {s['n']} | {s['ms_p50']} | {s['ms_mean']} | "
                f"{s['first_token_ms_p50']} | {s['ms_per_token_p50']} | {s['generated_tokens_mean']} | "
                f"{s['threads']} | {'—' if share is None else f'{share:.2f}x'} |"
            )
    return "\n".join(lines)
