"""At most ``ctx.max_lines`` lines: a suggestion is read at a glance, not reviewed.

Also bounds a block completion at top level, where no dedent ever ends it. The newline
that ends the last line kept stays (as in `first_line_only`): that line is complete.
"""

from __future__ import annotations

from .base import FilterContext, Step


def limit_lines(text: str, ctx: FilterContext, final: bool) -> Step:
    position = -1
    for _ in range(max(ctx.max_lines, 1)):
        position = text.find("\n", position + 1)
        if position == -1:
            return Step(text)
    return Step(text[: position + 1], stop=True)
