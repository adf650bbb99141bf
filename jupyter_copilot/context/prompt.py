"""Notebook -> prompt: the layout that keeps the engine's prompt cache warm.

llama.cpp reuses its KV cache for the longest common token prefix of two prompts (a
cold 775-token prompt: ~7.8 s on 2 cores; after one typed character: ~0.33 s). So
the prompt is ordered from what changes least to what changes most:

    <|repo_name|>{notebook}                      \\
    <|file_sep|>{notebook}.py                      | stable_prefix: the same for every
    <|fim_prefix|># %%                             | keystroke and every cell below;
    {earlier cells, in notebook order}            /  what `build_warm_prompt` pre-fills
    {older cells defining names this cell uses}      only when the window dropped them
    # %%
    {cell prefix}<|fim_suffix|>{short cell suffix}<|fim_middle|>

Why the earlier cells sit inside ``<|fim_prefix|>``, in the same file as the current
cell, rather than in a ``<|file_sep|>`` section of their own: a notebook is one
namespace, and Qwen2.5-Coder's repo-level FIM puts the FIM markers right after the
last ``<|file_sep|>{path}`` line. With everything before the cursor in the prefix, the
model sees exactly what it saw in training (one script, a hole at the cursor), and
the stable part is still a byte-identical prefix. The notebook is shown as a ``.py``
percent script, so the path says ``.py``: an ``.ipynb`` path would suggest JSON.

Families without FIM ("plain") get the same text left to right, suffix ignored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from ..postprocess.base import FilterContext
from ..prompts import FimFamily
from ..schema import CompleteRequest, ContextCell
from .cells import (
    RenderedCell,
    cell_marker,
    comment_for,
    defined_names,
    pick_definitions,
    render_cells,
    select_stable,
)
from .healing import healing_fragment
from .namespace import namespace_block
from .syntax import code_facts
from .tokens import cut_head_quantized, estimate_tokens

# Shares of budget_tokens: the stable cells, the extra definitions this cell needs,
# and (the rest, at least 30%) the current cell itself.
STABLE_SHARE = 0.6
EXTRAS_SHARE = 0.1

_EXTENSIONS = {"python": ".py", "r": ".R", "julia": ".jl", "javascript": ".js", "typescript": ".ts"}
_SPECIAL_TOKEN = re.compile(r"<[^<>{}\s]+>")


@dataclass(frozen=True)
class CompletionPrompt:
    text: str  # the full prompt for the engine (special tokens as text)
    stable_prefix: str  # the part that changes least (header + earlier cells)
    mode: Literal["line", "block"]
    max_tokens: int
    stop: tuple[str, ...]
    # Token healing: the end of the cell prefix left out of `text`, which the
    # generation must start with (context/healing.py); '' for none.
    heal: str = ""
    # Where the cursor's line starts in `text`: what comes before stays the same while
    # the student types on this line, so a warm-up can evaluate it (`build_warm_prompt`).
    warm_end: int = 0
    # Where the cell's text before the cursor ends in `text` (`build_notebook_document`).
    cursor_end: int = 0


@dataclass(frozen=True)
class _Layout:
    header: str  # up to the first cell
    before_suffix: str  # between the cell prefix and the suffix
    after_suffix: str  # after the suffix: the model writes from here
    uses_suffix: bool
    markers: bool  # a notebook: cells introduced by "# %%"
    comment: str
    clean: _Cleaner


class _Cleaner:
    """Breaks the family's special tokens in student text, so a cell containing
    ``<|fim_middle|>`` cannot end the prompt early (the engine tokenizes specials)."""

    def __init__(self, fam: FimFamily):
        templates = [fam.fim or "", fam.repo_header or "", fam.file_header or ""]
        found = {token for text in templates for token in _SPECIAL_TOKEN.findall(text)}
        self.tokens = tuple(sorted(found | set(fam.stop), key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for token in self.tokens:
            if token in text:
                text = text.replace(token, token[0] + "\u200b" + token[1:])
        return text


def _names(path: str | None, language: str) -> tuple[str, str, bool]:
    """(notebook name, path shown to the model, is a notebook)."""
    extension = _EXTENSIONS.get(language.lower(), "")
    if not path:
        return "notebook", f"notebook{extension}", True
    pure = PurePosixPath(path)
    if pure.suffix == ".ipynb":
        return pure.stem, str(pure.with_suffix(extension)) if extension else path, True
    return pure.stem, path, False


def _layout(fam: FimFamily, path: str | None, language: str) -> _Layout:
    clean = _Cleaner(fam)
    name, shown_path, is_notebook = _names(path, language)
    name, shown_path = clean(name), clean(shown_path)
    file_header = fam.file_header.format(name=name, path=shown_path) if fam.file_header else ""
    comment = comment_for(language, fam.comment)
    if fam.fim is None:
        return _Layout(file_header, "", "", False, is_notebook, comment, clean)
    head, _, tail = fam.fim.partition("{prefix}")
    before_suffix, _, after_suffix = tail.partition("{suffix}")
    if fam.repo_header:  # special-token repo format: headers, then the FIM file
        header = fam.repo_header.format(name=name, path=shown_path) + file_header + head
    else:  # a plain-text file header belongs inside the FIM prefix
        header = head + file_header
    return _Layout(header, before_suffix, after_suffix, True, is_notebook, comment, clean)


def _stable_part(
    cells: Sequence[ContextCell], language: str, layout: _Layout, budget_tokens: int
) -> tuple[str, list[RenderedCell], list[RenderedCell]]:
    """(stable prefix text, all rendered cells, the cells kept in the stable prefix)."""
    stable_budget = max(int(budget_tokens * STABLE_SHARE) - estimate_tokens(layout.header), 0)
    rendered = render_cells(
        cells,
        language,
        layout.comment,
        markers=layout.markers,
        max_cell_tokens=max(stable_budget * 3 // 8, 32),  # half the window of recent cells
        clean=layout.clean,
    )
    kept = select_stable(rendered, stable_budget)
    return layout.header + "".join(cell.text for cell in kept), rendered, kept


def _completed_lines(prefix: str, suffix: str) -> str:
    """The cell without the cursor's line: what the student is not typing right now."""
    before = prefix.rpartition("\n")[0]
    after = suffix.partition("\n")[2]
    return f"{before}\n{after}"


def build_completion_prompt(
    req: CompleteRequest,
    fam: FimFamily,
    *,
    budget_tokens: int = 1536,
    suffix_max_chars: int = 400,
    line_max_tokens: int = 48,
    block_max_tokens: int = 160,
    heal: bool = False,
) -> CompletionPrompt:
    """The prompt of a request whose mode is decided (``req.mode``: see
    `decide_request_mode`); the mode is not decided again here. `heal`: leave the
    start of the name at the cursor to the generation (`CompletionPrompt.heal`)."""
    mode = req.mode
    if mode is None:
        raise ValueError("the request's mode must be decided first (decide_request_mode)")
    layout = _layout(fam, req.path, req.language)
    stable_prefix, rendered, kept = _stable_part(
        req.context_cells, req.language, layout, budget_tokens
    )

    # Older cells that define what this cell uses, placed after the stable part so
    # that the stable part stays what the warm-up cached. Judged on the completed
    # lines only, so that typing within a line never changes them.
    kept_indexes = {cell.index for cell in kept}
    current = code_facts(_completed_lines(req.prefix, req.suffix), req.language)
    available = current.defines | defined_names(kept)
    dropped = [cell for cell in rendered if cell.index not in kept_indexes]
    extras_budget = int(budget_tokens * EXTRAS_SHARE)
    extras = pick_definitions(dropped, set(current.uses), extras_budget, available)
    extras.sort(key=lambda cell: cell.index)
    extras_text = "".join(cell.text for cell in extras)

    marker = cell_marker(layout.comment) if layout.markers else ""
    # The kernel's names change only when a cell runs: right after the stable part.
    stable_prefix += _kernel_block(req, layout, budget_tokens)
    suffix = _short_suffix(layout.clean(req.suffix), suffix_max_chars) if layout.uses_suffix else ""
    fixed = stable_prefix + extras_text + marker + layout.before_suffix + layout.after_suffix
    # The allowance for the prefix must not depend on the suffix (which changes as
    # the cursor moves): reserve the suffix's maximum instead.
    suffix_reserve = estimate_tokens("x" * suffix_max_chars) if layout.uses_suffix else 0
    prefix_budget = max(budget_tokens - estimate_tokens(fixed) - suffix_reserve, 0)
    prefix = cut_head_quantized(layout.clean(req.prefix), prefix_budget)
    fragment = healing_fragment(prefix) if heal and layout.uses_suffix else ""
    if fragment:
        prefix = prefix[: -len(fragment)]

    head = stable_prefix + extras_text + marker + prefix
    text = head + layout.before_suffix + suffix + layout.after_suffix
    warm_end = len(head) - len(prefix.rpartition("\n")[2])
    if req.max_tokens is not None:
        max_tokens = req.max_tokens
    else:
        max_tokens = line_max_tokens if mode == "line" else block_max_tokens
    stop = tuple(fam.stop)
    if layout.markers:
        stop += ("\n" + marker.rstrip("\n"),)  # the model starting the next cell
    return CompletionPrompt(
        text, stable_prefix, mode, max_tokens, stop, heal=fragment, warm_end=warm_end,
        cursor_end=len(head),
    )


def build_warm_prompt(
    req: CompleteRequest,
    fam: FimFamily,
    *,
    budget_tokens: int = 1536,
    suffix_max_chars: int = 400,
    through_cursor: bool = False,
) -> str:
    """What the completion `req` (a warm-up's, `WarmRequest.completion_request`) starts
    with, up to the cursor's line: the stable cells and the kernel's names, the older
    definitions the cell uses, its marker and its lines above the cursor's line (none
    for a new cell). `through_cursor` (the student is typing on that line): on to the
    cursor, less the word being typed, whose tokens change with the next keystroke.
    Cut from `build_completion_prompt`'s own prompt, so a prefix of it by
    construction; the service bounds `req` first, as it bounds a completion
    (`bounds.bound_request`)."""
    prompt = build_completion_prompt(
        req, fam, budget_tokens=budget_tokens, suffix_max_chars=suffix_max_chars
    )
    end = prompt.warm_end
    if through_cursor:
        end = max(end, prompt.cursor_end - len(healing_fragment(req.prefix)))
    return prompt.text[:end]


def build_notebook_document(
    req: CompleteRequest,
    fam: FimFamily,
    *,
    budget_tokens: int = 1536,
    suffix_max_chars: int = 400,
) -> str:
    """The notebook as a completion at the end of the cell `req.prefix` sees it: the
    completion prompt up to its cursor (the repository and file headers, the stable
    cells, the kernel's names, the cell). A prefix of the prompts the completions of
    that cell evaluated, so that an explanation written after it (an engine with
    `chats_after_document`) finds it in the completion cache; the service bounds
    `req` first, as a completion's."""
    prompt = build_completion_prompt(
        req, fam, budget_tokens=budget_tokens, suffix_max_chars=suffix_max_chars
    )
    return prompt.text[: prompt.cursor_end]


def _kernel_block(req: CompleteRequest, layout: _Layout, budget_tokens: int) -> str:
    """The kernel's live names (issue 14), the same in the warm-up and the completion."""
    marker = cell_marker(layout.comment) if layout.markers else ""
    return namespace_block(req.kernel_namespace, comment=layout.comment, marker=marker,
                           budget_tokens=budget_tokens, clean=layout.clean)


def _short_suffix(suffix: str, max_chars: int) -> str:
    """At most `max_chars`, cut at a line end (the suffix is re-read every keystroke).

    Also within the tokens reserved for `max_chars` ASCII characters, which a suffix
    full of non-ASCII text could otherwise exceed.
    """
    reserve = estimate_tokens("x" * max_chars)
    limit = max_chars
    while suffix and (len(suffix) > limit or estimate_tokens(suffix) > reserve):
        limit = min(limit, len(suffix) - 1)
        line_end = suffix.rfind("\n", 0, limit)
        # A very long rest of the cursor's line is cut mid-line: it matters most.
        suffix = suffix[: line_end + 1] if line_end != -1 else suffix[:limit]
    return suffix


def filter_context(
    req: CompleteRequest, prompt: CompletionPrompt, *, max_lines: int = 12
) -> FilterContext:
    """The post-processing context for this request (the cell as the student has it).

    `max_lines` is the server's limit; a request may only lower it (the user's taste).
    """
    return FilterContext(
        prefix=req.prefix,
        suffix=req.suffix,
        mode=prompt.mode,
        language=req.language,
        stop_tokens=prompt.stop,
        max_lines=min(max_lines, req.max_lines or max_lines),
    )
