"""A blank line at column 0 where Python needs an indented statement: the engine is
made to start with that indentation (`context/body_indent.py`)."""

from __future__ import annotations

from test_second_try import TwoAnswerEngine, _final, _req, _service

from jupyter_copilot.context.body_indent import indent_step, required_indent
from jupyter_copilot.postprocess.base import FilterContext


def indent(prefix: str, suffix: str = "", language: str = "python") -> str:
    return required_indent(FilterContext(prefix=prefix, suffix=suffix, mode="line",
                                         language=language))


DOCSTRING = 'def remove_duplicates(numbers):\n    """Keep the numbers seen once."""\n'


def test_the_body_of_a_definition_with_only_its_docstring():
    assert indent(DOCSTRING, "\n") == "    "
    assert indent(DOCSTRING, "\n    c = Counter(numbers)\n    return c") == "    "


def test_the_body_of_a_header():
    assert indent("for k in d:\n", "\n") == "    "
    assert indent("    for k in d:\n", "\n") == "        "
    assert indent("for k in d:\n  ", "\n") == "  "  # less what the cursor already has


def test_the_codes_own_indentation_step():
    # Written with 2-space bodies: the body under the next header goes 2 deeper.
    prefix = "def f(arr):\n    if not arr:\n      return True\n    for i in arr:\n"
    assert indent(prefix, "\n        return False") == "      "
    assert indent_step("if x:\n\tpass\n") == "\t"
    assert indent_step("x = 1\n") == "    "  # nothing to go by: JupyterLab's 4
    # A header's own body is not written yet: the step comes from above it.
    assert indent("while True:\n  x = 1\n  if x:\n", "\n") == "    "


def test_not_from_the_line_below():
    # The dict's lines at 8 say nothing of the line that opens it.
    assert indent("def to_numbers(words):\n    x = 1\n", "\n        'one': 1,\n    }") == ""
    # The file's own body indentation (6 spaces here) is kept under a docstring.
    assert indent('def f(arr):\n      """Doc."""\n', "\n      return arr") == "      "


def test_no_constraint_elsewhere():
    assert indent("x = 1\n", "\ny = 2") == ""  # top level
    assert indent("def f():\n    return 1\n", "\n") == ""  # after a body: anything goes
    assert indent("print(x)", "\n    y") == ""  # after code on the line
    assert indent("for k in d:\n", "x\n") == ""  # code after the cursor
    assert indent("data = [\n", "\n    1,\n]") == ""  # inside brackets: free
    assert indent("for k in d:\n", "\n", language="r") == ""
    assert indent("for k in d:\n        ", "\n") == ""  # already indented enough


def _spied(first: str, heals: bool) -> tuple[TwoAnswerEngine, list[str]]:
    """An engine that records the start it is asked to spell."""
    engine, seen = TwoAnswerEngine(first=first, second=""), []
    complete = engine.complete

    def spy(prompt, params, cancel, stats=None):
        seen.append(params.heal)
        return complete(prompt, params, cancel, stats)

    engine.complete, engine.heals_tokens = spy, heals
    return engine, seen


async def test_the_engine_is_asked_to_start_with_the_indentation():
    engine, seen = _spied("    import collections\n", heals=True)
    service, _ = _service(engine)
    final = await _final(service, _req(DOCSTRING, "\n    c = Counter(numbers)"))
    assert seen == ["    "]
    assert final.text == "    import collections"  # the indentation is kept
    # An engine that cannot force a start is asked as before.
    engine, seen = _spied("    x = 1\n", heals=False)
    service, _ = _service(engine)
    assert (await _final(service, _req(DOCSTRING, "\n"))).text == "    x = 1"
    assert seen == [""]
