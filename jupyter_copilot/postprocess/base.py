"""The filter interface shared by every post-processing step.

A filter is a pure function ``(text, ctx, final) -> Step``. The pipeline calls it on
the WHOLE raw model output so far, every time tokens stream in (``final=False``) and
once more when generation ends (``final=True``). Hence every filter must be:

- deterministic: same input, same output (no state between calls);
- prefix-stable: the decision about the start of the text must not depend on what
  comes later, so a cut made early stays the same cut when more tokens arrive. When a
  filter cannot decide yet (an incomplete trailing line, half of a special token), it
  holds that tail back while streaming and decides at ``final``.

``Step.stop`` tells the server that generation can be cancelled: whatever the model
writes next would be cut anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from .scan import INHERITED, CodeScanner, ScanState, scan_state


@dataclass(frozen=True)
class FilterContext:
    prefix: str  # cell text before the cursor
    suffix: str  # cell text after the cursor
    mode: Literal["line", "block"]
    language: str = "python"
    stop_tokens: tuple[str, ...] = ()
    max_lines: int = 12

    # Derived facts, computed once per request (a frozen dataclass still has a
    # __dict__, which is where cached_property stores them).

    @cached_property
    def cursor_line_prefix(self) -> str:
        """The text of the cursor's line before the cursor."""
        return self.prefix.rpartition("\n")[2]

    @cached_property
    def rest_of_line(self) -> str:
        """The text of the cursor's line after the cursor."""
        return self.suffix.partition("\n")[0]

    @cached_property
    def text_follows_cursor(self) -> bool:
        return bool(self.rest_of_line.strip())

    @cached_property
    def next_code_line(self) -> str:
        """The first non-blank line below the cursor's line, stripped ("" if none)."""
        for line in self.suffix.split("\n")[1:]:
            if line.strip():
                return line.strip()
        return ""

    @cached_property
    def header_above(self) -> str | None:
        """The block header the cursor's blank line sits under, if any."""
        return header_above_cursor(self.prefix, self.language)

    @cached_property
    def prefix_state(self) -> ScanState:
        """Open brackets / string at the cursor, from the cell prefix."""
        return scan_state(self.prefix)

    @cached_property
    def brackets_closed_by_rest_of_line(self) -> int:
        """How many of the innermost brackets open at the cursor the rest of its line
        closes (computed once per request, not once per token)."""
        closed = 0
        for event in CodeScanner(self.prefix_state).feed(self.rest_of_line):
            if event.kind == "close" and event.opener_index == INHERITED:
                closed += 1
        return closed


@dataclass(frozen=True)
class Step:
    text: str
    stop: bool = False  # True: generation can stop now, later tokens are useless


Filter = Callable[[str, FilterContext, bool], Step]


def indent_width(line: str) -> int:
    """Columns of leading whitespace (a tab counts as 4, as JupyterLab inserts 4)."""
    expanded = line.expandtabs(4)
    return len(expanded) - len(expanded.lstrip())


def line_starts(text: str) -> list[int]:
    """Offsets where each line of `text` starts (the first is 0)."""
    starts = [0]
    position = text.find("\n")
    while position != -1:
        starts.append(position + 1)
        position = text.find("\n", position + 1)
    return starts


def strip_comment(line: str) -> str:
    """`line` without a trailing ``# comment`` (only when no quote could hide the #)."""
    code, hash_sign, _ = line.partition("#")
    if hash_sign and "'" not in code and '"' not in code:
        return code.rstrip()
    return line.rstrip()


def opens_block(line: str, language: str = "python") -> bool:
    """A block header such as ``def f(x):``, ``for ...:``, ``if ...:  # why``.

    Brace languages (R, Julia's ``begin``-less forms aside, JavaScript) open with ``{``;
    in Python a trailing ``{`` is a literal, which the bracket scan already covers.
    """
    code = strip_comment(line)
    return code.endswith(":") or (language != "python" and code.endswith("{"))


def last_code_line(text: str) -> str:
    """The last line of `text` with content ("" if none), without splitting it all."""
    end = len(text)
    while end > 0:
        start = text.rfind("\n", 0, end) + 1
        if text[start:end].strip():
            return text[start:end]
        end = start - 1
    return ""


def first_code_line(text: str) -> str | None:
    """The first line of `text` with content (None if none)."""
    start = 0
    while start <= len(text):
        end = text.find("\n", start)
        end = len(text) if end == -1 else end
        if text[start:end].strip():
            return text[start:end]
        start = end + 1
    return None


def header_above_cursor(prefix: str, language: str = "python") -> str | None:
    """When the cursor's line is blank: the block header (``def f(x):``) that is the
    last code line above it, if that line opens a block. The one definition of "the
    cursor is where a block's body goes", shared by the mode decision and the
    block-mode cut."""
    cursor_line = prefix.rpartition("\n")[2]
    if cursor_line.strip():
        return None
    header = last_code_line(prefix[: len(prefix) - len(cursor_line)])
    return header if header and opens_block(header, language) else None
