"""What the worst request costs the server before and after the engine: the CPU of
prompt building and of post-processing, and how long it holds the event loop.

    python -m jupyter_copilot.bench.prompt_cost [--tokens 200] [--json out.json]

The worst request (issue #10): a 99k-character cell prefix, a 98k-character rest of
the cursor's line and five unique dense 99k-character context cells, each request
new (cold caches). Printed: milliseconds of prompt building, of the per-token
filters over a generated stream, both without and with the budget cut
(`context/bounds.py`); and the longest stall of an event loop serving a 1 ms
ticker while five such prompts are built in the thread pool, as the service does.
Timings: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from ..byte_lru import ByteLRU
from ..context import build_completion_prompt, decide_request_mode, filter_context, syntax
from ..context.bounds import bound_request
from ..postprocess import run_pipeline
from ..prompts import family
from ..schema import CompleteRequest, ContextCell

BUDGET = 1536
SUFFIX_MAX = 400


def _dense(n: int, seed: int) -> str:
    lines, size, i = [], 0, seed * 100_000
    while size < n:
        line = f"value_{i} = compute({i}, [{i % 7}, {i % 11}], key='k{i}')  # step {i}"
        lines.append(line)
        size += len(line) + 1
        i += 1
    return "\n".join(lines)[:n]


def worst_request(seed: int) -> CompleteRequest:
    return CompleteRequest(
        prefix=_dense(99_000, seed) + "\nresult = compute(",
        suffix=")" + "x" * 98_000 + "\n" + _dense(900, seed + 1),
        context_cells=[ContextCell(source=_dense(99_000, seed * 10 + k)) for k in range(5)],
        path="nb.ipynb",
    )


def _cold() -> None:
    syntax._FACTS = ByteLRU(max_bytes=syntax._FACTS.max_bytes)


def _prompt(req: CompleteRequest):
    # As the service does: the mode decided once (a scan), then the prompt.
    return build_completion_prompt(decide_request_mode(req), family("qwen2.5-coder"),
                                   budget_tokens=BUDGET, suffix_max_chars=SUFFIX_MAX)


def measure(seed: int, tokens: int, bounded: bool) -> dict:
    _cold()
    req = worst_request(seed)
    started = time.perf_counter()
    if bounded:
        req = bound_request(req, budget_tokens=BUDGET, suffix_max_chars=SUFFIX_MAX)
    prompt = _prompt(req)
    built = time.perf_counter()
    ctx = filter_context(req, prompt)
    raw = ""
    for i in range(tokens):
        raw += f" a{i}" if i % 8 else "\n    x"
        run_pipeline(raw, ctx, final=False)
    run_pipeline(raw, ctx, final=True)
    done = time.perf_counter()
    return {
        "bounded": bounded,
        "prompt_ms": round((built - started) * 1000, 1),
        "filters_ms": round((done - built) * 1000, 1),
        "filters_ms_per_token": round((done - built) * 1000 / tokens, 3),
        "prompt_chars": len(prompt.text),
    }


async def loop_stall(requests: int = 5) -> dict:
    """Longest gap between 1 ms ticks while `requests` bounded prompts are built in
    the default thread pool (as the service does)."""
    _cold()
    reqs = [bound_request(worst_request(100 + k), budget_tokens=BUDGET, suffix_max_chars=SUFFIX_MAX)
            for k in range(requests)]
    gaps: list[float] = []
    stop = False

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.ensure_future(ticker())
    started = time.perf_counter()
    await asyncio.gather(*(asyncio.to_thread(_prompt, req) for req in reqs))
    elapsed = time.perf_counter() - started
    stop = True
    await tick
    gaps.sort()
    return {
        "requests": requests,
        "wall_ms": round(elapsed * 1000, 1),
        "max_loop_gap_ms": round(max(gaps) * 1000, 1),
        "p99_loop_gap_ms": round(gaps[int(len(gaps) * 0.99)] * 1000, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    results = {
        "unbounded": measure(1, args.tokens, bounded=False),
        "bounded": measure(2, args.tokens, bounded=True),
        "event_loop": asyncio.run(loop_stall()),
    }
    for name, row in results.items():
        print(f"{name:10} " + "  ".join(f"{key}={value}" for key, value in row.items()))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
