"""Do not repeat what already follows the cursor on its line.

``for i in |:`` completed with ``range(10):`` would double the ``:``;
``plt.xlabel("|")`` completed with ``time (s)"`` would double the quote. (Brackets
closed by the rest of the line are already cut by `stop_at_suffix_closer`; this
filter catches the other punctuation and whole copies of the rest of the line.)
The end of the completion that equals the start of the rest of the line is dropped
when either
- it is the whole rest of the line (``x = f(|) + 1`` completed with ``a) + 1``), or
- it is made only of closing punctuation (``)``, ``])``, ``":``),
and, in both cases, every bracket it closes was opened before the completion: in
``print(|)`` completed with ``len(a)``, the ``)`` closes ``len(`` and must stay.

While streaming, a tail that is a proper start of the rest of the line is held back:
it may still grow into a duplicate.
"""

from __future__ import annotations

from .base import FilterContext, Step
from .scan import INHERITED, CodeScanner

_CLOSING_PUNCTUATION = set(")]}'\":;,")


def _closes_only_inherited_brackets(text: str, cut: int, ctx: FilterContext) -> bool:
    for event in CodeScanner(ctx.prefix_state).feed(text):
        if event.index >= cut and event.kind == "close" and event.opener_index != INHERITED:
            return False
    return True


def drop_suffix_overlap(text: str, ctx: FilterContext, final: bool) -> Step:
    rest = ctx.rest_of_line.strip()
    if not rest or not text:
        return Step(text)
    body = text.rstrip()
    for length in range(min(len(rest), len(body)), 0, -1):
        tail = rest[:length]
        if not body.endswith(tail):
            continue
        cut = len(body) - length
        if not _closes_only_inherited_brackets(body, cut, ctx):
            continue
        whole = length == len(rest)
        if whole or set(tail) <= _CLOSING_PUNCTUATION:
            return Step(body[:cut])
        if not final:
            return Step(body[:cut])  # may become the whole rest of the line
    return Step(text)
