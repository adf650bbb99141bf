"""An empty completion on a line of its own is asked once more: where that applies
(`context/second_try.py`), the engine's mask for the second try (pure, over a toy
vocabulary; then on a real model, SmolLM2-135M, in the child's backend), and the
service's two tries (a scripted engine: one request, both tries metered)."""

from __future__ import annotations

import numpy as np
from conftest import backend_generate

from jupyter_copilot.context.second_try import line_to_avoid, starts_to_avoid
from jupyter_copilot.engines.avoid_mask import AvoidMask
from jupyter_copilot.engines.base import EngineStatus
from jupyter_copilot.engines.token_healing import Vocabulary
from jupyter_copilot.policy import Policy
from jupyter_copilot.prompts import family
from jupyter_copilot.schema import CompleteRequest, ModelCard
from jupyter_copilot.service import CompletionService, CompletionSettings
from jupyter_copilot.usage import UsageLedger


def _req(prefix: str, suffix: str, mode: str = "line") -> CompleteRequest:
    return CompleteRequest(prefix=prefix, suffix=suffix, mode=mode, editor_id="e1")


# -- where a second try applies ----------------------------------------------------------

def test_a_second_try_is_made_only_on_a_line_of_its_own():
    # An empty line before the next one: that next line must not be written again.
    assert line_to_avoid(_req("for k in d:\n", "\n    break\nx = 1")) == "    break"
    # Less the indentation already typed (the editor indents after Enter).
    assert line_to_avoid(_req("for k in d:\n    ", "\n    break\nx = 1")) == "break"
    assert line_to_avoid(_req("for k in d:\n        ", "\n    break")) == "break"
    # At the end of the code: the model must only not end at once.
    assert line_to_avoid(_req("def f(n):\n    \"\"\"Square.\"\"\"\n", "\n")) == ""
    assert line_to_avoid(_req("", "")) == ""
    # After code on the line, or before some: an empty answer is usually right.
    assert line_to_avoid(_req("print(x)", "\nnext")) is None
    assert line_to_avoid(_req("    ", "x)\n")) is None


# -- the mask ----------------------------------------------------------------------------

PIECES = [b"", b"\n", b"\n    ", b"    ", b"        ", b"  ", b"b", b"break", b" break",
          b"        break", b"return", b"re", b"(", b"state"]


def _allowed(mask: AvoidMask, generated: list[int]) -> set[bytes]:
    scores = np.zeros(len(PIECES), dtype=np.float32)
    out = mask(np.array([12, 12] + generated), scores)  # the prompt: 2 tokens
    return {PIECES[t] for t in np.flatnonzero(np.isfinite(out))}


def test_the_first_token_is_neither_an_end_nor_a_newline():
    mask = AvoidMask(Vocabulary(PIECES), "")
    first = _allowed(mask, [])
    assert b"" not in first and b"\n" not in first and b"\n    " not in first
    assert {b"return", b"    ", b"state"} <= first
    assert _allowed(mask, [10]) == set(PIECES)  # after the first token, nothing is masked


def test_the_avoided_line_keeps_its_indentation_but_not_its_first_word():
    mask = AvoidMask(Vocabulary(PIECES), "        break")
    first = _allowed(mask, [])
    assert b"        break" not in first  # the whole line in one token
    assert {b"    ", b"        ", b"return", b"state"} <= first  # indentation, other words
    after_indent = _allowed(mask, [4])  # 8 spaces written
    assert b"break" not in after_indent and b"b" not in after_indent
    assert {b"return", b"re", b"state"} <= after_indent
    halfway = _allowed(mask, [3])  # 4 of the 8 spaces: more indentation is still fine
    assert b"    " in halfway and b"    " + b"break" not in halfway
    # Once the line went another way, nothing is masked.
    assert _allowed(mask, [4, 10]) == set(PIECES)


MARKER_PIECES = [b"", b"\n", b"#", b"# ", b"# %%", b" %%", b"%", b"%%", b" compute", b"x"]


def test_the_next_cells_marker_cannot_start_the_second_try():
    assert starts_to_avoid(("<|endoftext|>", "\n# %%", "\n")) == ("# %%",)
    mask = AvoidMask(Vocabulary(MARKER_PIECES), "", starts_to_avoid(("\n# %%",)))

    def allowed(generated: list[int]) -> set[bytes]:
        scores = mask(np.array([9] + generated), np.zeros(len(MARKER_PIECES)))
        return {MARKER_PIECES[t] for t in np.flatnonzero(np.isfinite(scores))}

    first = allowed([])
    assert b"# %%" not in first and {b"#", b"# ", b"x"} <= first  # a comment may start
    assert b" %%" not in allowed([2]) and b" compute" in allowed([2])  # "#" then...
    assert b"%%" not in allowed([3]) and b"%" in allowed([3])  # "# " then...
    assert b"%" not in allowed([3, 6])  # "# %" then...
    assert allowed([2, 8]) == set(MARKER_PIECES)  # "# compute": past it, nothing masked


def test_mask_scores_are_untouched_where_not_banned():
    mask = AvoidMask(Vocabulary(PIECES), "")
    scores = np.arange(len(PIECES), dtype=np.float32)
    out = mask(np.array([12]), scores.copy())
    assert out[10] == scores[10] and out[1] == -np.inf


def _generate(small_backend, prompt: str, avoid) -> str:
    return backend_generate(small_backend, prompt, max_tokens=10, avoid=avoid)


def test_real_model_second_try_writes_on_the_line(small_backend):
    prompt = "x = 1\ny = 2\n"
    free = _generate(small_backend, prompt, avoid=None)
    assert free.startswith("\n")  # the tiny model leaves the line blank: the case at hand
    second = _generate(small_backend, prompt, avoid="")
    assert second.strip() and not second.startswith("\n")


def test_real_model_second_try_does_not_repeat_the_avoided_line(small_backend):
    prompt = "def add(a, b):\n"
    free = _generate(small_backend, prompt, avoid=None)
    line = free.split("\n")[0]
    assert line.strip()
    second = _generate(small_backend, prompt, avoid=line)
    assert second.strip() and not second.startswith(line.strip()[:1])


# -- the service's two tries ---------------------------------------------------------------

class TwoAnswerEngine:
    """Answers `first`, then `second` to a request that carries `avoid`."""

    avoids_text = True

    def __init__(self, first: str, second: str) -> None:
        self.first, self.second, self.avoids, self.starts = first, second, [], []

    def status(self) -> EngineStatus:
        return EngineStatus(state="ready")

    async def complete(self, prompt, params, cancel, stats=None):
        self.avoids.append(params.avoid)
        self.starts.append(params.avoid_starts)
        text = self.first if params.avoid is None else self.second
        if stats is not None:
            stats.prompt_tokens, stats.generated_tokens = 100, len(text)
        for piece in text:
            yield piece


def _service(engine) -> tuple[CompletionService, UsageLedger]:
    ledger = UsageLedger()
    card = ModelCard(id="m", name="m", family="qwen2.5-coder")
    settings = CompletionSettings(reuse_suggestions=False)
    return CompletionService(engine, family("qwen2.5-coder"), card, settings, Policy(), ledger), ledger


async def _final(service, req):
    return [chunk async for chunk in service.complete(req, "student")][-1]


async def test_a_repeat_of_the_next_line_is_asked_again_avoiding_it():
    engine = TwoAnswerEngine(first="break\n", second="state = 1\n")
    service, ledger = _service(engine)
    final = await _final(service, _req("for k in d:\n    ", "\n    break\n"))
    assert final.text == "state = 1" and final.stop_reason == "done"
    assert engine.avoids == [None, "break"]
    [row] = ledger.snapshot()["counters"]
    # One request, both tries' tokens.
    assert row["requests"] == 1 and row["generated_tokens"] == len("break\n") + len("state = 1\n")
    assert row["prompt_tokens"] == 200


async def test_the_next_cells_marker_at_the_line_start_is_asked_again():
    # At column 0 the model starts the next cell: a stop there too (nothing shown),
    # and the second try may not start with the marker.
    engine = TwoAnswerEngine(first="# %%\n\ndef g(n):\n", second="    return n * n\n")
    service, _ = _service(engine)
    final = await _final(service, _req('def f(n):\n    """Square."""\n', "\n", mode="block"))
    assert final.text == "    return n * n"
    assert engine.avoids == [None, ""] and engine.starts == [(), ("# %%",)]


async def test_an_immediate_end_is_asked_again_once_only():
    engine = TwoAnswerEngine(first="", second="")
    service, _ = _service(engine)
    final = await _final(service, _req("def f(n):\n", "\n", mode="block"))
    assert final.text == "" and engine.avoids == [None, ""]  # once, not again


async def test_no_second_try_where_an_empty_answer_is_right_or_cannot_be_helped():
    engine = TwoAnswerEngine(first="", second="never")
    service, _ = _service(engine)
    assert (await _final(service, _req("print(x)", "\n"))).text == ""
    assert engine.avoids == [None]
    # A first answer that shows something is kept.
    engine = TwoAnswerEngine(first="return n * n", second="never")
    service, _ = _service(engine)
    assert (await _final(service, _req("def f(n):\n    ", "\n"))).text == "return n * n"
    assert engine.avoids == [None]
    # An engine that cannot mask its first tokens (the campus's OpenAI-compatible ones).
    engine = TwoAnswerEngine(first="", second="never")
    engine.avoids_text = False
    service, _ = _service(engine)
    assert (await _final(service, _req("def f(n):\n    ", "\n"))).text == ""
    assert engine.avoids == [None]

