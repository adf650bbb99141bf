"""Cut a request to what its token budget can use, before any parse or scan.

A request may carry 100,000-character cells (a pasted data file, a minified line);
everything after this point (mode decision, tree-sitter, bracket scans, the
post-processing filters on every token) costs time in the size of its input. The
prompt can only ever show about ``budget_tokens * CHARS_PER_TOKEN`` characters of
the cell and ``suffix_max_chars`` of what follows the cursor, so the rest is cut
here, first, by cheap slicing:

- prefix: its last 2-3 budgets' worth of characters; the cut point moves in steps of
  one budget (and to a line start where one is near), so that while a student types
  at the end of a huge cell the kept text starts at the same place and the engine's
  prompt cache stays valid;
- suffix: its first ``4 * suffix_max_chars`` characters (at least 2,048): the rest
  of the cursor's line and the next lines, which the filters compare with;
- each context cell: its head and tail (one budget's worth; the prompt shows at most
  a fraction of a budget of one cell); and the cells themselves: the notebook's
  first cells (usually its imports) up to 2 budgets' worth, and the most recent up
  to 6 budgets' worth, older ones dropped in steps of 2 budgets so that appending a
  cell rarely changes which cells are kept.

The worst case is then about 14 budgets of characters to parse (~70k for the default
1,536 tokens), cold; parsed cells are cached by content (`syntax.code_facts`).

What is cut was never in the prompt; what changes is only what the mode decision and
the definitions lookup see of text far from the cursor (a cell's middle, cells far
above), which the budget had dropped anyway.
"""

from __future__ import annotations

import math

from ..schema import CompleteRequest, ContextCell
from .tokens import CHARS_PER_TOKEN

PREFIX_BUDGETS = 3
SUFFIX_MIN_CHARS = 2048
CELL_BUDGETS = 1  # `cells.render_cells` elides a cell to a fraction of a budget anyway
RECENT_CELLS_BUDGETS = 6
FIRST_CELLS_BUDGETS = 2


def budget_chars(budget_tokens: int) -> int:
    """Characters a prompt of `budget_tokens` can hold at most (ASCII code)."""
    return max(math.ceil(budget_tokens * CHARS_PER_TOKEN), 256)


def bound_prefix(prefix: str, budget_tokens: int) -> str:
    step = budget_chars(budget_tokens)
    keep = PREFIX_BUDGETS * step
    if len(prefix) <= keep:
        return prefix
    # Start on a multiple of `step` counted from the cell's start: the same start
    # for every keystroke until the student has typed `step` more characters.
    start = ((len(prefix) - keep) // step + 1) * step
    newline = prefix.find("\n", start, start + step // 2)
    return prefix[newline + 1 if newline != -1 else start :]


def bound_suffix(suffix: str, suffix_max_chars: int) -> str:
    return suffix[: max(4 * suffix_max_chars, SUFFIX_MIN_CHARS)]


def bound_cell(source: str, budget_tokens: int) -> str:
    limit = CELL_BUDGETS * budget_chars(budget_tokens)
    if len(source) <= limit:
        return source
    half = limit // 2
    return source[:half] + "\n" + source[-half:]


def bound_cells(cells: list[ContextCell], budget_tokens: int) -> list[ContextCell]:
    step = budget_chars(budget_tokens)
    bounded = [
        cell if len(cell.source) <= CELL_BUDGETS * step
        else ContextCell(cell_type=cell.cell_type, source=bound_cell(cell.source, budget_tokens))
        for cell in cells
    ]
    sizes = [len(cell.source) for cell in bounded]
    # The notebook's first cells (imports, usually): pinned-definition candidates.
    first_end, used = 0, 0
    while first_end < len(sizes) and used + sizes[first_end] <= FIRST_CELLS_BUDGETS * step:
        used += sizes[first_end]
        first_end += 1
    rest = sum(sizes[first_end:])
    excess = rest - RECENT_CELLS_BUDGETS * step
    if excess <= 0:
        return cells if all(a is b for a, b in zip(bounded, cells)) else bounded
    # Drop older cells in quanta of 2 budgets (as `cells.select_stable` moves its
    # window): appending a cell below usually drops nothing more, so the cells the
    # prompt is built from, and the engine's cached prefix, stay the same.
    quantum = 2 * step
    must_drop = math.ceil(excess / quantum) * quantum
    start, dropped = first_end, 0
    while start < len(sizes) and dropped < must_drop:
        dropped += sizes[start]
        start += 1
    return bounded[:first_end] + bounded[start:]


def bound_request(
    req: CompleteRequest, *, budget_tokens: int, suffix_max_chars: int
) -> CompleteRequest:
    """`req` with prefix, suffix and context cells cut to what the budget can use."""
    prefix = bound_prefix(req.prefix, budget_tokens)
    suffix = bound_suffix(req.suffix, suffix_max_chars)
    cells = bound_cells(req.context_cells, budget_tokens)
    if prefix is req.prefix and len(suffix) == len(req.suffix) and cells is req.context_cells:
        return req
    return req.model_copy(update={"prefix": prefix, "suffix": suffix, "context_cells": cells})

