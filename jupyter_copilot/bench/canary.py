"""`jupyter copilot bench canary`: does one student's abuse slow a classmate down?

On the campus path (real JupyterHub, the service as a hub-managed service behind the
proxy, llama-server — the deployment of `bench load`), a *canary* student asks for
`status` and a small completion in turn, twice a second, first alone, then while an
*attacker* sends the worst requests their limits allow: as many completions as their
rate and in-flight limits accept, each with a body just under `max_request_bytes`
(unique code-like cells that fill the whole prompt budget once cut, block mode,
the largest `max_tokens`), never the same twice. The
canary's p50/p95 in both phases are printed (and written as JSON with ``--output``).
The target (issue #10): the canary's p95 stays under 200 ms. This is a benchmark that
prints numbers, to run on an idle machine — not a timed test.

    jupyter copilot bench canary --duration 30
"""

from __future__ import annotations

import asyncio
import json
import random
import string
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import httpx

from .hub_load import _percentile, deployment, machine
from .llama_server import start_llama_server

SMALL = {"prefix": "def add(a, b):\n    return ", "suffix": "", "language": "python"}


WORDS = ("total", "values", "index", "result", "count", "data", "frame", "model", "score",
         "mean", "grade", "student", "items", "row", "col", "weight", "alpha", "beta")


def worst_body(rng: random.Random, limit: int = 500_000) -> dict:
    """The costliest completion the limits let through, never the same twice: a body
    just under `max_request_bytes` (five ~70k-character cells, a ~95k-character cell
    at the cursor) of code-like text no cache has seen, which the budget cuts but
    which still fills the whole prompt budget once cut (random bytes or digits would
    not: they tokenize so densely that the engine refuses the prompt as longer than its
    context, 413, cheaply), ending on
    an empty function body so that the server picks block mode, with the largest
    `max_tokens` (capped per mode by the server)."""

    def code(n: int) -> str:
        lines, size = [], 0
        while size < n:
            line = f"{rng.choice(WORDS)}_{rng.choice(WORDS)} = " + " + ".join(
                f"{rng.choice(WORDS)}.{rng.choice(WORDS)}" for _ in range(rng.randint(2, 6))
            )
            lines.append(line)
            size += len(line) + 1
        return "\n".join(lines)

    cells = [{"cell_type": "code", "source": code(70_000)} for _ in range(5)]
    body = {"prefix": code(95_000) + "\n\ndef step(x):\n    ", "suffix": "", "language": "python",
            "context_cells": cells, "editor_id": f"attack-{rng.random()}",
            "max_tokens": 1024}  # fmt: skip
    while len(json.dumps(body)) > limit:
        cells.pop()
    return body


async def canary(url: str, token: str, stop_at: float, samples: dict) -> None:
    headers = {"Authorization": f"token {token}"}
    async with httpx.AsyncClient(timeout=60) as client:
        i = 0
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            if i % 2 == 0:
                reply = await client.get(url + "status", headers=headers)
                kind = "status"
            else:
                body = {**SMALL, "editor_id": "canary"}
                reply = await client.post(url + "complete", json=body, headers=headers)
                kind = "complete"
            elapsed = time.perf_counter() - started
            samples.setdefault(kind, []).append(elapsed)
            samples.setdefault("statuses", Counter())[f"{kind}:{reply.status_code}"] += 1
            i += 1
            await asyncio.sleep(max(0.0, 0.5 - elapsed))


async def attacker(url: str, token: str, stop_at: float, outcomes: Counter, seed: int) -> None:
    headers = {"Authorization": f"token {token}"}
    rng = random.Random(seed)
    async with httpx.AsyncClient(timeout=120) as client:

        async def one() -> None:
            while time.monotonic() < stop_at:
                try:
                    reply = await client.post(url + "complete", json=worst_body(rng),
                                              headers=headers)  # fmt: skip
                    outcomes[str(reply.status_code)] += 1
                    if reply.status_code == 429:  # what the limits allow, no more
                        await asyncio.sleep(float(reply.headers.get("retry-after", "1")))
                except httpx.HTTPError as exc:
                    outcomes[f"network:{type(exc).__name__}"] += 1

        await asyncio.gather(*(one() for _ in range(4)))  # more than max_in_flight_per_user


async def phase(dep, duration: float, attack: bool, seed: int) -> dict:
    samples: dict = {}
    outcomes: Counter = Counter()
    stop_at = time.monotonic() + duration
    jobs = [canary(dep.service_url, dep.tokens["student000"], stop_at, samples)]
    if attack:
        jobs.append(attacker(dep.service_url, dep.tokens["student001"], stop_at, outcomes, seed))
    await asyncio.gather(*jobs)
    result = {"attack": attack, "seconds": duration,
              "canary_statuses": dict(samples.get("statuses", {})),
              "attacker_statuses": dict(outcomes)}  # fmt: skip
    for kind in ("status", "complete"):
        values = samples.get(kind, [])
        result[f"{kind}_n"] = len(values)
        for q in (50, 95):
            p = _percentile(values, q)
            result[f"{kind}_p{q}_ms"] = None if p is None else round(1000 * p, 1)
    return result


def add_canary_parser(subparsers) -> None:
    parser = subparsers.add_parser("canary", help="a student's latency while another attacks")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per phase")
    parser.add_argument("--parallel", type=int, default=4, help="llama-server slots")
    parser.add_argument("--model", default=None, help="GGUF file (default: the test model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..sources import ensure_test_model

    model = args.model or str(ensure_test_model())
    with (
        start_llama_server(model, parallel=args.parallel, ctx=2048 * args.parallel) as engine,
        deployment(engine.base_url, args.parallel, "smollm2-135m") as dep,
    ):
        dep.add_students(2)
        results = []
        for attack in (False, True):
            print(f"# canary {'under attack' if attack else 'alone'} for {args.duration:.0f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
            results.append(asyncio.run(phase(dep, args.duration, attack, args.seed)))
    report = {"command": "jupyter copilot bench canary " + " ".join(sys.argv[3:]),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "results": results}  # fmt: skip
    print("| phase | status p50 / p95 ms | complete p50 / p95 ms | attacker replies |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {'attack' if r['attack'] else 'alone'} | {r['status_p50_ms']} / "
              f"{r['status_p95_ms']} | {r['complete_p50_ms']} / {r['complete_p95_ms']} | "
              f"{r['attacker_statuses'] or '-'} |")  # fmt: skip
    print(json.dumps(report, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2))
    return 0
