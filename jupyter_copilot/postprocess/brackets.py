"""Balance brackets against the code before the cursor.

- A closer that matches no open bracket (neither in the cell before the cursor nor in
  the completion) would be a syntax error: dropped. The typical case is the model
  closing a call twice, or closing a ``[`` with a ``)``.
- At final, a completion that ends on an opener it never closed (``np.array(``, cut
  by the token limit) loses that opener; and a block completion whose last statement
  is left inside brackets it opened on a later line (cut by the line or token limit
  in the middle of a dict literal) loses that unfinished statement.

Closers that close brackets of the prefix are kept: when the suffix already holds
them, `drop_suffix_overlap` (later in the pipeline) removes the duplicate.
"""

from __future__ import annotations

from .base import FilterContext, Step
from .scan import INHERITED, OPENERS, CodeScanner


def _drop_unmatched_closers(text: str, ctx: FilterContext) -> str:
    kept, last = [], 0
    for event in CodeScanner(ctx.prefix_state).feed(text):
        if event.kind == "unmatched":
            kept.append(text[last : event.index])
            last = event.index + 1
    kept.append(text[last:])
    return "".join(kept)


def _unclosed_openers(text: str, ctx: FilterContext) -> list[int]:
    """Positions in `text` of the brackets it opens and leaves open."""
    scanner = CodeScanner(ctx.prefix_state)
    for _ in scanner.feed(text):
        pass
    return [position for _, position in scanner.state.brackets if position != INHERITED]


def _trim_unfinished_end(text: str, ctx: FilterContext) -> str:
    while True:
        text = text.rstrip()
        unclosed = _unclosed_openers(text, ctx)
        if not unclosed:
            return text
        outermost = unclosed[0]
        statement_start = text.rfind("\n", 0, outermost) + 1
        if statement_start > 0:
            return text[:statement_start].rstrip()
        if text[-1] in OPENERS and unclosed[-1] == len(text) - 1:
            text = text[:-1]
            continue
        return text


def balance_brackets(text: str, ctx: FilterContext, final: bool) -> Step:
    text = _drop_unmatched_closers(text, ctx)
    if final:
        text = _trim_unfinished_end(text, ctx)
    return Step(text)
