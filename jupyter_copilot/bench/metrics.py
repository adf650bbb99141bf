"""Scores and summaries: exact match, edit similarity, percentiles."""

from __future__ import annotations

import math
from collections.abc import Sequence


def first_code_line(text: str) -> str:
    """The first line that has content, without surrounding whitespace ("" if none).

    Both sides of an exact match are compared this way: the product strips trailing
    blanks and a ghost text may start on the next line; indentation is the editor's.
    """
    for line in text.split("\n"):
        if line.strip():
            return line.strip()
    return ""


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions), O(len(a) * len(b))."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def edit_similarity(predicted: str, expected: str) -> float:
    """1 - edit distance / length of the longer text: 1.0 identical, 0.0 nothing shared.

    Whitespace at both ends is ignored (the same convention as `first_code_line`).
    """
    predicted, expected = predicted.strip(), expected.strip()
    longest = max(len(predicted), len(expected))
    if longest == 0:
        return 1.0
    return 1.0 - levenshtein(predicted, expected) / longest


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), linear between the closest ranks; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(values_ms: Sequence[float]) -> dict:
    """n, p50, p95 and mean of latencies in milliseconds (rounded to 0.1 ms)."""

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    return {
        "n": len(values_ms),
        "p50_ms": rounded(percentile(values_ms, 50)),
        "p95_ms": rounded(percentile(values_ms, 95)),
        "mean_ms": rounded(sum(values_ms) / len(values_ms)) if values_ms else None,
    }


def mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None
