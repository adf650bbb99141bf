"""Typed-through reuse (reuse.py) and the engine's own first-line stop, without a model."""

from __future__ import annotations

import asyncio

from jupyter_copilot.context.mode import AHEAD_LINES, ahead_through_next_line, writes_next_line
from jupyter_copilot.engines.base import CancelToken, Engine, EngineStatus
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
    assert request_key(base) == request_key(base.model_copy(update={"prefix": "ab"}))
    # The mode the client asks for is in the key (the one the server decides is not).
    assert request_key(base) != request_key(base.model_copy(update={"mode": "block"}))
    other = base.model_copy(update={"context_cells": [ContextCell(source="x = 2")]})
    assert request_key(base) != request_key(other)
    assert request_key(base) != request_key(base.model_copy(update={"suffix": ")"}))
    assert request_key(base) == request_key(base.model_copy(update={"ahead": True}))


def test_a_block_suggestion_answers_a_line_request_with_its_first_line():
    memory = SuggestionMemory()
    memory.remember(EDITOR, 1, "for x in xs:\n", "    y = x\n    print(y)", mode="block")
    # Enter + auto-indent: still a blank line, a block request: the whole rest.
    assert memory.continuation(EDITOR, 1, "for x in xs:\n    ", mode="block") == "y = x\n    print(y)"
    # The first character typed: a line request, the rest of that line.
    assert memory.continuation(EDITOR, 1, "for x in xs:\n    y", mode="line") == " = x"
    # At the end of a finished line, what line mode shows: the next line, below.
    memory.remember(EDITOR, 1, "import numpy as np", "\nimport pandas as pd\nimport re", mode="block")
    assert memory.continuation(EDITOR, 1, "import numpy as np", mode="line") == "\nimport pandas as pd"
    # A line suggestion does not answer where a body is expected.
    memory.remember(EDITOR, 1, "for x in xs:\n", "    y = x", mode="line")
    assert memory.continuation(EDITOR, 1, "for x in xs:\n    ", mode="block") is None
    assert memory.continuation(EDITOR, 1, "for x in xs:\n    ", mode="line") == "y = x"


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


async def _last(chunks):
    return [chunk async for chunk in chunks][-1]


async def _complete(service, prefix, suffix="", **fields):
    req = CompleteRequest(prefix=prefix, suffix=suffix, editor_id="e1", **fields)
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


class SlowEngine(CountingEngine):
    """Writes its text a few characters at a time, `delay_s` apart."""

    def __init__(self, text: str, delay_s: float = 0.05) -> None:
        super().__init__(text)
        self.delay_s = delay_s
        self.cancelled = []

    async def complete(self, prompt, params, cancel, stats=None):
        self.calls.append(params)
        for start in range(0, len(self.text), 3):
            await asyncio.sleep(self.delay_s)
            if cancel.cancelled:
                self.cancelled.append(cancel.reason)
                return
            yield self.text[start : start + 3]


# After `total = 0` was accepted: the student presses Enter and types on.
ACCEPTED = "total = 0\n"
BELOW = "\nprint(total)"


async def test_the_next_request_waits_for_the_suggestion_asked_ahead():
    engine = SlowEngine("for x in xs:\n    total += x")
    service = _service(engine)
    ahead = asyncio.create_task(_complete(service, ACCEPTED, BELOW, ahead=True))
    await asyncio.sleep(0.06)  # under way: its first characters are written
    assert service.ahead.in_flight(("", "e1"))
    typed = await _complete(service, ACCEPTED + "fo", BELOW)
    assert typed.timing.reused and typed.text == "r x in xs:"
    assert (await ahead).text.startswith("for x in xs:")
    assert len(engine.calls) == 1 and not engine.cancelled
    assert not service.ahead.in_flight(("", "e1"))


async def test_typing_something_else_cancels_the_suggestion_asked_ahead():
    engine = SlowEngine("for x in xs:\n    total += x", delay_s=0.2)
    service = _service(engine)
    ahead = asyncio.create_task(_complete(service, ACCEPTED, BELOW, ahead=True))
    await asyncio.sleep(0.3)  # "for" shown so far
    typed = await _complete(service, ACCEPTED + "wh", BELOW)
    assert not typed.timing.reused and len(engine.calls) == 2
    # Not waited for to its end: cancelled by the request that disagreed with it
    # (not merely superseded by its claim on the editor).
    assert (await ahead).stop_reason == "cancelled"
    assert engine.cancelled == ["the student typed something else"]


class WarmedEngine(CountingEngine):
    warms_while_typing = True  # as the local llama.cpp engine

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.warmed = []

    async def warm(self, prompt, cache_salt=None):
        self.warmed.append(prompt)


async def test_a_suggestion_asked_ahead_that_nothing_would_remember_warms_the_cell_up():
    engine = WarmedEngine("print(total)")
    service = _service(engine, reuse=False)
    chunk = await _complete(service, ACCEPTED + "print(", BELOW, ahead=True,
                            context_cells=[ContextCell(source="xs = [1, 2]")])  # fmt: skip
    # No suggestion computed (nothing would serve it), but the cell is not left cold:
    # the notebook and the cell up to the cursor are evaluated, as a warm-up does.
    assert chunk.done and chunk.text == "" and engine.calls == []
    assert len(engine.warmed) == 1
    assert "xs = [1, 2]" in engine.warmed[0] and engine.warmed[0].endswith(ACCEPTED + "print(")
    # The same without an editor to remember it for.
    req = CompleteRequest(prefix=ACCEPTED, suffix=BELOW, ahead=True)
    [chunk async for chunk in _service(engine).complete(req, "student")]
    assert engine.calls == [] and len(engine.warmed) == 2
    # A suggestion asked (not ahead) with reuse off warms nothing.
    await _complete(service, ACCEPTED, BELOW)
    assert len(engine.calls) == 1 and len(engine.warmed) == 2


# While the student types `x = np.z`, the frontend asks ahead at the cursor (warm.ts's
# throttle); they pause at `x = np.zer`.
TYPING = "import numpy as np\nx = np.z"


async def _asked_ahead_while_typing(text: str, delay_s: float, then_s: float):
    """A service whose engine writes `text` a few characters every `delay_s`, and the
    suggestion asked ahead at TYPING, under way for `then_s`: (engine, service, task)."""
    engine = SlowEngine(text, delay_s)
    service = _service(engine)
    ahead = asyncio.create_task(_complete(service, TYPING, ahead=True))
    await asyncio.sleep(then_s)
    return engine, service, ahead


async def test_the_pause_is_served_from_the_suggestion_asked_while_typing():
    # Under way when the student pauses.
    engine, service, ahead = await _asked_ahead_while_typing("eros(3)\nmore", 0.05, 0.06)
    paused = await _complete(service, TYPING + "er")
    assert paused.timing.reused and paused.text == "os(3)"
    # Asked at the end of the line: it wrote the next line too, for after Enter.
    assert (await ahead).text == "eros(3)\nmore"
    assert len(engine.calls) == 1 and not engine.cancelled


def _ahead(prefix: str, suffix: str = "", **fields) -> CompleteRequest:
    return CompleteRequest(prefix=prefix, suffix=suffix, ahead=True, mode="line", **fields)


def test_a_suggestion_asked_ahead_at_a_line_end_writes_the_next_line_too():
    asked = ahead_through_next_line(_ahead(TYPING, "\nprint(x)"))
    assert asked.mode == "block" and asked.max_lines == AHEAD_LINES == 2
    assert writes_next_line(asked)
    unchanged = [
        _ahead(TYPING, ")"),  # text after the cursor on its line
        _ahead(TYPING + "\n"),  # a line of its own (after an accept: asked as it is)
        _ahead("def f(x):\n    y = np.z"),  # in a body: the next line may leave it
        _ahead(TYPING, max_lines=1),  # the student wants one line at most
        CompleteRequest(prefix=TYPING, suffix="", mode="line"),  # not asked ahead
        _ahead(TYPING).model_copy(update={"mode": "block"}),  # already more than a line
    ]
    for req in unchanged:
        assert ahead_through_next_line(req) == req
        assert not writes_next_line(req)


async def test_the_request_after_enter_is_served_from_the_line_written_ahead():
    """The student types the line as the suggestion asked ahead says and presses
    Enter: the request on the new line is answered from memory, the model asked once."""
    engine, service, ahead = await _asked_ahead_while_typing("eros(3)\ny = x + 1", 0.05, 0)
    await ahead
    params = engine.calls[0]
    assert not params.first_line  # a block of two lines, stopped by the filters
    after_enter = await _complete(service, TYPING + "eros(3)\n")
    assert after_enter.timing.reused and after_enter.text == "y = x + 1"
    typed_on = await _complete(service, TYPING + "eros(3)\ny = ")
    assert typed_on.timing.reused and typed_on.text == "x + 1"
    assert len(engine.calls) == 1


async def test_the_pause_does_not_wait_for_the_next_line_being_written():
    # "ero" written when the student pauses: it follows, and is answered once the
    # line is written, while the next line goes on.
    engine, service, ahead = await _asked_ahead_while_typing(
        "eros(3)\ny = x + 1 + 2 + 3 + 4 + 5", 0.1, 0.15)  # fmt: skip
    paused = await _complete(service, TYPING + "er")
    assert paused.timing.reused and paused.text == "os(3)"
    assert not ahead.done()  # still writing the next line
    assert (await ahead).text == "eros(3)\ny = x + 1 + 2 + 3 + 4 + 5"
    assert len(engine.calls) == 1 and not engine.cancelled


async def test_at_the_end_of_a_finished_line_the_pause_gets_the_next_line():
    """Nothing more on this line: the model goes to the next, which line mode shows
    below the cursor (`first_line_only`); so does the pause answered from the
    suggestion asked ahead, and the request after Enter gets the same line."""
    engine = SlowEngine("\ny = x + 1 + 2 + 3", delay_s=0.05)
    service = _service(engine)
    ahead = asyncio.create_task(_complete(service, "x = np.zeros(3)", ahead=True))
    await asyncio.sleep(0.06)
    paused = await _complete(service, "x = np.zeros(3)")
    assert paused.timing.reused and paused.text == "\ny = x + 1 + 2 + 3"
    assert (await ahead).text == "\ny = x + 1 + 2 + 3"
    after_enter = await _complete(service, "x = np.zeros(3)\n")
    assert after_enter.timing.reused and after_enter.text == "y = x + 1 + 2 + 3"
    assert len(engine.calls) == 1


async def test_the_next_line_can_be_turned_off():
    engine = CountingEngine("eros(3)\ny = x + 1")
    service = _service(engine)
    service.settings.ahead_next_line = False
    assert (await _complete(service, TYPING, ahead=True)).text == "eros(3)"
    assert engine.calls[0].first_line


async def test_a_suggestion_asked_ahead_again_follows_the_one_the_student_types():
    """Typing on along a suggestion asked ahead (the next tick of the frontend's
    throttle) does not start it over: the newer one is answered from the older."""
    engine, service, older = await _asked_ahead_while_typing("eros(3)", 0.1, 0.15)  # "ero" written
    newer = await _complete(service, TYPING + "e", ahead=True)
    assert newer.timing.reused and newer.text == "ros(3)"
    assert (await older).text == "eros(3)" and len(engine.calls) == 1


async def test_a_suggestion_asked_ahead_again_replaces_one_the_student_typed_past():
    engine, service, older = await _asked_ahead_while_typing("eros(3)", 0.1, 0.15)
    newer = await _complete(service, TYPING + "o", ahead=True)  # not what it says
    assert (await older).stop_reason == "cancelled"
    assert engine.cancelled == ["the student typed something else"]
    assert not newer.timing.reused and len(engine.calls) == 2


async def test_a_suggestion_asked_ahead_never_stops_one_the_student_waits_for():
    """A typing-ahead that arrives while the pause's request runs (a slow network,
    a modified frontend) yields: that request is remembered anyway."""
    engine = SlowEngine("eros(3)", delay_s=0.1)
    service = _service(engine)
    waited = asyncio.create_task(_complete(service, TYPING))
    await asyncio.sleep(0.05)
    ahead = await _complete(service, TYPING, ahead=True)
    assert ahead.done and ahead.text == "" and not ahead.timing.reused
    shown = await waited
    assert shown.text == "eros(3)" and shown.stop_reason != "cancelled"
    assert len(engine.calls) == 1 and not engine.cancelled
    # Once it is done, the next one asked ahead is served from what was shown (it
    # would write the next line too, but the line it asks for is known).
    again = await _complete(service, TYPING + "e", ahead=True)
    assert again.timing.reused and again.text == "ros(3)" and len(engine.calls) == 1


async def test_the_pause_shows_the_suggestion_asked_ahead_as_it_is_written():
    """The request at the pause does not wait for the end of a long suggestion asked
    ahead: its text comes as the engine writes it, less what was typed since."""
    # "eros((" written when the student pauses.
    engine, service, ahead = await _asked_ahead_while_typing("eros((3, 4), dtype=int)", 0.1, 0.25)
    req = CompleteRequest(prefix=TYPING + "er", suffix="", editor_id="e1")
    chunks = [chunk async for chunk in service.complete(req, "student")]
    texts = [chunk.text for chunk in chunks]
    assert texts[0] and "os((3, 4), dtype=int)".startswith(texts[0]) and len(texts[0]) < 20
    assert texts == sorted(texts, key=len)  # it grows
    final = chunks[-1]
    assert final.done and final.timing.reused and final.text == "os((3, 4), dtype=int)"
    assert final.timing.first_token_ms < final.timing.total_ms - 200  # shown early
    assert len(engine.calls) == 1 and (await ahead).text == "eros((3, 4), dtype=int)"


async def test_a_pause_that_is_left_does_not_stop_the_suggestion_it_followed():
    """The student types on while the pause's request follows the suggestion asked
    ahead: JupyterLab drops that request; the suggestion goes on for the next one."""
    engine, service, ahead = await _asked_ahead_while_typing("eros((3, 4), dtype=int)", 0.1, 0.15)
    left = CancelToken()
    req = CompleteRequest(prefix=TYPING + "e", suffix="", editor_id="e1")
    paused = asyncio.create_task(_last(service.complete(req, "student", left)))
    await asyncio.sleep(0.2)
    left.cancel("the student typed on")
    assert (await paused).stop_reason == "cancelled"
    typed_on = await _complete(service, TYPING + "ero")
    assert typed_on.timing.reused and typed_on.text == "s((3, 4), dtype=int)"
    assert (await ahead).stop_reason != "cancelled"
    assert len(engine.calls) == 1 and not engine.cancelled


async def test_the_newest_pause_wins_over_an_older_one_still_following():
    engine, service, ahead = await _asked_ahead_while_typing("eros(3)", 0.1, 0.15)
    older = asyncio.create_task(_complete(service, TYPING + "e"))  # follows it
    await asyncio.sleep(0.05)
    newer = await _complete(service, TYPING + "o")  # typed something else: asks the model
    assert newer.stop_reason != "cancelled" and not newer.timing.reused
    assert (await older).stop_reason == "cancelled"
    assert (await ahead).stop_reason == "cancelled"
    assert engine.cancelled[0] == "the student typed something else"


async def test_a_suggestion_asked_ahead_that_writes_nothing_is_not_waited_for_long():
    engine = SlowEngine("eros(3)", delay_s=1.0)  # stuck, as far as the pause can tell
    service = _service(engine)
    service.ahead.max_wait_s = 0.3
    ahead = asyncio.create_task(_complete(service, TYPING, ahead=True))
    await asyncio.sleep(0.05)
    paused = await _complete(service, TYPING + "e")
    assert not paused.timing.reused and len(engine.calls) == 2
    assert (await ahead).stop_reason == "cancelled" and engine.cancelled[0] == "no progress"


async def test_a_suggestion_asked_ahead_that_cannot_answer_is_stopped():
    """The student moved on (another place, or a block asked where a line was asked
    ahead): nobody will see it, the engine stops writing it."""
    engine, service, ahead = await _asked_ahead_while_typing("eros(3)", 0.1, 0.05)
    await _complete(service, "import numpy as np\ny = ")
    assert (await ahead).stop_reason == "cancelled"
    assert engine.cancelled == ["the student typed something else"]
