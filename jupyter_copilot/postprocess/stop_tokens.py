"""Cut at the first special/stop token; never show half of one.

First in the pipeline: nothing the model writes after ``<|endoftext|>`` or
``<|file_sep|>`` belongs to this completion, and a half-streamed token such as
``<|fim_`` must not reach the other filters, which would take it for code.

A stop that starts with a newline (``"\n# %%"``, the model starting the next cell)
also matches at the very start of a completion whose cursor is at the start of a
line: the newline is the cell's, before the cursor.
"""

from __future__ import annotations

from .base import FilterContext, Step

# At the very end of generation a dangling "<" is more likely code ("a <" cut by the
# token limit) than half a special token; two characters ("<|", "\n#") are not.
_MIN_PARTIAL_TO_DROP_AT_FINAL = 2


def _earliest_stop(text: str, tokens: tuple[str, ...]) -> int:
    positions = [text.find(token) for token in tokens if token]
    found = [position for position in positions if position != -1]
    return min(found) if found else -1


def _partial_token_length(text: str, tokens: tuple[str, ...]) -> int:
    """Length of the longest tail of `text` that is a proper start of a stop token."""
    longest = 0
    for token in tokens:
        for length in range(min(len(token) - 1, len(text)), longest, -1):
            if text.endswith(token[:length]):
                longest = length
                break
    return longest


def cut_at_stop_tokens(text: str, ctx: FilterContext, final: bool) -> Step:
    tokens = ctx.stop_tokens
    if not tokens:
        return Step(text)
    # Seen with the newline before the cursor, when there is one right there.
    before = "\n" if ctx.prefix.endswith("\n") else ""
    seen = before + text
    stop_at = _earliest_stop(seen, tokens)
    if stop_at != -1:
        return Step(text[: max(stop_at - len(before), 0)], stop=True)
    partial = _partial_token_length(seen, tokens)
    if partial and (not final or partial >= _MIN_PARTIAL_TO_DROP_AT_FINAL):
        return Step(text[: max(len(text) - partial, 0)])
    return Step(text)
