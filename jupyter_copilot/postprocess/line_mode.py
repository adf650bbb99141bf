"""Line mode: keep only the first line that has content.

Leading blank lines are allowed: at the end of ``import numpy as np`` the model may
rightly propose the next line (shown as ghost text below the cursor). The first
newline after some content ends the completion.
"""

from __future__ import annotations

from .base import FilterContext, Step


def first_line_only(text: str, ctx: FilterContext, final: bool) -> Step:
    if ctx.mode != "line":
        return Step(text)
    content_start = len(text) - len(text.lstrip())
    newline = text.find("\n", content_start)
    if content_start == len(text) or newline == -1:
        return Step(text)
    return Step(text[:newline], stop=True)
