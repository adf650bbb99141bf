"""Typed-through reuse (reuse.py) and the engine's own first-line stop, without a model."""

from __future__ import annotations

from jupyter_copilot.engines.base import Engine, EngineStatus
from jupyter_copilot.postprocess.line_mode import FirstLineStop, first_line_end
from jupyter_copilot.policy import Policy
from jupyter_copilot.prompts import family
from jupyter_copilot.reuse import SuggestionMemory, request_key
from jupyter_copilot.schema import CompleteRequest, ContextCell, ModelCard
from jupyter_copilot.service import CompletionService, CompletionSettings
from jupyter_copilot.usage import UsageLedger

EDITOR = ("", "nb.ipynb#cell-1")


def test_memory_serves_the_rest_while_typing_matches():
    memory = SuggestionMemory()
    memory.remember(EDITOR, 1, "x = np.", "zeros(3)")
    assert memory.continuation(EDITOR, 1, "x = np.") == "zeros(3)"
    assert memory.continuation(EDITOR, 1, "x = np.z") == "eros(3)"
    assert memory.continuation(EDITOR, 1, "x = np.zeros(") == "3)"
    assert memory.continuation(EDITOR, 1, "x = np.o") is None  # typed something else
    assert memory.continuation(EDITOR, 1, "x = np.zeros(3)") is None  # nothing left
    assert memory.continuation(EDITOR, 2, "x = np.z") is None  # context or suffix changed
    assert memory.continuation(("", "other"), 1, "x = np.z") is None
    assert memory.continuation(EDITOR, 1, "x = n") is None  # deleted a character


def test_memory_forgets_empty_suggestions_and_is_bounded():
    memory = SuggestionMemory(max_editors=2)
    memory.remember(EDITOR, 1, "a", "bc")
    memory.remember(EDITOR, 1, "a", "  ")
    assert memory.continuation(EDITOR, 1, "a") is None
    for name in ("x", "y", "z"):
        memory.remember(("", name), 1, "a", "bc")
    assert memory.continuation(("", "x"), 1, "a") is None
    assert memory.continuation(("", "z"), 1, "a") == "bc"


def test_request_key_ignores_the_prefix_only():
    base = CompleteRequest(prefix="a", suffix="", context_cells=[ContextCell(source="x = 1")])
    assert request_key(base, "line") == request_key(base.model_copy(update={"prefix": "ab"}), "line")
    assert request_key(base, "line") != request_key(base, "block")
    other = base.model_copy(update={"context_cells": [ContextCell(source="x = 2")]})
    assert request_key(base, "line") != request_key(other, "line")
    assert request_key(base, "line") != request_key(base.model_copy(update={"suffix": ")"}), "line")


def _first_line_complete(text: str) -> bool:
    """The engines' stop (fed one character at a time) agrees with the filter's rule."""
    stop = FirstLineStop()
    streamed = any([stop(char) for char in text])
    assert streamed == (first_line_end(text) is not None)
    return streamed


def test_first_line_complete():
    assert not _first_line_complete("np.zeros")
    assert _first_line_complete("np.zeros(3)\n")
    assert not _first_line_complete("\n\n    ")  # leading blank lines do not count
    assert _first_line_complete("\n    import pandas as pd\n")


class CountingEngine(Engine):
    def __init__(self, text: str) -> None:
        self.text = text
        self.calls = []

    def status(self):
        return EngineStatus(state="ready")

    async def complete(self, prompt, params, cancel, stats=None):
        self.calls.append(params)
        yield self.text

    async def chat(self, messages, params, cancel, stats=None):
        yield ""


async def _complete(service, prefix):
    req = CompleteRequest(prefix=prefix, suffix="", editor_id="e1")
    return [chunk async for chunk in service.complete(req, "student")][-1]


def _service(engine, reuse=True):
    card = ModelCard(id="m", name="m", family="qwen2.5-coder")
    settings = CompletionSettings(reuse_suggestions=reuse)
    return CompletionService(engine, family("qwen2.5-coder"), card, settings, Policy(),
                             UsageLedger())


async def test_service_answers_a_typed_through_request_without_the_engine():
    engine = CountingEngine("zeros(3)\nmore")
    service = _service(engine)
    first = await _complete(service, "import numpy as np\nx = np.")
    assert first.text == "zeros(3)" and not first.timing.reused
    assert engine.calls[0].first_line  # line mode: the engine stops at the line end
    typed = await _complete(service, "import numpy as np\nx = np.ze")
    assert typed.text == "ros(3)" and typed.timing.reused
    assert len(engine.calls) == 1
    await _complete(service, "import numpy as np\nx = np.o")  # diverged: ask the model
    assert len(engine.calls) == 2


async def test_reuse_can_be_turned_off():
    engine = CountingEngine("zeros(3)")
    service = _service(engine, reuse=False)
    await _complete(service, "x = np.")
    await _complete(service, "x = np.z")
    assert len(engine.calls) == 2
