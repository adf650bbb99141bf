"""Line or block completion, from the code around the cursor."""

from __future__ import annotations

from typing import Literal

from ..postprocess.base import first_code_line, header_above_cursor, indent_width, opens_block
from ..postprocess.scan import scan_state
from ..schema import CompleteRequest
from .syntax import docstring_only_body_indent, is_python

Mode = Literal["line", "block"]


def decide_request_mode(req: CompleteRequest) -> CompleteRequest:
    """The request with its mode decided: the one it asks for, else `decide_mode` on
    its text. The one place a request's mode is decided (`CompletionService.decide`
    calls it once per request); what comes after reads ``req.mode``."""
    if req.mode is not None:
        return req
    return req.model_copy(update={"mode": decide_mode(req.prefix, req.suffix, req.language)})


# A suggestion asked ahead at the end of the line being typed also writes the line
# after it (issue 14, item 4): when the student finishes the line as it says and
# presses Enter, the request on the new line is answered from memory (reuse.py)
# instead of waiting for the model. Two lines, not a block: it is asked at every
# typing pause, and most of it is thrown away when the student types otherwise.
AHEAD_LINES = 2


def ahead_through_next_line(req: CompleteRequest) -> CompleteRequest:
    """A line request asked ahead at the end of a top-level line with code, as a
    block of two lines; every other request as it is. Its first line is what the line
    request would have written (greedy decoding, same prompt), and a line request is
    answered with what line mode shows of a block (`reuse.as_requested`).

    Only at the top level: in an indented body, the next line may leave the body,
    which block mode cuts (`postprocess.block_dedent`) and line mode shows, so a
    pause at the end of a finished line would lose its answer. Not when the student
    asks for one line at most (`max_lines` 1)."""
    if req.mode != "line" or (req.max_lines or AHEAD_LINES) < AHEAD_LINES:
        return req
    if not _ahead_at_a_line_end(req):
        return req
    return req.model_copy(update={"mode": "block", "max_lines": AHEAD_LINES})


def writes_next_line(req: CompleteRequest) -> bool:
    """Whether `req` is one that `ahead_through_next_line` turned into two lines."""
    return req.mode == "block" and req.max_lines == AHEAD_LINES and _ahead_at_a_line_end(req)


def _ahead_at_a_line_end(req: CompleteRequest) -> bool:
    """Asked ahead at the end of a top-level line with code."""
    line = req.prefix.rpartition("\n")[2]
    return (req.ahead and bool(line.strip()) and not line[0].isspace()
            and not req.suffix.partition("\n")[0].strip())  # fmt: skip


def _body_is_empty(below: str, header_indent: int) -> bool:
    """Nothing indented under the header follows the cursor."""
    following = first_code_line(below)
    return following is None or indent_width(following) <= header_indent


def decide_mode(prefix: str, suffix: str, language: str = "python") -> Mode:
    """Block where a whole body is expected; line everywhere else.

    - block: at an empty body (after ``def f(x):``, at the end of such a header, or
      after the docstring of a function whose body is otherwise empty), or on a blank
      line with nothing else in the cell after it;
    - line: text follows the cursor on its line, the cursor is inside a string or a
      comment, mid-line or at the end of an ordinary line, or on a blank line between
      existing statements.
    """
    rest_of_line, _, below = suffix.partition("\n")
    if rest_of_line.strip():
        return "line"
    state = scan_state(prefix)
    if state.quote or state.in_comment:
        return "line"  # prose, not code: finish the sentence
    cursor_line = prefix.rpartition("\n")[2]
    if cursor_line.strip():
        if opens_block(cursor_line, language) and _body_is_empty(below, indent_width(cursor_line)):
            return "block"
        return "line"
    if not suffix.strip():
        return "block"
    cursor_indent = indent_width(cursor_line)
    header = header_above_cursor(prefix, language)
    if header is not None and _body_is_empty(below, indent_width(header)):
        return "block"
    definition_indent = docstring_only_body_indent(prefix) if is_python(language) else None
    if (
        definition_indent is not None
        and cursor_indent > definition_indent
        and _body_is_empty(below, definition_indent)
    ):
        return "block"
    return "line"
