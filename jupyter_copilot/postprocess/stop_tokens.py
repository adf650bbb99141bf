"""Cut at the first special/stop token; never show half of one.

First in the pipeline: nothing the model writes after ``<|endoftext|>`` or
``<|file_sep|>`` belongs to this completion, and a half-streamed token such as
``<|fim_`` must not reach the other filters, which would take it for code.
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
    stop_at = _earliest_stop(text, tokens)
    if stop_at != -1:
        return Step(text[:stop_at], stop=True)
    partial = _partial_token_length(text, tokens)
    if partial and (not final or partial >= _MIN_PARTIAL_TO_DROP_AT_FINAL):
        return Step(text[: len(text) - partial])
    return Step(text)
