"""Stop where the model starts re-writing the code that follows the cursor.

FIM models often "complete" by copying the next existing line (or the rest of the
cell) after their own code. A completion line equal to the first non-blank line below
the cursor ends the completion just before it. Lines are compared stripped, so a
re-indented copy counts too.

While streaming, a trailing partial line that is still a prefix of that next line is
held back: it may turn into a copy, and taking text back later would make the ghost
text flicker.
"""

from __future__ import annotations

from .base import FilterContext, Step, line_starts


def stop_at_repeated_suffix(text: str, ctx: FilterContext, final: bool) -> Step:
    next_line = ctx.next_code_line
    if not next_line:
        return Step(text)
    starts = line_starts(text)
    for number, start in enumerate(starts):
        # The first line continues the cursor's line: it can only be a copy of a
        # whole line when the cursor's line was blank so far.
        if number == 0 and ctx.cursor_line_prefix.strip():
            continue
        is_last = number == len(starts) - 1
        end = len(text) if is_last else starts[number + 1] - 1
        line = text[start:end].strip()
        if not line:
            continue
        if (not is_last or final) and line == next_line:
            return Step(text[:start], stop=True)
        if is_last and not final and next_line.startswith(line):
            return Step(text[:start])
    return Step(text)
