"""Notebook replay: walk notebooks top to bottom and complete at seeded cursors.

For each target (see `targets`), the request a JupyterLab student would send: the
cell text around the cursor, the cells above as context (as the frontend collects
them), the notebook path and cell id. When the replay moves to a new cell it first
pre-warms (``/copilot/warm`` with the cells above and the cell around the cursor, as
the frontend does once the student settles in a cell) and waits until the engine is
idle; the warm-up time is recorded apart.
Then, per target:

- ``first``: the first request in this cell (the context just changed: cold, or
  pre-warmed); ``later``: another target in the same cell;
- ``typed``: the same place after the student typed one more character of the
  expected text (the warm path: everything but the last characters is cached).

With ``ahead_gap_ms`` (a client that asks ahead, `HttpCompleter`), a target at the
start of a line below another line of its cell is reached as a student who has
just accepted a suggestion ending the line above: the frontend's ahead request
(the line above ended, the cursor at the new line's start) goes first, and the
target's request comes ``ahead_gap_ms`` later (Enter, the first keystrokes, the
provider's debounce); its latency then includes waiting for the ahead answer.

Quality is scored on the ``first`` and ``later`` requests: exact match and edit
similarity of what the completion puts on the cursor's line against the rest of
the line (line targets), or of the whole block (block targets).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..schema import CompleteRequest, ContextCell, WarmRequest
from .data import Cell
from .interference import measure, quiet_or_all
from .metrics import edit_similarity, latency_summary, mean
from .targets import Target, at_line_start

# What the JupyterLab frontend sends as context (labextension/src/context.ts).
FRONTEND_MAX_CONTEXT_CELLS = 200
FRONTEND_MAX_CONTEXT_CHARS = 48_000
FRONTEND_MAX_SOURCE_CHARS = 100_000


def cells_above(cells: list[Cell], index: int) -> list[ContextCell]:
    """The frontend's `cellsAbove`: code and markdown cells above `index`, the nearest
    kept when the notebook is long."""
    kept: list[ContextCell] = []
    chars = 0
    for cell in reversed(cells[:index]):
        if cell.cell_type not in ("code", "markdown"):
            continue
        if not cell.source.strip() or len(cell.source) > FRONTEND_MAX_SOURCE_CHARS:
            continue
        if chars + len(cell.source) > FRONTEND_MAX_CONTEXT_CHARS:
            break
        if len(kept) >= FRONTEND_MAX_CONTEXT_CELLS:
            break
        chars += len(cell.source)
        kept.append(ContextCell(cell_type=cell.cell_type, source=cell.source))
    return kept[::-1]


@dataclass
class Variant:
    name: str  # e.g. "product", "product-cell", "infill", "infill-cell"
    completer: object
    with_context: bool
    prewarm: bool = True
    # The frontend's typing warm-up (`WarmRequest.through_cursor`), sent while the
    # student types the cursor's line and done by the pause that asks the completion.
    typing_warm: bool = False
    # The frontend's typing-ahead (a suggestion asked ahead at the cell as typed when
    # its throttle fired: `CompleteRequest.ahead`), then the pause's request this many
    # ms later; None: not asked.
    typing_ahead_gap_ms: float | None = None
    # The frontend's suggestion asked at the cursor when the student settles in a cell
    # with its editor focused (instead of the warm-up): the pre-warm step asks it and
    # waits for it, as it waits for a warm-up (its time is the warm-up's).
    entry_ahead: bool = False


def on_cursor_line(text: str) -> str:
    """What a completion adds to the cursor's line."""
    return text.partition("\n")[0].rstrip()


def normalized_block(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.rstrip().split("\n")).strip("\n")


def score(kind: str, completion: str, expected: str) -> tuple[bool, float]:
    if kind == "line":
        predicted, wanted = on_cursor_line(completion), expected.rstrip()
    else:
        predicted, wanted = normalized_block(completion), normalized_block(expected)
    return predicted == wanted, round(edit_similarity(predicted, wanted), 4)


def _request(target: Target, context: list[ContextCell], prefix: str, explicit_mode: bool):
    return CompleteRequest(
        prefix=prefix,
        suffix=target.suffix,
        language="python",
        path=target.notebook,
        cell_id=f"cell-{target.cell_index}",
        editor_id=f"bench:{target.notebook}#cell-{target.cell_index}",
        context_cells=context,
        mode=target.kind if explicit_mode else None,
    )


# The frontend's last typing warm-up carries the cell as it was when it fired, up to
# `TYPING_WARM_MS` (600 ms) before the pause: ~2 characters at a student's 3-4 a second.
TYPING_WARM_LAG_CHARS = 2


def typing_warm_prefix(prefix: str) -> str | None:
    """What the last typing warm-up (or suggestion asked ahead) before the pause saw
    of the cell: `prefix` less the characters typed since; None where the frontend
    sends none, nothing being typed on the cursor's line then (`warm.ts`). At the
    start of a line (Enter, then the editor's indentation, which nobody types), that
    tick came while the line above was typed: Enter is one of the characters."""
    line_start = prefix.rfind("\n") + 1
    if not prefix[line_start:].strip():
        prefix = prefix[:line_start]  # up to Enter; the characters of the line above
        line_start = prefix.rfind("\n", 0, len(prefix) - 1) + 1
    typed = min(TYPING_WARM_LAG_CHARS, len(prefix) - line_start)
    before = prefix[: len(prefix) - typed]
    return before if before.rpartition("\n")[2].strip() else None


def ahead_prefix(target: Target) -> str | None:
    """Where the ahead request is asked for this target: its cell up to the end of
    the line above (with the newline), when the cursor is at a line start under a
    non-blank line of the same cell; None elsewhere."""
    if target.kind != "line" or not at_line_start(target.prefix) or "\n" not in target.prefix:
        return None
    above, _, _ = target.prefix.rpartition("\n")
    if not above.rpartition("\n")[2].strip():
        return None
    return above + "\n"


async def _ask_ahead(completer, req: CompleteRequest, gap_ms: float) -> asyncio.Future:
    """`req` asked ahead (`ahead: true`), under way, once `gap_ms` have passed."""
    asked = asyncio.ensure_future(completer.complete(req.model_copy(update={"ahead": True})))
    await asyncio.sleep(gap_ms / 1000)
    return asked


async def replay_notebook(
    notebook: str,
    cells: list[Cell],
    targets: list[Target],
    variant: Variant,
    *,
    typed: bool = True,
    ahead_gap_ms: float | None = None,
    on_result: Callable[[dict], None] | None = None,
) -> list[dict]:
    completer = variant.completer
    explicit = getattr(completer, "explicit_mode", False)
    results: list[dict] = []
    current_cell = None
    for target in targets:
        cell_first = target.cell_index != current_cell
        current_cell = target.cell_index
        context = cells_above(cells, target.cell_index) if variant.with_context else []
        warm_ms = None
        asks_ahead = getattr(completer, "asks_ahead", False)
        if cell_first and variant.prewarm and (context or target.prefix.strip()):
            # What the frontend sends once the student settles at this cursor.
            if variant.entry_ahead and asks_ahead:
                entry = _request(target, context, target.prefix, explicit)
                warm_ms = (await completer.complete(entry.model_copy(update={"ahead": True}))
                           ).latency_ms  # fmt: skip
            else:
                warm_req = WarmRequest(path=notebook, language="python", context_cells=context,
                                       prefix=target.prefix, suffix=target.suffix)  # fmt: skip
                warm_ms = await completer.warm(warm_req)
        typing_warm_ms = None
        typed_before = typing_warm_prefix(target.prefix)
        if variant.typing_warm and typed_before is not None:
            typing_req = WarmRequest(path=notebook, language="python", context_cells=context,
                                     prefix=typed_before, suffix=target.suffix,
                                     through_cursor=True)  # fmt: skip
            typing_warm_ms = await completer.warm(typing_req)
        typing_ahead = None
        if variant.typing_ahead_gap_ms is not None and typed_before is not None and asks_ahead:
            ahead_req = _request(target, context, typed_before, explicit)
            typing_ahead = await _ask_ahead(completer, ahead_req, variant.typing_ahead_gap_ms)
        asked_ahead = None
        where = ahead_prefix(target)
        if where is not None and ahead_gap_ms is not None and asks_ahead:
            asked_ahead = await _ask_ahead(completer, _request(target, context, where, explicit),
                                           ahead_gap_ms)  # fmt: skip
        reply, others = await measure(
            completer.complete(_request(target, context, target.prefix, explicit))
        )
        ahead_ms = (await asked_ahead).latency_ms if asked_ahead is not None else None
        typing_ahead_reply = await typing_ahead if typing_ahead is not None else None
        exact, similarity = score(target.kind, reply.text, target.expected)
        base = {
            "variant": variant.name,
            "notebook": notebook,
            "cell_index": target.cell_index,
            "line_index": target.line_index,
            "column": target.column,
            "kind": target.kind,
            # Where the cursor is: quality differs a lot between the two.
            "cursor": "line_start" if at_line_start(target.prefix) else "mid_line",
            "notebook_first": not results,
            "under_a_line": where is not None,
        }
        first = {
            **base,
            "phase": "first" if cell_first else "later",
            "expected": target.expected,
            "completion": reply.text,
            "exact_match": exact,
            "edit_similarity": similarity,
            "latency_ms": reply.latency_ms,
            "others_cores": others,
            "warm_ms": warm_ms,
            "typing_warm_ms": typing_warm_ms,
            "typing_ahead_ms": typing_ahead_reply.latency_ms if typing_ahead_reply else None,
            "typing_ahead_text": typing_ahead_reply.text if typing_ahead_reply else None,
            "asked_ahead": asked_ahead is not None,
            "ahead_ms": ahead_ms,
            "mode": reply.mode,
            "timing": reply.timing,
            "error": reply.error,
        }
        results.append(first)
        if on_result:
            on_result(first)
        if typed and target.kind == "line" and len(target.expected) > 1:
            char, rest = target.expected[0], target.expected[1:]
            again, others = await measure(
                completer.complete(_request(target, context, target.prefix + char, explicit))
            )
            exact, similarity = score("line", again.text, rest)
            follow = {
                **base,
                "notebook_first": False,
                "phase": "typed",
                "expected": rest,
                "completion": again.text,
                "exact_match": exact,
                "edit_similarity": similarity,
                "latency_ms": again.latency_ms,
                "others_cores": others,
                "warm_ms": None,
                "mode": again.mode,
                "timing": again.timing,
                "error": again.error,
                # The first suggestion already started with what was typed: a client
                # (or the server) could have shown its rest without asking again.
                "typed_through": reply.text.startswith(char) and len(reply.text) > 1,
                "reused": bool(again.timing.get("reused")),  # served without the model
            }
            results.append(follow)
            if on_result:
                on_result(follow)
    return results


def summarize(results: list[dict]) -> dict:
    scored = [r for r in results if r["phase"] in ("first", "later")]
    lines = [r for r in scored if r["kind"] == "line"]
    blocks = [r for r in scored if r["kind"] == "block"]
    typed = [r for r in results if r["phase"] == "typed"]

    def latencies(rows):
        # Over the requests made while the rest of the machine was quiet, when
        # that is known (see interference.py); `all_n` says how many were made.
        kept = quiet_or_all(rows)
        return {**latency_summary([r["latency_ms"] for r in kept]), "all_n": len(rows)}

    def timing_mean(rows, key):
        return mean([r["timing"].get(key, 0) for r in rows if r.get("timing")])

    first = [r for r in results if r["phase"] == "first"]
    warm = [r for r in results if r["phase"] in ("later", "typed")]
    ahead = [r for r in scored if r.get("asked_ahead")]
    # Line starts under a line of their cell, whether asked ahead or not: the rows
    # that compare a run with `ahead_gap_ms` and one without.
    under = [r for r in scored if r.get("under_a_line")]
    return {
        "targets": len(scored),
        "requests": len(results),
        "line": {
            "n": len(lines),
            "exact_match": mean([float(r["exact_match"]) for r in lines]),
            "edit_similarity": mean([r["edit_similarity"] for r in lines]),
        },
        "cursor": {
            kind: {
                "n": len(rows),
                "exact_match": mean([float(r["exact_match"]) for r in rows]),
                "edit_similarity": mean([r["edit_similarity"] for r in rows]),
            }
            for kind in ("line_start", "mid_line")
            for rows in [[r for r in lines if r.get("cursor") == kind]]
        },
        "block": {
            "n": len(blocks),
            "exact_match": mean([float(r["exact_match"]) for r in blocks]),
            "edit_similarity": mean([r["edit_similarity"] for r in blocks]),
        },
        # Line starts reached after the line above was accepted (`ahead_gap_ms`):
        # how many the ahead answer served, and how long its request took.
        "asked_ahead": {
            "n": len(ahead),
            "exact_match": mean([float(r["exact_match"]) for r in ahead]),
            "reused": mean([float(bool(r["timing"].get("reused"))) for r in ahead]),
            "ahead_ms": latency_summary([r["ahead_ms"] for r in ahead]),
        },
        "typed": {
            "exact_match": mean([float(r["exact_match"]) for r in typed]),
            "edit_similarity": mean([r["edit_similarity"] for r in typed]),
            "typed_through": mean([float(r.get("typed_through", False)) for r in typed]),
            "reused": mean([float(r.get("reused", False)) for r in typed]),
        },
        "latency": {
            "cold": latencies(first),  # first request after a cell change
            "warm": latencies(warm),  # same cell: another line, or one more character
            "typed": latencies(typed),
            # Only the typed requests the model answered (no typed-through reuse).
            "typed_model": latencies([r for r in typed if not r.get("reused")]),
            "later": latencies([r for r in results if r["phase"] == "later"]),
            "line_start_below": latencies(under),
            "asked_ahead": latencies(ahead),
            "notebook_first": latencies([r for r in results if r["notebook_first"]]),
            "prewarm": latency_summary([r["warm_ms"] for r in first if r["warm_ms"]]),
        },
        "prompt_tokens": {"cold": timing_mean(first, "prompt_tokens"),
                          "cold_cached": timing_mean(first, "cached_tokens"),
                          "typed": timing_mean(typed, "prompt_tokens"),
                          "typed_cached": timing_mean(typed, "cached_tokens")},
        "generated_tokens": timing_mean(results, "generated_tokens"),
        "errors": sum(bool(r["error"]) for r in results),
    }


def relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name
