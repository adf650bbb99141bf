"""What one forward pass costs by batch size, and whether a draft model can pay
(issue 14, item 4: "speculative or lookup decoding with a draft that pays on 2 cores").

Speculative decoding trades one forward pass per token for a draft of `d` tokens
(`d` passes of a small model, or a look-up in the prompt) and one pass of the big
model over `d + 1` tokens, every position's logits requested (each draft token must
be checked). It pays when that pass costs little more than a single-token one, as on
a GPU. On a CPU a pass over more tokens costs more compute: this measures by how much,
on the model itself, in the engine's own backend (worker_llama.py), after a real
notebook prompt is in the cache, and computes the expected time per token for each
draft length and acceptance rate.

Expected tokens per round with acceptance rate a (each draft token independently
right with probability a, greedy): (1 - a^(d+1)) / (1 - a).
"""

from __future__ import annotations

import argparse
import statistics
import time

ACCEPTANCE = (0.5, 0.7, 0.8, 0.9)


def load_backend(model_path: str, threads: int, n_ctx: int = 4096):
    from ..engines.worker_llama import LlamaBackend

    args = argparse.Namespace(model=model_path, n_ctx=n_ctx, threads=threads, n_batch=512,
                              verbose=False, cache_reuse=0)  # fmt: skip
    return LlamaBackend.load(args)


def pass_ms(backend, prompt_tokens: list[int], batch: int, repeats: int) -> float:
    """Median ms of one forward pass over `batch` tokens after `prompt_tokens`, logits
    for every position (what checking a draft needs)."""
    import llama_cpp

    llm = backend.llm
    backend.prefill(prompt_tokens, lambda: False, 0, lambda _: None, 64)
    start = llm.n_tokens
    probe = prompt_tokens[-batch:] if len(prompt_tokens) >= batch else prompt_tokens * batch
    times = []
    for _ in range(repeats):
        llama_cpp.llama_memory_seq_rm(llm._ctx.memory, 0, start, -1)
        llm._batch.set_batch(batch=probe[:batch], n_past=start, logits_all=True)
        began = time.perf_counter()
        llm._ctx.decode(llm._batch)
        times.append((time.perf_counter() - began) * 1000)
    llama_cpp.llama_memory_seq_rm(llm._ctx.memory, 0, start, -1)
    return statistics.median(times)


def expected_tokens(acceptance: float, draft: int) -> float:
    if acceptance >= 1:
        return draft + 1.0
    return (1 - acceptance ** (draft + 1)) / (1 - acceptance)


def speculation_table(target: dict[int, float], draft_ms: float | None) -> list[dict]:
    """ms per token for each draft length and acceptance rate; draft_ms None: a free
    draft (prompt look-up), else a draft model's single-token pass."""
    rows = []
    for draft in sorted(k - 1 for k in target if k > 1):
        for acceptance in ACCEPTANCE:
            cost = target[draft + 1] + (draft * draft_ms if draft_ms else 0.0)
            rows.append({"draft_tokens": draft, "acceptance": acceptance,
                         "ms_per_token": round(cost / expected_tokens(acceptance, draft), 1)})  # fmt: skip
    return rows


def measure(prompt: str, model_path: str, draft_path: str | None, threads: int,
            batches: list[int], repeats: int) -> dict:  # fmt: skip
    """Pass times of the model (and the draft's single-token pass) after `prompt`."""
    backend = load_backend(model_path, threads)
    tokens = backend.tokenize(prompt)
    target_ms = {b: round(pass_ms(backend, tokens, b, repeats), 1) for b in batches}
    summary = {"prompt_tokens": len(tokens), "threads": backend.threads, "pass_ms": target_ms,
               "draft_pass_ms": None, "lookup": speculation_table(target_ms, None)}  # fmt: skip
    if draft_path:
        del backend  # one model in memory at a time
        draft = load_backend(draft_path, threads)
        summary["draft_pass_ms"] = round(pass_ms(draft, draft.tokenize(prompt), 1, repeats), 1)
        summary["draft_model"] = speculation_table(target_ms, summary["draft_pass_ms"])
    return summary


def _grid(rows: list[dict]) -> list[str]:
    rates = sorted({row["acceptance"] for row in rows})
    lines = ["| draft tokens | " + " | ".join(f"accept {a}" for a in rates) + " |",
             "|---" * (1 + len(rates)) + "|"]  # fmt: skip
    for draft in sorted({row["draft_tokens"] for row in rows}):
        cells = [str(row["ms_per_token"]) for row in rows if row["draft_tokens"] == draft]
        lines.append(f"| {draft} | " + " | ".join(cells) + " |")
    return lines


def table(summary: dict) -> str:
    single = summary["pass_ms"].get(1)
    lines = [f"One forward pass after a {summary['prompt_tokens']}-token prompt, "
             f"{summary['threads']} threads, every position's logits:",
             "| tokens in the pass | ms | ms per token |", "|---|---|---|"]  # fmt: skip
    lines += [f"| {b} | {ms} | {ms / b:.1f} |" for b, ms in summary["pass_ms"].items()]
    lines += ["", f"Speculative decoding with a free draft (look-up): ms per token (none: {single})"]
    lines += _grid(summary["lookup"])
    if summary.get("draft_model"):
        lines += ["", f"With a draft model ({summary['draft_pass_ms']} ms a token): ms per token "
                  f"(none: {single})"]
        lines += _grid(summary["draft_model"])
    return "\n".join(lines)
