"""Balance brackets against the code before the cursor.

- A closer that matches no open bracket (neither in the cell before the cursor nor in
  the completion) would be a syntax error: dropped. The typical case is the model
  closing a call twice, or closing a ``[`` with a ``)``.
- At final, a completion that ends on an opener it never closed (``np.array(``, cut
  by the token limit) loses that opener, unless it starts a bracket that spans
  lines: the model ended the line right after it (the text ends with that newline,
  kept by the line cuts), or the cursor is at the end of its line and the lines
  below close it (``value_map = {`` above ``'one': 1,`` ... ``}``). A block
  completion whose last statement is left inside brackets it opened on a later line
  (cut by the line or token limit in the middle of a dict literal) loses that
  unfinished statement.

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


def _ends_line(text: str) -> bool:
    """The text ends with a newline (then maybe indentation): its last line is complete."""
    return text.rstrip(" \t").endswith("\n")


def _closed_below(text: str, ctx: FilterContext) -> bool:
    """The code after the cursor's line closes the bracket that ends `text`."""
    if ctx.text_follows_cursor:
        return False  # ``f(|)``: the ``)`` after the cursor is the line's, not the opener's
    scanner = CodeScanner(ctx.prefix_state)
    for _ in scanner.feed(text):
        pass
    opener = len(text) - 1
    for event in scanner.feed(ctx.suffix):
        if event.kind == "close" and event.opener_index == opener:
            return True
    return False


def _trim_unfinished_end(text: str, ctx: FilterContext) -> str:
    line_ended = _ends_line(text)
    while True:
        text = text.rstrip()
        unclosed = _unclosed_openers(text, ctx)
        if not unclosed:
            return text
        outermost = unclosed[0]
        statement_start = text.rfind("\n", 0, outermost) + 1
        if text[:statement_start].strip():  # not the first statement (blank lines aside)
            return text[:statement_start].rstrip()
        if text[-1] in OPENERS and unclosed[-1] == len(text) - 1:
            if line_ended or _closed_below(text, ctx):
                return text  # it opens a bracket that spans lines
            text = text[:-1]
            continue
        return text


def balance_brackets(text: str, ctx: FilterContext, final: bool) -> Step:
    text = _drop_unmatched_closers(text, ctx)
    if final:
        text = _trim_unfinished_end(text, ctx)
    return Step(text)
