"""An empty or whitespace-only suggestion is no suggestion."""

from __future__ import annotations

from .base import FilterContext, Step


def drop_blank(text: str, ctx: FilterContext, final: bool) -> Step:
    return Step(text if text.strip() else "")
