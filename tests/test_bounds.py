"""Huge inputs cost bounded work: requests are cut to their budget before any scan
(context/bounds.py), per-token post-processing reads a bounded context, and caches
are bounded in bytes. Assertions are on the work done and the memory kept, never on
timings (this runs on loaded machines)."""

from __future__ import annotations

import json

import pytest

from jupyter_copilot.byte_lru import ByteLRU
from jupyter_copilot.context import (
    build_completion_prompt,
    decide_request_mode,
    filter_context,
    syntax,
)
from jupyter_copilot.context.bounds import (
    bound_prefix,
    bound_request,
    budget_chars,
)
from jupyter_copilot.postprocess import run_pipeline
from jupyter_copilot.prompts import family
from jupyter_copilot.reuse import SuggestionMemory
from jupyter_copilot.schema import CompleteRequest, ContextCell

BUDGET = 1536
SUFFIX = 400
BIG = 99_000


def _dense(n: int, seed: int = 0) -> str:
    """`n` characters of varied code-like text in lines of ~60 characters."""
    lines, size, i = [], 0, seed
    while size < n:
        line = f"value_{i} = compute({i}, [{i % 7}, {i % 11}], key='k{i}')  # step {i}"
        lines.append(line)
        size += len(line) + 1
        i += 1
    return "\n".join(lines)[:n]


def _huge_request() -> CompleteRequest:
    return CompleteRequest(
        prefix=_dense(BIG) + "\nresult = compute(",
        suffix=")" + "x" * (BIG - 1000) + "\n" + _dense(900, 7),  # a 98k rest of line
        context_cells=[ContextCell(source=_dense(BIG, seed)) for seed in range(5)],
        path="nb.ipynb",
    )


def _bounded(req: CompleteRequest) -> CompleteRequest:
    return bound_request(req, budget_tokens=BUDGET, suffix_max_chars=SUFFIX)


def test_a_huge_request_is_cut_to_a_few_budgets_before_any_scan():
    req = _bounded(_huge_request())
    chars = budget_chars(BUDGET)
    assert len(req.prefix) <= 3 * chars
    assert req.prefix.endswith("result = compute(")  # the cursor's surroundings stay
    assert len(req.suffix) <= max(4 * SUFFIX, 2048)
    assert req.suffix.startswith(")x")
    assert sum(len(cell.source) for cell in req.context_cells) <= 8 * chars + 10
    assert all(len(cell.source) <= chars + 1 for cell in req.context_cells)


def test_small_requests_are_left_alone():
    req = CompleteRequest(prefix="import numpy as np\nx = np.", suffix=")\n",
                          context_cells=[ContextCell(source="a = 1")])
    assert _bounded(req) is req


def test_the_prefix_cut_stays_put_while_the_student_types():
    """The kept prefix starts at the same place for a whole budget of typing, so the
    engine's prompt cache (longest common prefix) stays valid."""
    text = _dense(BIG)
    starts = set()
    for typed in range(0, 400, 7):
        kept = bound_prefix(text + "y" * typed, BUDGET)
        starts.add(kept[:80])
    assert len(starts) <= 2


def test_appending_cells_rarely_changes_the_kept_cells():
    from jupyter_copilot.context.bounds import bound_cells

    cells = [ContextCell(source=_dense(900, seed)) for seed in range(200)]
    kept_first = []
    for count in range(100, 200):
        kept = bound_cells(cells[:count], BUDGET)
        kept_first.append(tuple(cell.source[:40] for cell in kept[:12]))
    changes = sum(a != b for a, b in zip(kept_first, kept_first[1:]))
    assert changes <= 100 // 8  # a 900-char cell is ~1/11 of the 2-budget step


def test_prompt_building_parses_only_bounded_text(monkeypatch):
    parsed = []
    real = syntax.parse_python
    monkeypatch.setattr(syntax, "parse_python", lambda source: parsed.append(len(source)) or real(source))
    syntax._FACTS = ByteLRU(max_bytes=syntax._FACTS.max_bytes)  # a cold cache
    monkeypatch.setattr(syntax, "_FACTS", syntax._FACTS)
    req = _bounded(_huge_request())
    prompt = build_completion_prompt(decide_request_mode(req), family("qwen2.5-coder"),
                                     budget_tokens=BUDGET, suffix_max_chars=SUFFIX)
    # The whole request was ~700k characters; what is parsed is a few budgets' worth.
    assert sum(parsed) <= 14 * budget_chars(BUDGET)
    assert len(prompt.text) <= 1.2 * budget_chars(BUDGET)


def test_per_token_filters_see_a_bounded_context():
    req = _bounded(_huge_request())
    prompt = build_completion_prompt(decide_request_mode(req), family("qwen2.5-coder"),
                                     budget_tokens=BUDGET, suffix_max_chars=SUFFIX)
    ctx = filter_context(req, prompt)
    assert len(ctx.rest_of_line) <= max(4 * SUFFIX, 2048)
    # Streaming 200 tokens: each step reads the bounded context and the text so far.
    raw = ""
    for i in range(200):
        raw += f"a{i} "
        run_pipeline(raw, ctx, final=False)
    assert run_pipeline(raw, ctx, final=True).text


def test_suggestion_memory_is_bounded_in_bytes():
    memory = SuggestionMemory(max_editors=10_000, max_bytes=1_000_000)
    for i in range(300):
        memory.remember(("", f"editor-{i}"), 1, "p" * BIG, "zeros(3)")
    assert memory.bytes <= 1_000_000
    assert memory.continuation(("", "editor-299"), 1, "p" * BIG) == "zeros(3)"
    assert memory.continuation(("", "editor-0"), 1, "p" * BIG) is None  # evicted


def test_the_code_facts_cache_is_bounded_in_bytes_and_keeps_no_source(monkeypatch):
    cache = ByteLRU(max_bytes=200_000)
    monkeypatch.setattr(syntax, "_FACTS", cache)
    for seed in range(50):
        syntax.code_facts(_dense(20_000, seed * 1000))
    assert cache.bytes <= 200_000
    assert all(isinstance(key[1], bytes) and len(key[1]) == 16 for key in cache._items)


def test_byte_lru_evicts_oldest_first_and_refuses_giants():
    cache = ByteLRU(max_bytes=1000)
    cache.put("a", 1, 300)
    cache.put("b", 2, 300)
    assert cache.get("a") == 1  # now the most recent
    cache.put("c", 3, 300)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    cache.put("giant", 4, 5000)
    assert cache.get("giant") is None and cache.bytes <= 1000


@pytest.mark.model
@pytest.mark.copilot(context_budget_tokens=256)  # a short prompt: this checks the bounds, not the model
async def test_the_server_answers_huge_cells_and_lines(api):
    await api.wait_ready()
    req = _huge_request()
    body = req.model_dump()
    body["context_cells"] = body["context_cells"][:1]
    assert len(json.dumps(body)) < 512 * 1024  # within the default request size limit
    reply = await api.post("complete", body)
    assert reply.code == 200, reply.body
    assert json.loads(reply.body)["mode"] == "line"
