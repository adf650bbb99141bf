"""Block mode: stop where the code leaves the cursor's block.

The floor is the indentation of the block the cursor is in:
- cursor on a blank line: that line's indentation (``def f():\\n    |`` -> 4);
- cursor at the end of a header (``def f(x):|``) or on a blank line under one that is
  not indented yet: anything deeper than the header;
- cursor on any other line: that line's indentation;
- cursor at the start of a blank line: at least the indentation of the completion's
  first line (under a docstring, ``    if n <= 1:`` continues the function body, so the
  body ends at the first line indented less than 4, not after the ``if``).
A completion line less indented than the floor starts the next statement of an outer
block (the next top-level ``print(...)`` after a function body): cut before it.

At top level (floor 0) nothing is ever less indented, so one more rule: when the
completion itself opens a block (``def``/``for``/``class`` ...), it ends where a line
comes back to that block's indentation, except ``else``/``elif``/``except``/
``finally`` continuing it. Lines inside brackets, strings or after a backslash are
continuation lines and never end a block.

While streaming, a trailing line with no content yet is held back (its indentation is
not known); a line with content is judged as soon as its first character arrives.
"""

from __future__ import annotations

from .base import FilterContext, Step, indent_width, line_starts, opens_block
from .scan import CodeScanner

_CONTINUATION_KEYWORDS = ("else", "elif", "except", "finally", "case")


def _is_clause_continuation(line: str) -> bool:
    word = line.lstrip().split(" ", 1)[0].rstrip(":")
    return word in _CONTINUATION_KEYWORDS


def _block_floor(ctx: FilterContext) -> int:
    """Lines must be indented at least this much to stay in the cursor's block."""
    cursor_line = ctx.cursor_line_prefix
    if cursor_line.strip():
        if opens_block(cursor_line, ctx.language):
            return indent_width(cursor_line) + 1
        return indent_width(cursor_line)
    floor = indent_width(cursor_line)
    header = ctx.header_above
    if header is not None and floor <= indent_width(header):
        return indent_width(header) + 1
    return floor


def _continuation_line_starts(text: str, ctx: FilterContext) -> set[int]:
    """Offsets of the lines of `text` that start inside brackets/strings/backslash."""
    scanner = CodeScanner(ctx.prefix_state)
    inside = set()
    for event in scanner.feed(text):
        if event.kind == "newline" and scanner.state.inside_expression:
            inside.add(event.index + 1)
    return inside


def stop_at_dedent(text: str, ctx: FilterContext, final: bool) -> Step:
    if ctx.mode != "block":
        return Step(text)
    floor = _block_floor(ctx)
    continuation = _continuation_line_starts(text, ctx)
    # Top level only: the completion's first statement, and whether it is a block header
    # (its last physical line ends with ":"; a header may span lines inside brackets).
    first_indent: int | None = None
    first_is_header = False
    first_done = False
    first_content = True
    starts = line_starts(text)
    for number, start in enumerate(starts):
        is_last = number == len(starts) - 1
        end = len(text) if is_last else starts[number + 1] - 1
        line = text[start:end]
        if number == 0:
            line = ctx.cursor_line_prefix + line  # the cursor's line, as it will read
        if not line.strip():
            if is_last and not final:
                return Step(text[:start])  # indentation unknown yet
            continue
        if number > 0 and start in continuation:
            if first_indent is not None and not first_done:
                first_is_header = opens_block(line, ctx.language)
            continue
        width = indent_width(line)
        if first_content and not ctx.cursor_line_prefix.strip() and width > floor:
            # Cursor at the start of a blank line (e.g. under a docstring): the model's
            # first line says which block it continues; stay in that block.
            floor = width
        first_content = False
        if number > 0 and width < floor:
            return Step(text[:start], stop=True)
        if floor > 0:
            continue
        if first_indent is None:
            if not line.lstrip().startswith(("@", "#")):
                first_indent = width
                first_is_header = opens_block(line, ctx.language)
            continue
        first_done = True
        if first_is_header and width <= first_indent and not _is_clause_continuation(line):
            return Step(text[:start], stop=True)
    return Step(text)
