"""Which parts of the KV cache a new prompt can keep: the plan, without the model.

The engine caches the tokens of the last prompt. The next prompt shares a common
prefix with it, and often more: when the window of earlier cells slides (old cells
leave the front), or when the block of extra definitions in front of the current
cell disappears as the student moves to the next cell, long runs of the cached
tokens reappear further left in the new prompt. Those runs need not be evaluated
again: their KV entries are moved to their new positions (for a RoPE model the keys
are rotated by the shift, which llama.cpp does) and only what lies after them is
evaluated.

A moved run is not bit-identical to evaluating it afresh: its tokens attended to
the tokens that were before them in the old prompt, some of which are gone. Runs
shorter than `min_tokens` are therefore not worth that approximation (and moving
them would gain little); tests/test_kv_reuse.py checks that greedy completions stay
the same on real prompts.

The plan only drops cached tokens (never inserts new ones between two kept runs):
llama.cpp requires each sequence's new tokens to follow its last cached position,
so a gap between two kept runs could not be evaluated in place. Evaluation
resumes after the last kept run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Move:
    """Cached tokens [cache_start, cache_start + length) become prompt tokens
    [prompt_start, prompt_start + length); the cached tokens before `cache_start`
    and after the previous move are dropped."""

    cache_start: int
    prompt_start: int
    length: int

    @property
    def shift(self) -> int:
        return self.prompt_start - self.cache_start


@dataclass(frozen=True)
class ReusePlan:
    prefix: int  # the common prefix, kept in place
    moves: tuple[Move, ...]  # in order, after the prefix

    @property
    def reused(self) -> int:
        """Prompt tokens the cache already holds after the plan: evaluation resumes here."""
        return self.moves[-1].prompt_start + self.moves[-1].length if self.moves else self.prefix

    @property
    def moved(self) -> int:
        return sum(move.length for move in self.moves)


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _run_length(cached: Sequence[int], c: int, tokens: Sequence[int], p: int, end: int) -> int:
    """How many tokens match from cached[c] and tokens[p], the latter before `end`."""
    n = 0
    limit = min(len(cached) - c, end - p)
    while n < limit and cached[c + n] == tokens[p + n]:
        n += 1
    return n


def plan_reuse(
    cached: Sequence[int], tokens: Sequence[int], *, min_tokens: int, keep_last: int = 1
) -> ReusePlan:
    """What of `cached` the prompt `tokens` can keep.

    `keep_last` prompt tokens at the end are never taken from the cache: generation
    evaluates at least the last one to get fresh logits. `min_tokens` <= 0 keeps only
    the common prefix (no moves).
    """
    limit = max(len(tokens) - keep_last, 0)
    prefix = min(common_prefix_len(cached, tokens), limit)
    if min_tokens <= 0:
        return ReusePlan(prefix, ())
    moves: list[Move] = []
    c = p = prefix
    while c < len(cached) and p < limit:
        # Cheap test first: most cache positions do not even start a match.
        run = _run_length(cached, c, tokens, p, limit) if cached[c] == tokens[p] else 0
        if run >= min_tokens:
            moves.append(Move(c, p, run))
            c += run
            p += run
        else:
            c += 1
    return ReusePlan(prefix, tuple(moves))
