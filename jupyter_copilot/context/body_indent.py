"""The indentation a completion must start with on a blank line at column 0.

A student clicks on an empty line under a header (``for k in d:``) or under a
definition that has only its docstring so far: JupyterLab leaves the cursor at
column 0, but the body goes deeper. The model, seeing a cursor at column 0, sometimes
writes an unindented statement or starts the next cell (the raw model, asked in a
plain file, indents). So the engine is made to start with the body's indentation
(the same logits mask as token healing, but the text is kept: the cursor is at
column 0), and the model goes on from there, deeper if it likes. Under a header, the
body's indentation is the header's plus the code's own step (2 spaces in a file
written so), JupyterLab's 4 when the code above shows none.

Not from the line below: its indentation binds only if the completion opens no
bracket (``value_map = {`` above the dict's lines at 8), which is not known before.
Only where the cursor's line is blank up to the cursor and empty after it, outside
brackets and strings, and in Python (whose indentation is syntax). "Under a
definition with only its docstring" is the mode decision's own rule
(`syntax.docstring_only_body_indent`): the cursor is where the body should start.
"""

from __future__ import annotations

from ..postprocess.base import FilterContext, indent_width, last_code_line, opens_block
from .syntax import docstring_only_body_indent, is_python

INDENT_UNIT = "    "  # JupyterLab's default, when the code above shows no other
# How far up to look for the code's own indentation step (the nearest header and
# its body say it best; the prefix is bounded anyway).
STEP_LOOKBACK_LINES = 200


def _leading_space(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def indent_step(code: str) -> str:
    """The indentation the code itself adds under a header: from the nearest header
    above whose next code line is deeper (``if x:`` at 4, its body at 6: two
    spaces), else `INDENT_UNIT`. Its whitespace as written (spaces or a tab)."""
    below = ""
    for line in reversed(code.split("\n")[-STEP_LOOKBACK_LINES:]):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if below and opens_block(line) and indent_width(below) > indent_width(line):
            here, deeper = _leading_space(line), _leading_space(below)
            if deeper.startswith(here):
                return deeper[len(here) :]
        below = line
    return INDENT_UNIT


def required_indent(ctx: FilterContext) -> str:
    """The whitespace the completion must start with ('' for no constraint)."""
    cursor_line = ctx.cursor_line_prefix
    if not is_python(ctx.language) or cursor_line.strip() or ctx.text_follows_cursor:
        return ""
    if ctx.prefix_state.inside_expression:
        return ""
    if ctx.header_above is not None:
        header_line_start = ctx.prefix.rstrip().rfind("\n") + 1
        needed = _leading_space(ctx.header_above) + indent_step(ctx.prefix[:header_line_start])
    elif docstring_only_body_indent(ctx.prefix) is not None:
        needed = _leading_space(last_code_line(ctx.prefix))  # the docstring's own
    else:
        return ""
    if indent_width(needed) <= indent_width(cursor_line) or not needed.startswith(cursor_line):
        return ""
    return needed[len(cursor_line) :]
