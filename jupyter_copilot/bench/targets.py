"""Where the notebook replay asks for completions: deterministic, seeded cursors.

For each code cell, a seeded choice of lines (per notebook, so adding a notebook
changes no other notebook's targets), and on each line one cursor position where a
student commonly pauses: at the start of the line (after its indentation), or
mid-line right after an identifier, ``(``, ``=`` or ``.``. The target is the rest of
the line. With blocks on, the first line of the body under a block header
(``for ...:``, ``def ...:``) also gets a block target: the whole body.

The student writes the cell top to bottom, so by default nothing follows the
cursor (``suffix="none"``); ``suffix="cell"`` keeps the cell's lines below the
target (a student editing an existing cell).

Three samplers place the cursor on a chosen line: ``pause`` (above: where a student
pauses, at a token boundary), ``third`` (the rest of the line after its first
third, counted after the indentation: the cursor may fall inside a name, as the
reference figures' llama-server sampler does, see ``shared/bench/README.md``) and
``start`` (the start of the line, after its indentation: the student has just
pressed Enter; where a suggestion asked ahead answers, `replay.ahead_prefix`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Sampler = Literal["pause", "third", "start"]
SAMPLERS: tuple[str, ...] = ("pause", "third", "start")

from .data import Cell

MIN_TARGET_CHARS = 2
_SKIPPED_LINE_STARTS = ("#", "%", "!")  # comments, magics, shell: not Python to complete


@dataclass(frozen=True)
class Target:
    notebook: str
    cell_index: int  # position of the cell in the notebook
    line_index: int
    column: int
    kind: Literal["line", "block"]
    prefix: str  # cell text before the cursor
    suffix: str  # cell text after the expected text (per the suffix policy)
    expected: str  # what the student goes on to type


def _is_identifier_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def cursor_columns(line: str) -> list[int]:
    """Cursor positions in `line` that leave at least MIN_TARGET_CHARS to type."""
    start = len(line) - len(line.lstrip())
    end = len(line.rstrip())
    columns = [start]
    for column in range(start + 1, end):
        before, after = line[column - 1], line[column]
        if before in "(=." or (_is_identifier_char(before) and not _is_identifier_char(after)):
            columns.append(column)
    return [c for c in columns if len(line[c:end].strip()) >= MIN_TARGET_CHARS]


def third_column(line: str) -> int | None:
    """The cursor after the first third of the line's code (after its indentation),
    or None when that leaves fewer than MIN_TARGET_CHARS to type."""
    start = len(line) - len(line.lstrip())
    end = len(line.rstrip())
    column = start + (end - start) // 3
    return column if len(line[column:end].strip()) >= MIN_TARGET_CHARS else None


def _columns(line: str, sampler: str) -> list[int]:
    if sampler == "start":
        return cursor_columns(line)[:1]
    if sampler == "third":
        column = third_column(line)
        return [] if column is None else [column]
    return cursor_columns(line)


def at_line_start(prefix: str) -> bool:
    """The cursor is at the start of its line (nothing but indentation before it)."""
    return not prefix.rpartition("\n")[2].strip()


def _eligible(line: str) -> bool:
    stripped = line.strip()
    return len(stripped) > MIN_TARGET_CHARS and not stripped.startswith(_SKIPPED_LINE_STARTS)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _block_end(lines: list[str], header: int) -> int:
    """Index after the last body line of the block opened at `header` (0 if none)."""
    header_indent = _indent(lines[header])
    end = header + 1
    for index in range(header + 1, len(lines)):
        if lines[index].strip() and _indent(lines[index]) <= header_indent:
            break
        end = index + 1
    while end > header + 1 and not lines[end - 1].strip():
        end -= 1
    return end if end > header + 1 else 0


def _suffix(lines: list[str], after_line: int, policy: str) -> str:
    if policy == "none" or after_line >= len(lines):
        return ""
    return "\n" + "\n".join(lines[after_line:])


def cell_targets(
    notebook: str,
    cell_index: int,
    source: str,
    rng: random.Random,
    lines_per_cell: int,
    blocks: bool,
    suffix_policy: str,
    sampler: str = "pause",
) -> list[Target]:
    lines = source.rstrip().split("\n")
    eligible = [i for i, line in enumerate(lines) if _eligible(line) and _columns(line, sampler)]
    chosen = sorted(rng.sample(eligible, min(lines_per_cell, len(eligible))))
    targets = []
    for index in chosen:
        line = lines[index]
        column = rng.choice(_columns(line, sampler))
        prefix = "\n".join(lines[:index] + [line[:column]])
        targets.append(Target(
            notebook, cell_index, index, column, "line", prefix,
            _suffix(lines, index + 1, suffix_policy), line[column:].rstrip(),
        ))  # fmt: skip
    if blocks:
        headers = [i for i, line in enumerate(lines) if _opens_block(line) and _block_end(lines, i)]
        if headers:
            header = rng.choice(headers)
            end = _block_end(lines, header)
            body = lines[header + 1 : end]
            column = _indent(body[0])
            prefix = "\n".join(lines[: header + 1] + [body[0][:column]])
            expected = "\n".join([body[0][column:]] + body[1:])
            targets.append(Target(
                notebook, cell_index, header + 1, column, "block", prefix,
                _suffix(lines, end, suffix_policy), expected,
            ))  # fmt: skip
    return sorted(targets, key=lambda t: (t.line_index, t.kind))


def _opens_block(line: str) -> bool:
    code = line.split("#", 1)[0].rstrip() if "'" not in line and '"' not in line else line.rstrip()
    return code.endswith(":") and not line.lstrip().startswith("#")


def notebook_targets(
    notebook: str,
    cells: list[Cell],
    *,
    seed: int = 0,
    lines_per_cell: int = 1,
    blocks: bool = False,
    suffix_policy: str = "none",
    per_notebook: int | None = None,
    sampler: str = "pause",
) -> list[Target]:
    """The targets of one notebook, in notebook order. Seeded by (seed, notebook name).

    `per_notebook` keeps a seeded sample of that many, spread over the whole
    notebook (deep cells, with much context, as well as the first ones).
    `sampler` places the cursor on each chosen line (see the module docstring).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r} (one of {', '.join(SAMPLERS)})")
    rng = random.Random(f"{seed}/{notebook}")
    targets = []
    for cell_index, cell in enumerate(cells):
        if cell.cell_type == "code" and cell.source.strip():
            targets += cell_targets(
                notebook, cell_index, cell.source, rng, lines_per_cell, blocks, suffix_policy,
                sampler,
            )
    if per_notebook is not None and len(targets) > per_notebook:
        kept = set(rng.sample(range(len(targets)), per_notebook))
        targets = [target for index, target in enumerate(targets) if index in kept]
    return targets
