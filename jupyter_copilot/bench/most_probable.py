"""The model's most probable line against its greedy one (issue 14, item 6).

Exact match on unseen notebooks stays under 0.50 with the default model. If the
misses were the decoding's (greedy commits to each token in turn and never goes
back), a search over whole lines would find the author's line as the model's most
probable one, and a beam in the engine would pay. This measures it: for each target
of a replay, the prompt the server builds (`cache_plan.product_prompt`), then

- width 1: the greedy line, what the engine writes before post-processing;
- width k: the most probable complete line a beam of k finds (the sum of its tokens'
  log-probabilities, the token that ends it included),

and the exact match of each against what the author wrote; and, by one measure
(`ModelLines.text_logprob`), the probability that the model writes the author's
line and the one it wrote: where it finds the author's less probable, no search over
its outputs would pick it. A line ends at a token holding a newline (the text before
it is kept) or at one that writes nothing (an end-of-generation or control token: a
FIM marker). An empty line is never a candidate: the product never shows one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from ..engines.kv_reuse import common_prefix_len
from .replay import score


@dataclass(frozen=True)
class Line:
    text: str
    logprob: float  # of its tokens and the one that ended it


def best_line(
    next_logprobs: Callable[[list[int]], Sequence[float]],
    piece: Callable[[int], bytes],
    width: int,
    max_tokens: int,
) -> Line:
    """The most probable non-empty line a beam of `width` finds (width 1: greedy),
    within `max_tokens` (the product's `line_max_tokens`).
    `next_logprobs(tokens)`: log-probabilities of every next token after the prompt
    and `tokens`; `piece(token)`: the bytes a token writes."""
    import numpy as np

    beams: list[tuple[list[int], float]] = [([], 0.0)]
    finished: list[Line] = []
    for step in range(max_tokens):
        candidates = []
        for tokens, logprob in beams:
            scores = np.asarray(next_logprobs(tokens))
            # A few more than the width: tokens that would end an empty line are skipped.
            count = min(width + 4, len(scores))
            best = np.argpartition(-scores, count - 1)[:count]
            for token in map(int, best[np.argsort(-scores[best])]):
                total = logprob + float(scores[token])
                written = piece(token)
                if not written or b"\n" in written:
                    if step:
                        text = b"".join(piece(t) for t in tokens) + written.split(b"\n")[0]
                        finished.append(Line(text.decode("utf-8", errors="replace"), total))
                else:
                    candidates.append((tokens + [token], total))
        candidates.sort(key=lambda c: c[1], reverse=True)
        beams = candidates[:width]
        # Log-probabilities only fall: no open beam can beat the best finished line.
        if finished and (not beams or max(line.logprob for line in finished) >= beams[0][1]):
            break
    if not finished:  # the token limit: the best open line as it stands
        tokens, logprob = beams[0] if beams else ([], -math.inf)
        return Line(b"".join(piece(t) for t in tokens).decode("utf-8", errors="replace"), logprob)
    return max(finished, key=lambda line: line.logprob)


class ModelLines:
    """`best_line` on a llama.cpp model: each call evaluates only what the cache lacks
    (the beams share the prompt and most of their tokens)."""

    def __init__(self, llm) -> None:
        self.llm = llm
        self._pieces: dict[int, bytes] = {}
        self._groups = None  # `_vocabulary`, read once

    def piece(self, token: int) -> bytes:
        if token not in self._pieces:
            self._pieces[token] = self.llm.detokenize([token])
        return self._pieces[token]

    def next_logprobs(self, tokens: list[int]):
        import numpy as np

        llm = self.llm
        # At least the last token is evaluated again: its logits are the ones wanted.
        keep = common_prefix_len(llm.input_ids[: llm.n_tokens].tolist(), tokens[:-1])
        llm.n_tokens = keep  # `eval` drops the cache from here
        llm.eval(tokens[keep:])
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))
        logits = logits.astype(np.float64) - logits.max()
        return logits - math.log(np.exp(logits).sum())

    def text_logprob(self, prompt_tokens: list[int], text: str, width: int = 4) -> float | None:
        """The log-probability of the likeliest path of tokens by which the model
        writes `text` after the prompt and then ends the line (a beam of `width` over
        the ways tokens spell it; the path's end is one token, as in `best_line`): one
        measure for the author's line and the model's own, whichever tokens the search
        took (None: no tokens spell it)."""
        spelling, ending, nothing = self._vocabulary()
        target = text.encode()
        beams: list[tuple[list[int], int, float]] = [([], 0, 0.0)]  # tokens, bytes, logprob
        best = None
        while beams:
            grown = []
            for tokens, done, logprob in beams:
                scores = self.next_logprobs(prompt_tokens + tokens)
                rest = target[done:]
                for token in ending.get(rest, []) + (nothing if not rest else []):
                    total = logprob + float(scores[token])
                    best = total if best is None else max(best, total)
                for size in range(1, len(rest) + 1):
                    for token in spelling.get(rest[:size], []):
                        grown.append((tokens + [token], done + size, logprob + float(scores[token])))
            beams = sorted(grown, key=lambda beam: beam[2], reverse=True)[:width]
        return best

    def _vocabulary(self):
        """Tokens by the bytes they write: those without a newline (`spelling`), those
        with one by what comes before it (`ending`), and those that write nothing."""
        if self._groups is None:
            spelling: dict[bytes, list[int]] = {}
            ending: dict[bytes, list[int]] = {}
            nothing: list[int] = []
            for token in range(self.llm.n_vocab()):
                written = self.piece(token)
                if not written:
                    nothing.append(token)
                elif b"\n" in written:
                    ending.setdefault(written.split(b"\n")[0], []).append(token)
                else:
                    spelling.setdefault(written, []).append(token)
            self._groups = spelling, ending, nothing
        return self._groups

    def line(self, prompt_tokens: list[int], width: int, max_tokens: int) -> Line:
        return best_line(lambda tokens: self.next_logprobs(prompt_tokens + tokens), self.piece,
                         width, max_tokens)  # fmt: skip


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def compare(notebooks, settings: dict, fam, backend, widths: list[int], quiet: bool = False):
    """One row per line target: each width's line, its path's log-probability, the
    same line scored as the author's is (`text_logprob`), its exact match and its
    seconds (the first width's also count the prompt's evaluation); and the
    author's line scored (`author_logprob`)."""
    from .cache_plan import product_prompt

    lines = ModelLines(backend.llm)
    rows = []
    for name, cells, targets in notebooks:
        for target in targets:
            if target.kind != "line":
                continue
            prompt = product_prompt(target, cells, settings, fam)
            tokens = backend.tokenize(prompt.text)
            row = {"notebook": name, "cell_index": target.cell_index,
                   "line_index": target.line_index, "column": target.column,
                   "expected": target.expected, "author_logprob": None, "widths": {}}  # fmt: skip
            for width in widths:
                started = time.perf_counter()
                found = lines.line(tokens, width, settings["line_max_tokens"])
                row["widths"][str(width)] = {
                    "line": found.text, "logprob": round(found.logprob, 4),
                    "exact_match": score("line", found.text, target.expected)[0],
                    "seconds": round(time.perf_counter() - started, 2),
                    "text_logprob": _rounded(lines.text_logprob(tokens, found.text.rstrip())),
                }  # fmt: skip
            row["author_logprob"] = _rounded(lines.text_logprob(tokens, target.expected.rstrip()))
            rows.append(row)
            if not quiet:
                marks = " ".join(f"w{w}={'✓' if row['widths'][str(w)]['exact_match'] else '✗'}"
                                 for w in widths)  # fmt: skip
                print(f"  {name} cell {target.cell_index} line {target.line_index}: {marks}",
                      flush=True)  # fmt: skip
    return rows


def summarize(rows: list[dict], widths: list[int]) -> dict:
    """Exact match by width; against the first width, the lines that differ and the
    targets each fixes or breaks."""
    base = str(widths[0])
    # Where the first width missed: does the model find the author's line more
    # probable than its own (a search could then find it) or less (none could)?
    scored = [row for row in rows if not row["widths"][base]["exact_match"]
              and row.get("author_logprob") is not None
              and row["widths"][base].get("text_logprob") is not None]  # fmt: skip
    summary = {"targets": len(rows), "widths": {},
               "misses_scored": len(scored),
               "misses_author_more_probable": sum(
                   row["author_logprob"] > row["widths"][base]["text_logprob"] for row in scored)}  # fmt: skip
    for width in map(str, widths):
        exact = [row["widths"][width]["exact_match"] for row in rows]
        summary["widths"][width] = {
            "exact": sum(exact),
            "exact_match": round(sum(exact) / len(rows), 3) if rows else None,
            "differ": sum(row["widths"][width]["line"] != row["widths"][base]["line"] for row in rows),
            "fixed": sum(row["widths"][width]["exact_match"] and not row["widths"][base]["exact_match"]
                         for row in rows),  # fmt: skip
            "broken": sum(row["widths"][base]["exact_match"] and not row["widths"][width]["exact_match"]
                          for row in rows),  # fmt: skip
            "seconds_mean": round(sum(row["widths"][width]["seconds"] for row in rows) / len(rows), 2)
            if rows else None,
        }  # fmt: skip
    return summary


def table(summary: dict, widths: list[int]) -> str:
    head = (f"| beam width | targets | exact | lines unlike width {widths[0]}'s | fixed | broken "
            "| s per target |\n|---|---|---|---|---|---|---|")
    body = [
        f"| {w} | {summary['targets']} | {s['exact']} ({s['exact_match']}) | {s['differ']} "
        f"| {s['fixed']} | {s['broken']} | {s['seconds_mean']} |"
        for w, s in summary["widths"].items()
    ]
    misses = (f"Misses of width {widths[0]} where the model finds the author's line more "
              f"probable than its own: {summary['misses_author_more_probable']} of "
              f"{summary['misses_scored']}")
    return "\n".join([head, *body, "", misses])
