"""Text follows the cursor on its line: the completion must end on this line.

``print(|)`` or ``x = [|]``: whatever the model writes after a newline would be
inserted before the ``)`` and break the line, so the first newline ends the
completion, whatever the mode (a client may ask for "block" mid-line).
"""

from __future__ import annotations

from .base import FilterContext, Step


def single_line_before_suffix(text: str, ctx: FilterContext, final: bool) -> Step:
    if not ctx.text_follows_cursor:
        return Step(text)
    newline = text.find("\n")
    if newline == -1:
        return Step(text)
    return Step(text[:newline], stop=True)
