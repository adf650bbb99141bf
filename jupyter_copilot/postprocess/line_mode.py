"""Line mode: keep only the first line that has content.

Leading blank lines are allowed: at the end of ``import numpy as np`` the model may
rightly propose the next line (shown as ghost text below the cursor). The first
newline after some content ends the completion. That newline is kept (the last filter,
`strip_trailing_whitespace`, removes it): it tells `balance_brackets` that the model
ended the line itself, so a line ending on an opener (``value_map = {``) starts a
multi-line literal rather than being cut short.

This is the only place the rule is written. Engines that stop generating by
themselves at the end of the first line (`GenerationParams.first_line`) ask
`FirstLineStop`, which applies the same rule to the stream piece by piece.
"""

from __future__ import annotations

from .base import FilterContext, Step


def first_line_end(text: str) -> int | None:
    """Offset of the newline that ends the first line with content, if there is one."""
    content_start = len(text) - len(text.lstrip())
    if content_start == len(text):
        return None
    newline = text.find("\n", content_start)
    return None if newline == -1 else newline


def first_line_only(text: str, ctx: FilterContext, final: bool) -> Step:
    if ctx.mode != "line":
        return Step(text)
    end = first_line_end(text)
    if end is None:
        return Step(text)
    return Step(text[: end + 1], stop=True)


class FirstLineStop:
    """`first_line_end` over a stream, at O(new text) per piece: call it with each
    generated piece; it answers True once the text so far has a complete first line."""

    def __init__(self) -> None:
        self._seen_content = False
        self.done = False

    def __call__(self, piece: str) -> bool:
        if self.done:
            return True
        if not self._seen_content:
            stripped = piece.lstrip()
            if not stripped:
                return False
            self._seen_content = True
            piece = stripped
        self.done = "\n" in piece
        return self.done
