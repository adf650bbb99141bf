"""How many prompt tokens the engine must evaluate along a notebook replay, by reuse rule.

Latency on a shared 2-core machine is noisy; the number of tokens a request makes
the model evaluate is not, and on CPU it is most of the cold path's cost (~55
tokens/s for the 1.5B model on 2 cores). This replays the notebook replay's request
sequence (the same targets and requests as `bench notebooks`, first requests in a
cell and later ones, without pre-warming), builds each prompt as the server does,
tokenizes it with the model's own vocabulary (no weights are loaded) and applies
the engine's reuse plan (`engines/kv_reuse.py`) to the previous prompt's tokens, for
several `cache_reuse_tokens` values (0: the common prefix only).

Simplifications, on purpose: the cache after a request holds its prompt (the few
generated tokens after it never match a later prompt anyway), and the typed
requests are left out (most are served from the suggestion being typed through).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

from ..engines.kv_reuse import plan_reuse
from ..schema import CompleteRequest


def product_prompt(target, cells, settings: dict, fam, prefix: str | None = None,
                   kernel_namespace=()):  # fmt: skip
    """The prompt the server builds for `target` (its cursor, or `prefix` typed in its
    cell), the cells above as context, the kernel's names if given, under `settings`
    (the CopilotApp traits)."""
    from ..context import build_completion_prompt
    from ..context.bounds import bound_request
    from ..context.mode import decide_request_mode
    from .replay import _request, cells_above

    budget = settings["context_budget_tokens"]
    suffix_chars = settings["suffix_max_chars"]
    req: CompleteRequest = _request(target, cells_above(cells, target.cell_index),
                                    target.prefix if prefix is None else prefix, False)
    req.kernel_namespace = list(kernel_namespace)
    req = bound_request(req, budget_tokens=budget, suffix_max_chars=suffix_chars)
    req = decide_request_mode(req)  # as the service does (the prompt needs a mode)
    return build_completion_prompt(
        req, fam, budget_tokens=budget, suffix_max_chars=suffix_chars,
        line_max_tokens=settings["line_max_tokens"],
        block_max_tokens=settings["block_max_tokens"],
        heal=bool(settings.get("token_healing")),
    )


def product_params(prompt):
    """The engine's generation settings for a product prompt: the end of the first line
    stops a line completion, the next cell's marker a block (as the service asks)."""
    from ..engines.base import GenerationParams

    line = prompt.mode == "line"
    return GenerationParams(max_tokens=prompt.max_tokens, first_line=line,
                            stop=[] if line else list(prompt.stop))  # fmt: skip


def prompts_of_replay(notebooks, settings: dict, fam) -> list[tuple[str, bool, str]]:
    """(notebook, first request in its cell, prompt text) for each target, in order."""
    out = []
    for name, cells, targets in notebooks:
        current = None
        for target in targets:
            first = target.cell_index != current
            current = target.cell_index
            out.append((name, first, product_prompt(target, cells, settings, fam).text))
    return out


def evaluated_tokens(
    prompts: Sequence[list[int]], min_tokens: int
) -> list[tuple[int, int, int]]:
    """(prompt tokens, evaluated tokens, moved tokens) per prompt, one cache."""
    cached: list[int] = []
    rows = []
    for tokens in prompts:
        plan = plan_reuse(cached, tokens, min_tokens=min_tokens, keep_last=1)
        rows.append((len(tokens), len(tokens) - plan.reused, plan.moved))
        cached = list(tokens)
    return rows


def summarize(rows: list[tuple[int, int, int]], keep: Callable[[int], bool]) -> dict:
    picked = [row for i, row in enumerate(rows) if keep(i)]
    evaluated = sorted(row[1] for row in picked)
    if not evaluated:
        return {"requests": 0}
    p95 = evaluated[min(len(evaluated) - 1, round(0.95 * (len(evaluated) - 1)))]
    return {
        "requests": len(picked),
        "prompt_tokens_mean": round(statistics.mean(row[0] for row in picked), 1),
        "evaluated_mean": round(statistics.mean(evaluated), 1),
        "evaluated_p50": statistics.median(evaluated),
        "evaluated_p95": p95,
        "evaluated_total": sum(evaluated),
        "moved_total": sum(row[2] for row in picked),
        "requests_with_moves": sum(1 for row in picked if row[2]),
    }


def table(results: dict) -> str:
    header = ("| cache_reuse_tokens | requests | prompt tokens (mean) | evaluated p50 | "
              "evaluated p95 | evaluated mean | evaluated total | moved total | requests with moves |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for key, s in results.items():
        if not s.get("requests"):
            continue
        lines.append(f"| {key} | {s['requests']} | {s['prompt_tokens_mean']} | {s['evaluated_p50']} | "
                     f"{s['evaluated_p95']} | {s['evaluated_mean']} | {s['evaluated_total']} | "
                     f"{s['moved_total']} | {s['requests_with_moves']} |")
    return "\n".join(lines)
