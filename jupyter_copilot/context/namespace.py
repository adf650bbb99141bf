"""The kernel's live names as a block of the prompt (issue 14, item 1).

The frontend sends what ``kernel_probe`` found in the kernel after the last
execution: one line per name (a DataFrame's columns and dtypes, a dict's keys, a
function's parameters...). It goes between the stable earlier cells and the current
cell, as a comment cell::

    # %%
    # Live in the kernel after the last run:
    # df: DataFrame 150x5, columns: 'sepal_length' float64, ...

Why there: the earlier cells are the longest stable prefix (cached once per
notebook); the summary changes only when a cell runs, the current cell on every
keystroke. So a new summary re-evaluates a few dozen tokens, never the cells above.

The text comes from the student's side (on the campus path: untrusted prompt text):
the schema bounds its counts and lengths, and this block keeps to its own token
budget; special tokens are broken like everywhere else in the prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..schema import NamespaceEntry
from .tokens import estimate_tokens

# Of the completion's token budget, at most this share for the namespace block.
NAMESPACE_SHARE = 0.15
MAX_LINE_CHARS = 320
HEADING = "Live in the kernel after the last run:"


def namespace_block(
    entries: Sequence[NamespaceEntry],
    *,
    comment: str,
    marker: str,
    budget_tokens: int,
    clean: Callable[[str], str],
) -> str:
    """The block's text (empty without entries). `entries` come newest first; the
    newest are kept when the budget is short, and shown last (nearest the cell)."""
    if not entries or budget_tokens <= 0:
        return ""
    allowance = int(budget_tokens * NAMESPACE_SHARE)
    head = f"{marker}{comment}{HEADING}\n"
    used = estimate_tokens(head)
    lines: list[str] = []
    seen: set[str] = set()
    for entry in entries:
        name = _one_line(entry.name)
        if not name or name in seen:
            continue
        line = clean(f"{comment}{name}: {_one_line(entry.summary)}"[:MAX_LINE_CHARS]) + "\n"
        cost = estimate_tokens(line)
        if used + cost > allowance:
            break
        seen.add(name)
        lines.append(line)
        used += cost
    if not lines:
        return ""
    return head + "".join(reversed(lines))


def _one_line(text: str) -> str:
    """No line breaks: a summary must not turn into code lines of the prompt."""
    return " ".join(text.split())
