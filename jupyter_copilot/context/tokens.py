"""Cheap token estimates and budget-aware truncation."""

from __future__ import annotations

import math

# Code averages about 3.2 characters per token with the Qwen/StarCoder tokenizers
# (Python's 4-space indents are single tokens, which makes this conservative).
# A non-ASCII character may be a token on its own (accents in French comments, CJK).
CHARS_PER_TOKEN = 3.2


def estimate_tokens(text: str) -> int:
    """A conservative (rather too high than too low) token count, without a tokenizer."""
    if not text:
        return 0
    non_ascii = sum(1 for char in text if ord(char) > 127) if not text.isascii() else 0
    return math.ceil((len(text) - non_ascii) / CHARS_PER_TOKEN) + non_ascii


def cut_head_quantized(text: str, max_tokens: int) -> str:
    """Drop whole lines from the top of `text` until it fits in `max_tokens`.

    The cut moves in steps of a quarter of the allowance, not one line per
    keystroke: as a student types at the end of a very long cell, the kept text keeps
    the same first line for a while, so the engine's prompt cache stays valid.
    """
    if estimate_tokens(text) <= max_tokens:
        return text
    allowed_chars = max(int(max_tokens * CHARS_PER_TOKEN), 0)
    quantum = max(allowed_chars // 4, 16)
    excess = len(text) - allowed_chars
    cut_target = max(math.ceil(excess / quantum) * quantum, 1)
    while cut_target < len(text):
        newline = text.find("\n", cut_target - 1)
        cut = newline + 1 if newline != -1 else cut_target
        kept = text[cut:]
        if estimate_tokens(kept) <= max_tokens:
            return kept
        cut_target += quantum
    return ""


def elide_middle(text: str, max_tokens: int, comment: str) -> str:
    """Keep the head and the tail lines of an oversized cell, with a marker between.

    The head holds imports and definitions, the tail what the cell ends with; the
    result depends only on `text`, so it is the same on every request.
    """
    if estimate_tokens(text) <= max_tokens:
        return text
    lines = text.split("\n")
    half = max_tokens // 2
    head: list[str] = []
    used = 0
    for line in lines:
        cost = estimate_tokens(line + "\n")
        if used + cost > half:
            break
        head.append(line)
        used += cost
    tail: list[str] = []
    used = 0
    for line in reversed(lines[len(head) :]):
        cost = estimate_tokens(line + "\n")
        if used + cost > half - 8:  # room for the marker line
            break
        tail.append(line)
        used += cost
    tail.reverse()
    omitted = len(lines) - len(head) - len(tail)
    return "\n".join([*head, f"{comment}... ({omitted} lines omitted)", *tail])
