"""Stop where the completion closes a bracket that the rest of the line closes.

``df.groupby(|)``: the ``)`` after the cursor closes ``groupby(``. If the model
writes ``'species').mean()``, it has closed that call itself and gone on past the
``)`` already there: kept, the line would read ``df.groupby('species').mean())``.
The completion ends just before such a closer (``'species'``), and generation stops.

Only brackets opened before the cursor and closed after it on the same line count;
the completion's own brackets (``len(words)``) are its business.
"""

from __future__ import annotations

from .base import FilterContext, Step
from .scan import INHERITED, CodeScanner


def stop_at_suffix_closer(text: str, ctx: FilterContext, final: bool) -> Step:
    if not ctx.text_follows_cursor:
        return Step(text)
    reserved = ctx.brackets_closed_by_rest_of_line
    if not reserved:
        return Step(text)
    # The brackets the rest of the line closes are the innermost ones at the cursor,
    # so the first inherited opener the completion closes is one of them.
    for event in CodeScanner(ctx.prefix_state).feed(text):
        if event.kind == "close" and event.opener_index == INHERITED:
            return Step(text[: event.index], stop=True)
    return Step(text)
