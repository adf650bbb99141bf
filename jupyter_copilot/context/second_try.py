"""When an empty completion is asked again, and what the second try must avoid.

On a line of its own (nothing but indentation before the cursor, nothing after it)
the student is waiting for a statement. Two first answers leave them nothing: the
model ends at once (it thinks the block is done), or it writes the line that already
follows (the post-processing drops a repeat of the suffix). Its second choice is
usually the statement that was missing: on HumanEval, both kinds of failure pass on
a second try that may neither end at once nor repeat the next line
(docs/benchmarks.md). The prompt is cached by then, so the second try costs only its
generated tokens, and it is made once at most.

Elsewhere (the end of a statement, mid-line) an empty answer is usually right: nothing
should be added, and no second try is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from ..schema import CompleteRequest


def line_to_avoid(req: CompleteRequest) -> Optional[str]:
    """What a second try must not write ("" if nothing: it must only not end at once),
    or None where an empty completion is the answer. The next line is given as the
    generation would write it: less the indentation already before the cursor."""
    before = req.prefix.rpartition("\n")[2]
    rest_of_line, _, after = req.suffix.partition("\n")
    if before.strip() or rest_of_line.strip():
        return None
    next_line = after.partition("\n")[0].rstrip()
    if next_line.startswith(before):
        return next_line[len(before) :]
    return next_line.lstrip()  # less indented than the cursor: the same statement deeper


def starts_to_avoid(stop: Sequence[str]) -> tuple[str, ...]:
    """What a second try may not start with: the stop strings that begin a line, less
    their newline (``# %%``, the next cell's marker). On a line of its own the newline
    is already there, before the cursor; `postprocess.stop_tokens` cuts such a start
    as it cuts the stop, and the second try must not give the same empty answer."""
    return tuple(text[1:] for text in stop if text.startswith("\n") and text[1:].strip())
