"""Does an explanation evict the notebook's completion cache? (issue 14, item 5)

One student, one notebook cell: they type in the cell (completions, the cell's
context cached), ask for an explanation of the cell, then type on. Per cell of the
replay's targets (the last target of each notebook: the deepest context):

1. ``warm``: a completion at the target (its context is evaluated: cold, not scored);
2. ``base``: the next completion, one more character typed (what typing costs when
   nothing came in between);
3. ``explain``: an explanation of the cell as the server asks it: written after the
   notebook as the completions show it, in their cache (`explain_after_notebook`, the
   default), or with `--set explain_after_notebook=false` a chat of its own (default
   budget) in its own cache; its time to the first token and its cached tokens;
4. ``after``: the next completion, one more character again: does it still find the
   notebook in the cache (it costs what ``base`` cost), or re-evaluate it all?
5. ``explain_again``: the same explanation asked again: what it finds cached (its
   own chat cache, or the notebook in the completions').

With `--prepared`, before 3, ``prepare``: the explanation evaluated ahead as the
server does when the frontend asks (`ExplainService.prepare`: the panel is open and
the student settled in the cell, or the cell failed); its cost is that row's, and
``explain`` then says what is left when the student asks; with `--ask-after S`
the student asks S seconds after the preparation started, before it is done: the
explanation stops it and goes on from what it evaluated.

Between 3 and 4, ``follow_up``: a question right after the explanation, its history
the panel's (the explanation as "Explain this cell" and its signed answer), built as
the server builds it: after the notebook, the explanation's turn said as the server
said it (`conversation.SaidTurns`), or with `--questions-apart` a chat of its own
with the earlier cells (what questions were before). Between 4 and 5,
``follow_up_again``: a second question, after the typing of 4 (the conversation so
far as its history).

The engine is the product's child process (`LlamaCppEngine`), in this process's event
loop; `--engine-code DIR` runs the child from another checkout (e.g. main, to measure
the code before a change: the supervisor protocol is the same).

`--cell-lines N` (or `N-M`) explains, in each notebook, its deepest code cell of at
least N lines (at most M) instead, the completions' cursor at the start of its last
line: item 5's goal is stated for a cell of 20 lines. `--kernel` first runs the cells above in a real
IPython kernel (`executed.NotebookKernel`) and gives its names, as the frontend does,
to the completions and the explanation; `--explain-without-names` leaves them out of
the explanation only (what frontends sent before explanations carried them).
"""

from __future__ import annotations

import asyncio
import statistics
import time

from ..engines.base import CancelToken, GenerationParams, GenerationStats
from ..schema import ExplainRequest
from .targets import Target

PHASES = ("warm", "base", "prepare", "explain", "follow_up", "after", "follow_up_again", "explain_again")
FOLLOW_UPS = {
    "en": {"follow_up": "Why is it written this way?",
           "follow_up_again": "What would change with other values?"},
    "fr": {"follow_up": "Pourquoi est-ce écrit ainsi ?",
           "follow_up_again": "Qu'est-ce qui changerait avec d'autres valeurs ?"},
}  # fmt: skip


async def _timed(stream, pieces: list | None = None) -> dict:
    started = time.perf_counter()
    first = None
    async for piece in stream:
        if first is None and piece:
            first = time.perf_counter()
        if pieces is not None:
            pieces.append(piece)
    end = time.perf_counter()
    return {"ms": round((end - started) * 1000, 1),
            "first_token_ms": round(((first or end) - started) * 1000, 1)}


def follow_up_messages(explain: ExplainRequest, exchanges: list[tuple[str, list[dict], str]],
                       question: str, document: str, apart: bool,
                       language: str = "en") -> tuple[list[dict], str]:  # fmt: skip
    """(messages, document) of `question` after `exchanges` (what the panel shows as
    asked, the messages the model was given, its answer; the explanation first), as
    the server builds them (`ExplainService._prompt`)."""
    from ..conversation import SaidTurns, TurnSigner, question_chat
    from ..schema import HistoryTurn

    user, signer, said = "bench", TurnSigner(), SaidTurns()
    document = "" if apart else document
    turns = []
    for asked, messages, answer in exchanges:
        signature = signer.sign(user, answer)
        said.record(user, signature, messages[-1]["content"], document, "on")
        turns += [HistoryTurn(role="user", content=asked),
                  HistoryTurn(role="assistant", content=answer, signature=signature)]
    request = explain.model_copy(update={"kind": "question", "question": question,
                                         "history": turns})  # fmt: skip
    return question_chat(request, user, "on", language, signer, said, [], document)[0], document


def long_cell_target(notebook: str, cells, min_lines: int, max_lines: int | None = None) -> Target | None:
    """The deepest code cell of `min_lines` to `max_lines` lines with cells above it,
    the cursor at the start of its last line (None if the notebook has none)."""
    for index in range(len(cells) - 1, 0, -1):
        source = cells[index].source.rstrip("\n")
        lines = source.count("\n") + 1
        if cells[index].cell_type != "code" or not min_lines <= lines <= (max_lines or lines):
            continue
        head, _, last = source.rpartition("\n")
        indent = len(last) - len(last.lstrip())
        if last.strip():
            return Target(notebook=notebook, cell_index=index, line_index=source.count("\n"),
                          column=indent, kind="line", prefix=head + "\n" + last[:indent],
                          suffix="", expected=last[indent:])  # fmt: skip
    return None


async def measure_cell(engine, fam, settings: dict, notebook: str, cells, target,
                       names=(), explain_names: bool = True,
                       questions_apart: bool = False, prepared: bool = False,
                       ask_after: float | None = None, language: str = "en") -> list[dict]:  # fmt: skip
    """The phases at `target`; `names`: the kernel's (NamespaceEntry), given to the
    completions and, with `explain_names`, to the explanation and the question."""
    from ..explain import build_messages
    from ..service import notebook_document
    from .cache_plan import product_params, product_prompt
    from .replay import cells_above

    context = cells_above(cells, target.cell_index)

    def completion_prompt(extra: str) -> tuple[str, GenerationParams]:
        # As the server builds it (the mode decided first: build_completion_prompt
        # refuses a request without one).
        prompt = product_prompt(target, cells, settings, fam, target.prefix + extra, names)
        return prompt.text, product_params(prompt)

    source = cells[target.cell_index].source
    explain = ExplainRequest(kind="cell", source=source, context_cells=context, path=notebook,
                             kernel_namespace=list(names) if explain_names else [])  # fmt: skip
    # As the server asks it: after the notebook, in the completion cache, unless
    # --set explain_after_notebook=false (a chat of its own, in its own cache).
    after = bool(settings.get("explain_after_notebook", True))
    document = notebook_document(source, context, notebook, fam, settings["context_budget_tokens"],
                                 settings["suffix_max_chars"],
                                 names if explain_names else ()) if after else ""  # fmt: skip
    messages = build_messages(explain, "on", language, 1024, document=document)
    expected = target.expected
    typed = [expected[:1], expected[:2]] if len(expected) >= 2 else [" ", "  "]
    rows, exchanges = [], []
    cell_lines = source.rstrip("\n").count("\n") + 1

    def row(phase: str, result: dict, stats: GenerationStats, **more) -> dict:
        return {"notebook": notebook, "cell_index": target.cell_index, "phase": phase,
                "cell_lines": cell_lines, "kernel_names": len(names), **result,
                "prompt_tokens": stats.prompt_tokens, "cached_tokens": stats.cached_tokens,
                "engine_seconds": round(stats.engine_seconds, 3), **more}  # fmt: skip

    preparing = None  # (task, stats, start, end): a preparation whose row is not written
    phases = [("warm", ""), ("base", typed[0]), ("explain", None), ("follow_up", None),
              ("after", typed[1]), ("follow_up_again", None), ("explain_again", None)]
    if prepared:
        phases.insert(2, ("prepare", None))
    for phase, extra in phases:
        stats = GenerationStats()
        if phase == "prepare":
            # As the service prepares it: the same messages and generation settings.
            params = GenerationParams(max_tokens=24, temperature=0.0, document=document)
            ended: list[float] = []
            preparing = (asyncio.ensure_future(engine.warm_chat(messages, params, stats)),
                         stats, time.perf_counter(), ended)  # fmt: skip
            preparing[0].add_done_callback(lambda _: ended.append(time.perf_counter()))
            if ask_after is not None:
                # The student asks before it is done: the explanation stops it and
                # goes on from what it evaluated (its row is written with the
                # explanation's, before it).
                await asyncio.sleep(ask_after)
                continue
        elif extra is None:
            chat, chat_document, asked = messages, document, "Explain this cell"
            if phase in FOLLOW_UPS[language]:
                asked = FOLLOW_UPS[language][phase]
                chat, chat_document = follow_up_messages(explain, exchanges, asked, document,
                                                         questions_apart, language)  # fmt: skip
            # The answer's length does not matter here: its first words and its cache do.
            params = GenerationParams(max_tokens=24, temperature=0.0, document=chat_document)
            pieces: list[str] = []
            result = await _timed(engine.chat(chat, params, CancelToken(), stats), pieces)
            if phase != "explain_again":
                exchanges.append((asked, chat, "".join(pieces).strip()))
        else:
            text, params = completion_prompt(extra)
            result = await _timed(engine.complete(text, params, CancelToken(), stats))
        if preparing is not None:
            task, prepared_stats, started, ended = preparing
            await task
            elapsed = round((ended[0] - started) * 1000, 1)  # when it stopped, not now
            rows.append(row("prepare", {"ms": elapsed, "first_token_ms": elapsed}, prepared_stats,
                            stop_reason=prepared_stats.stop_reason))  # fmt: skip
            preparing = None
        if phase != "prepare":
            rows.append(row(phase, result, stats))
    return rows


def summarize(rows: list[dict]) -> dict:
    out = {}
    for phase in PHASES:
        picked = [row for row in rows if row["phase"] == phase]
        if not picked:
            continue
        out[phase] = {
            "n": len(picked),
            "ms_p50": statistics.median(row["ms"] for row in picked),
            "first_token_ms_p50": statistics.median(row["first_token_ms"] for row in picked),
            "prompt_tokens_mean": round(statistics.mean(row["prompt_tokens"] for row in picked), 1),
            "cached_tokens_mean": round(statistics.mean(row["cached_tokens"] for row in picked), 1),
        }
    return out


def table(summary: dict) -> str:
    lines = ["| phase | n | p50 ms | first token p50 ms | prompt tokens | cached tokens |",
             "|---|---|---|---|---|---|"]
    for phase, s in summary.items():
        lines.append(f"| {phase} | {s['n']} | {s['ms_p50']:.0f} | {s['first_token_ms_p50']:.0f} | "
                     f"{s['prompt_tokens_mean']} | {s['cached_tokens_mean']} |")
    return "\n".join(lines)
