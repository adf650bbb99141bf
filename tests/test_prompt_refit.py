"""A prompt the engine refuses as longer than its context is rebuilt once to fit.

Budgets are counted in characters (`context/tokens.CHARS_PER_TOKEN`); a cell of
numbers or data has more tokens per character than that, so an engine with a small
context (llama-server's per-slot context on the campus) refused such prompts: every
completion in that notebook was a 413. The unit tests use a scripted engine; the last
one asks a real llama-server whose slots hold 1,024 tokens."""

from __future__ import annotations

import random

import pytest

from jupyter_copilot.engines.base import EngineStatus, PromptTooLong
from jupyter_copilot.engines.openai_compat import OpenAICompatConfig, OpenAICompatEngine
from jupyter_copilot.policy import Policy
from jupyter_copilot.prompts import family
from jupyter_copilot.schema import CompleteRequest, ModelCard
from jupyter_copilot.service import CompletionService, CompletionSettings
from jupyter_copilot.usage import UsageLedger


class SmallContextEngine:
    """Refuses prompts over `limit` characters, saying both sizes as llama-server does
    (one token per character here), or saying nothing when `says_sizes` is False."""

    def __init__(self, limit: int, says_sizes: bool = True) -> None:
        self.limit, self.says_sizes, self.prompts = limit, says_sizes, []

    def status(self):
        return EngineStatus(state="ready")

    async def complete(self, prompt, params, cancel, stats=None):
        self.prompts.append(prompt)
        if len(prompt) > self.limit:
            sizes = (len(prompt), self.limit) if self.says_sizes else (None, None)
            raise PromptTooLong("exceeds the available context size", *sizes)
        yield "sum(values)"


def _service(engine) -> tuple[CompletionService, UsageLedger]:
    ledger = UsageLedger()
    card = ModelCard(id="m", name="m", family="qwen2.5-coder")
    settings = CompletionSettings(reuse_suggestions=False, budget_tokens=1536)
    return CompletionService(engine, family("qwen2.5-coder"), card, settings, Policy(), ledger), ledger


def _dense_request() -> CompleteRequest:
    rng = random.Random(0)
    rows = "\n".join(
        "    [" + ", ".join(str(rng.randrange(10**6)) for _ in range(6)) + "]," for _ in range(400)
    )
    return CompleteRequest(prefix=f"values = [\n{rows}\n]\ntotal = ", suffix="", editor_id="e1")


async def test_a_refused_prompt_is_rebuilt_once_at_the_size_the_engine_said():
    engine = SmallContextEngine(limit=2_000)
    service, ledger = _service(engine)
    chunks = [c async for c in service.complete(_dense_request(), "student")]
    final = chunks[-1]
    assert final.done and final.stop_reason == "done" and final.text == "sum(values)"
    assert len(engine.prompts) == 2 and len(engine.prompts[1]) <= 2_000 < len(engine.prompts[0])
    assert engine.prompts[1].endswith(engine.prompts[0][-200:])  # the cursor's side is kept
    assert [row["requests"] for row in ledger.snapshot()["counters"]] == [1]  # counted once


async def test_without_the_sizes_the_refusal_stays_a_413():
    engine = SmallContextEngine(limit=2_000, says_sizes=False)
    service, _ = _service(engine)
    with pytest.raises(PromptTooLong):
        [c async for c in service.complete(_dense_request(), "student")]
    assert len(engine.prompts) == 1


async def test_a_context_too_small_for_any_useful_prompt_stays_a_413():
    engine = SmallContextEngine(limit=100)
    service, _ = _service(engine)
    with pytest.raises(PromptTooLong):
        [c async for c in service.complete(_dense_request(), "student")]
    assert len(engine.prompts) == 1  # the refit would be under MIN_REFIT_BUDGET


@pytest.mark.model
async def test_a_cell_of_numbers_gets_a_completion_from_llama_server(llama_server):
    """The session's llama-server: 4 slots of 1,024 tokens, smaller than the budget."""
    engine = OpenAICompatEngine(OpenAICompatConfig(base_url=llama_server.url, max_retries=1))
    await engine.check_health()
    try:
        service, _ = _service(engine)
        service.family = family("plain")  # the test model has no FIM tokens
        prompts, ask = [], service._engine_pieces
        service._engine_pieces = lambda prompt, *args: prompts.append(prompt) or ask(prompt, *args)
        final = [c async for c in service.complete(_dense_request(), "student")][-1]
        assert final.done and final.stop_reason in ("done", "max_tokens")
        assert len(prompts) == 2  # the first did not fit the slot's 1,024 tokens
    finally:
        await engine.close()
