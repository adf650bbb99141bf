"""A tiny lexical scanner for Python-like code: brackets, strings, comments.

Not a filter. Several filters (and `context.decide_mode`) need to know, at a point of
the text, which brackets are open and whether we are inside a string, without a full
parse: model output is usually an incomplete fragment that a parser would reject.
The scanner is resumable, so the state at the cursor is computed once from the cell
prefix and then continued over the completion.

Good enough for Python, R and Julia (``#`` comments, ``'``/``"`` strings); for other
languages it only errs on the side of "no opinion".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

OPENERS = "([{"
CLOSERS = ")]}"
MATCHING_OPENER = {")": "(", "]": "[", "}": "{"}

# Position of a bracket that was opened before the scanned text (in the cell prefix).
INHERITED = -1

EventKind = Literal["open", "close", "unmatched", "newline"]


@dataclass(frozen=True)
class ScanState:
    """Where a scan stopped: enough to resume it on the text that follows."""

    # Open brackets, innermost last, as (char, position in the text that opened it).
    brackets: tuple[tuple[str, int], ...] = ()
    # The delimiter of the string we are in ('"', "'", '\"\"\"' or "'''"), or "".
    quote: str = ""
    in_comment: bool = False
    # The previous line ended with a backslash: the current line continues it.
    continued: bool = False

    @property
    def inside_expression(self) -> bool:
        """True when a line starting here is not a new statement."""
        return bool(self.brackets or self.quote or self.continued)


@dataclass(frozen=True)
class ScanEvent:
    kind: EventKind
    index: int
    char: str
    # For "close": where the matching opener was (INHERITED if before the text).
    opener_index: int = INHERITED


class CodeScanner:
    """Feed text, get bracket and newline events; `state` tells where we are."""

    def __init__(self, state: ScanState | None = None):
        start = state or ScanState()
        # The brackets open before the text, kept as given (not copied: the filters
        # start a scanner per token, and a prefix may hold thousands of open
        # brackets); `_depth` of them are still open. Those opened in the text: `_own`.
        self._inherited = start.brackets
        self._depth = len(start.brackets)
        self._own: list[tuple[str, int]] = []
        self._quote = start.quote
        self._in_comment = start.in_comment
        self._continued = start.continued

    @property
    def state(self) -> ScanState:
        inherited = tuple((char, INHERITED) for char, _ in self._inherited[: self._depth])
        return ScanState(
            inherited + tuple(self._own), self._quote, self._in_comment, self._continued
        )

    def _innermost(self) -> str:
        if self._own:
            return self._own[-1][0]
        return self._inherited[self._depth - 1][0] if self._depth else ""

    def _close(self) -> int:
        """Pop the innermost bracket: where it was opened (INHERITED if before the text)."""
        if self._own:
            return self._own.pop()[1]
        self._depth -= 1
        return INHERITED

    def feed(self, text: str) -> Iterator[ScanEvent]:
        """Scan `text`. Unmatched closers are reported and leave the stack untouched."""
        i, n = 0, len(text)
        while i < n:
            char = text[i]
            if char == "\n":
                if len(self._quote) == 1:
                    self._quote = ""  # a one-quote string cannot span lines (unless escaped)
                self._in_comment = False
                yield ScanEvent("newline", i, char)
                i += 1
                continue
            if self._in_comment:
                i += 1
                continue
            if self._quote:
                if char == "\\":
                    # An escaped char, even a quote or a newline (which continues the
                    # string; consumers still need to see that a line starts there).
                    if text.startswith("\n", i + 1):
                        yield ScanEvent("newline", i + 1, "\n")
                    i += 2
                    continue
                if text.startswith(self._quote, i):
                    i += len(self._quote)
                    self._quote = ""
                    continue
                i += 1
                continue
            # In code.
            if char == "\\" and text.startswith("\n", i + 1):
                self._continued = True
                yield ScanEvent("newline", i + 1, "\n")
                i += 2
                continue
            if not char.isspace():
                self._continued = False
            if char == "#":
                self._in_comment = True
            elif char in "'\"":
                triple = char * 3
                self._quote = triple if text.startswith(triple, i) else char
                i += len(self._quote)
                continue
            elif char in OPENERS:
                self._own.append((char, i))
                yield ScanEvent("open", i, char)
            elif char in CLOSERS:
                if self._innermost() == MATCHING_OPENER[char]:
                    yield ScanEvent("close", i, char, self._close())
                else:
                    yield ScanEvent("unmatched", i, char)
            i += 1


def scan_state(text: str, state: ScanState | None = None) -> ScanState:
    """The state after scanning all of `text` (e.g. the cell prefix, for the cursor)."""
    scanner = CodeScanner(state)
    for _ in scanner.feed(text):
        pass
    return scanner.state
