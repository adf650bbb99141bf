"""Earlier cells: how they are written into the prompt, and which ones are kept.

Cells are written as a "percent" script (the jupytext/VS Code format code models saw
in training): ``# %%`` before each code cell, ``# %% [markdown]`` before markdown
turned into comment lines. Shell and magic lines (``!pip``, ``%matplotlib``) are
kept as they are. Raw and empty cells are left out.

Which cells are kept must not change while the student types, or the engine's
prompt cache (longest common token prefix) is lost; so the choice depends on the
earlier cells only, and moves in coarse steps as the notebook grows:

1. If all cells fit in the budget, all are kept.
2. Otherwise a window of the most recent cells is kept, sized to 3/4 of the budget
   minus a multiple of half of that: appending a cell below usually leaves the
   window's first cell where it was, so the cached prefix stays valid.
3. The rest of the budget pins older cells that define names the window uses, and
   what those need in turn (imports first, then the most recent), in notebook order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ..schema import ContextCell
from .syntax import CodeFacts, code_facts
from .tokens import elide_middle, estimate_tokens

# When the notebook outgrows the window of recent cells, the window shrinks by
# 1/WINDOW_STEPS of its budget at once. More steps: more context on average but more
# cache misses. Measured on a synthetic 120-cell notebook (budget 1536): 2 steps keep
# the stable prefix growing by appending for 80% of new cells (3 steps: 71%, 4: 61%)
# with 12% less context on average; on 2 cores a miss costs seconds, so 2.
WINDOW_STEPS = 2

# What a line comment looks like, per notebook language (kernel language names).
LINE_COMMENTS = {
    "python": "# ",
    "r": "# ",
    "julia": "# ",
    "bash": "# ",
    "sh": "# ",
    "ruby": "# ",
    "javascript": "// ",
    "typescript": "// ",
    "c++": "// ",
    "cpp": "// ",
    "c": "// ",
    "java": "// ",
    "scala": "// ",
    "rust": "// ",
    "go": "// ",
    "sql": "-- ",
    "haskell": "-- ",
    "octave": "% ",
    "matlab": "% ",
}


@dataclass(frozen=True)
class RenderedCell:
    index: int  # position among the request's context cells
    text: str  # as written into the prompt, separator included
    tokens: int
    facts: CodeFacts


def comment_for(language: str, default: str = "# ") -> str:
    return LINE_COMMENTS.get(language.lower(), default)


def cell_marker(comment: str, markdown: bool = False) -> str:
    return f"{comment}%%{' [markdown]' if markdown else ''}\n"


def render_cells(
    cells: Sequence[ContextCell],
    language: str,
    comment: str,
    *,
    markers: bool,
    max_cell_tokens: int,
    clean: Callable[[str], str],
) -> list[RenderedCell]:
    """Each non-empty code/markdown cell as prompt text, with what it defines/uses.

    `clean` neutralizes the model's special tokens in student text.
    """
    rendered = []
    for index, cell in enumerate(cells):
        source = clean(cell.source).strip("\n").rstrip()
        if cell.cell_type == "raw" or not source.strip():
            continue
        if cell.cell_type == "markdown":
            body = "\n".join(
                f"{comment}{line}".rstrip() if line.strip() else comment.rstrip()
                for line in source.split("\n")
            )
            facts = CodeFacts(frozenset(), frozenset(), False)
        else:
            body = source
            facts = code_facts(source, language)
        body = elide_middle(body, max_cell_tokens, comment)
        marker = cell_marker(comment, cell.cell_type == "markdown") if markers else ""
        text = f"{marker}{body}\n\n"
        rendered.append(RenderedCell(index, text, estimate_tokens(text), facts))
    return rendered


def select_stable(cells: Sequence[RenderedCell], budget: int) -> list[RenderedCell]:
    """The cells kept in the stable part of the prompt, in notebook order."""
    total = sum(cell.tokens for cell in cells)
    if total <= budget:
        return list(cells)
    window_budget = budget * 3 // 4
    quantum = max(window_budget // WINDOW_STEPS, 1)
    must_drop = math.ceil((total - window_budget) / quantum) * quantum
    dropped = 0
    start = 0
    while start < len(cells) and dropped < must_drop:
        dropped += cells[start].tokens
        start += 1
    window = list(cells[start:])
    room = budget - sum(cell.tokens for cell in window)
    pinned = pick_definitions(cells[:start], needed_names(window), room, defined_names(window))
    return sorted(pinned + window, key=lambda cell: cell.index)


def defined_names(cells: Iterable[RenderedCell]) -> set[str]:
    return set().union(*(cell.facts.defines for cell in cells))


def needed_names(cells: Iterable[RenderedCell]) -> set[str]:
    """Names these cells read and do not define themselves."""
    cells = list(cells)
    return set().union(*(cell.facts.uses for cell in cells)) - defined_names(cells)


def pick_definitions(
    candidates: Sequence[RenderedCell], needed: set[str], room: int, available: set[str]
) -> list[RenderedCell]:
    """Whole cells defining `needed` names, and what those cells need in turn.

    The last definition of a name wins (as when the notebook runs top to bottom).
    Names in `available` are defined already. Import cells come first, then the most
    recent cells, as long as they fit in `room` tokens.
    """
    wanted: dict[int, RenderedCell] = {
        cell.index: cell for cell in candidates if cell.facts.has_star_import
    }
    known = set(available)
    todo = set(needed) - known
    while todo:
        name = todo.pop()
        known.add(name)
        for cell in reversed(candidates):
            if name in cell.facts.defines:
                if cell.index not in wanted:
                    wanted[cell.index] = cell
                    todo |= cell.facts.uses - cell.facts.defines - known
                break
    by_priority = sorted(
        wanted.values(), key=lambda cell: (not cell.facts.has_imports, -cell.index)
    )
    picked = []
    for cell in by_priority:
        if cell.tokens <= room:
            picked.append(cell)
            room -= cell.tokens
    return picked
