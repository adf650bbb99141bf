"""Explain this cell / explain this error: chat prompt -> engine -> markdown stream.

The teaching mode (`on` / `hint` / `off`) comes from the server's policy only; a
request cannot choose it. In `hint` mode the prompt asks for guidance without the
corrected code, and because a small model does not always obey, fenced code blocks
are also removed from the answer before it reaches the student.
"""

from __future__ import annotations

import asyncio
import re
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, AsyncIterator, Coroutine, Optional

from .context import estimate_tokens
from .context.namespace import namespace_block
from .engines.base import CancelToken, Engine, GenerationParams, GenerationStats
from .policy import Policy
from .prompts import (
    ASK_GROUNDING,
    EXPLAIN_AFTER_NOTEBOOK,
    EXPLAIN_AFTER_NOTEBOOK_NAMED,
    EXPLAIN_LABELS,
    EXPLAIN_SYSTEM,
    EXPLAIN_TASK,
    HINT_CODE_REMOVED,
)
from .schema import ExplainRequest, ModelCard, StreamChunk
from .service import ModelService, ServingSettings
from .tracebacks import strip_ansi, student_traceback
from .usage import UsageLedger

FEATURE_OF_KIND = {"cell": "explain_cell", "error": "explain_error", "question": "ask"}
# Usage of explanations evaluated ahead (`ExplainService.prepare`), asked for or not.
PREPARE_FEATURE = "prepare_explanation"

# -- hint mode, on the output: whatever markdown the model uses to show code --------
# A fenced block (``` or ~~~, up to 3 spaces in, any length), closed by the same fence
# or still streaming (unclosed at the end of the text).
FENCED_CODE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})[^\n]*\n?.*?(?:^[ \t]{0,3}\1[`~]*[ \t]*$|\Z)",
                         re.DOTALL | re.MULTILINE)  # fmt: skip
# An indented code block: lines of 4+ spaces (or a tab) after a blank line.
INDENTED_CODE = re.compile(r"(?:(?<=\n\n)|\A)(?:(?: {4}|\t)[^\n]*(?:\n|\Z))+")
# HTML code the panel's markdown renderer would show as code.
HTML_CODE = re.compile(r"<(pre|code)\b[^>]*>.*?(?:</\1\s*>|\Z)", re.DOTALL | re.IGNORECASE)
# Inline code long enough to be a solution rather than a name: `len(xs)` and
# `collections.Counter` stay, `return sum(xs) / len(xs)` goes.
INLINE_SOLUTION_CHARS = 24
LONG_INLINE_CODE = re.compile(r"(`+)(?=[^`\n]{%d,}?\1)[^`\n]+?\1" % INLINE_SOLUTION_CHARS)

# -- what students write cannot steer the prompt -------------------------------------
# Chat-template control tokens (<|im_start|>, <|endoftext|>, <|fim_middle|>, [INST],
# <<SYS>>, <s>): the engine parses special tokens in the text it is given, so a
# student's cell could otherwise end the user turn and write the system's part.
SPECIAL_TOKEN = re.compile(r"<\|[^|<>\n]{0,40}\|>|\[/?INST\]|<</?SYS>>|</?s>", re.IGNORECASE)


def neutralise(text: str) -> str:
    """Student text with chat-template control tokens broken up (a zero-width space
    after the first character: the model still reads them, the tokenizer no longer
    takes them for control tokens)."""
    return SPECIAL_TOKEN.sub(lambda m: m.group(0)[0] + "\u200b" + m.group(0)[1:], text)


def _fence_for(text: str, shortest: int) -> str:
    """Backticks `text` cannot close: longer than any run of them in it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(shortest, longest + 1)


def fenced(body: str, info: str = "") -> str:
    """`body` in a code fence it cannot close."""
    fence = _fence_for(body, 3)
    return f"{fence}{info}\n{body}\n{fence}"


def inline_code(text: str) -> str:
    """`text` as inline code it cannot close (one line)."""
    fence = _fence_for(text, 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def remove_code_blocks(markdown: str, language: str) -> str:
    """Hint mode: no code in the answer, however the model formats it."""
    removed = HINT_CODE_REMOVED[language]
    markdown = FENCED_CODE.sub(removed + "\n", markdown)
    markdown = HTML_CODE.sub(removed, markdown)
    markdown = INDENTED_CODE.sub(removed + "\n", markdown)
    return LONG_INLINE_CODE.sub(removed, markdown)


# After the notebook, a cell up to this size is quoted again in the question (as cheap
# as naming it); a longer one is named by its first and last lines, cut to this length.
QUOTE_MAX_TOKENS = 48
NAMED_LINE_CHARS = 80
# An exception's message past this is data, not explanation (the browser sends 4 000).
EVALUE_CHARS = 2000


def _tail_within(cells: list[str], budget_tokens: int) -> list[str]:
    """The last cells that fit the budget (nearest cells matter most for an explanation)."""
    kept: list[str] = []
    used = 0
    for source in reversed(cells):
        cost = estimate_tokens(source)
        if used + cost > budget_tokens:
            break
        kept.append(source)
        used += cost
    return list(reversed(kept))


def notebook_parts(req: ExplainRequest, language: str, budget_tokens: int,
                   quote_cell: bool = True) -> list[str]:  # fmt: skip
    """Earlier cells, the cell (unless `quote_cell` is False) and the error, as markdown
    sections of the prompt."""
    labels = EXPLAIN_LABELS[language]
    parts: list[str] = []
    context = [c.source for c in req.context_cells if c.cell_type == "code" and c.source.strip()]
    context = _tail_within(context, budget_tokens)
    if context:
        parts.append(f"## {labels['context']}\n" + fenced(neutralise("\n\n".join(context)), "python"))
    # The kernel's names (a KeyError's real columns): here only when the chat stands
    # alone; written after the notebook, the document shows them (budget 0 there).
    names = namespace_block(req.kernel_namespace, comment="", marker="",
                            budget_tokens=budget_tokens, clean=neutralise)  # fmt: skip
    if names:
        parts.append(f"## {labels['kernel']}\n" + fenced(names.partition("\n")[2].rstrip("\n")))
    if quote_cell and (req.source.strip() or req.kind != "question"):
        parts.append(f"## {labels['cell']}\n" + fenced(neutralise(req.source), "python"))
    if req.error is not None:
        # The student's frames and where the library raised, not its internals.
        trace = student_traceback(req.error.traceback)
        evalue = strip_ansi(req.error.evalue[:EVALUE_CHARS])
        error = f"{strip_ansi(req.error.ename)}: {evalue}\n{trace}"
        parts.append(f"## {labels['error']}\n" + fenced(neutralise(error)))
    return parts


def after_notebook_sentence(source: str, language: str, document: str) -> tuple[bool, str]:
    """(quote the cell?, the sentence that says where it is) for an explanation read
    after `document`: a short cell is quoted again, a longer one named by its length
    and its first and last lines (prompts.EXPLAIN_AFTER_NOTEBOOK_NAMED), if the
    document shows all of it (a cell longer than the completions' budget is cut)."""
    all_lines = source.splitlines()  # what counts as a line, once, for both uses below
    lines = [line.strip() for line in all_lines if line.strip()]
    if (estimate_tokens(source) <= QUOTE_MAX_TOKENS or len(lines) < 2
            or not document.endswith(source)):  # fmt: skip
        return True, EXPLAIN_AFTER_NOTEBOOK[language]
    first, last = (inline_code(neutralise(line[:NAMED_LINE_CHARS])) for line in (lines[0], lines[-1]))
    return False, EXPLAIN_AFTER_NOTEBOOK_NAMED[language].format(lines=len(all_lines), first=first,
                                                                last=last)  # fmt: skip


def build_messages(
    req: ExplainRequest, mode: str, language: str, budget_tokens: int, course: str = "",
    document: str = "",
) -> list[dict]:
    """The chat of an explanation. `document`: the notebook the engine reads it after
    (`GenerationParams.document`; '' for none): the earlier cells are then left out,
    and a long cell is named rather than quoted again (`after_notebook_sentence`)."""
    quote, where = after_notebook_sentence(req.source, language, document) if document else (True, "")
    parts = notebook_parts(req, language, 0 if document else budget_tokens, quote)
    if course:
        parts.append(course)
    task = EXPLAIN_TASK[(req.kind, mode, language)]
    parts.append(f"{where} {task}" if where else task)
    system = EXPLAIN_SYSTEM[language] + (" " + ASK_GROUNDING[language] if course else "")
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def policy_mode(policy: Policy, req: ExplainRequest, user: str) -> str:
    """The teaching mode for this request, decided by the server: its kind's feature
    (an error's is never more open than a cell's: `policy.BOUNDED_BY`), and, whatever
    the kind, explain-error's too when the request carries an error (its prompt shows
    it): a question about an error, or a cell sent with one, is also an error's
    explanation. The strictest wins."""
    features = [FEATURE_OF_KIND[req.kind]]
    if req.error is not None:
        features.append("explain_error")
    return policy.require_strictest(features, user, path=req.path)


@dataclass
class ExplainSettings(ServingSettings):
    max_tokens: int = 400
    budget_tokens: int = 1024  # earlier cells given as context
    default_language: str = "en"
    history_budget_tokens: int = 1024  # earlier turns of a conversation


class ExplainService(ModelService):
    """Explanations and questions. A newer explanation or question of the same editor
    (a cell, or a panel's conversation) cancels the older one: a second click must
    not leave the first running."""

    settings: ExplainSettings

    def __init__(
        self,
        engine: Engine,
        card: ModelCard,
        policy: Policy,
        usage: UsageLedger,
        settings: Optional[ExplainSettings] = None,
        course=None,  # course.retrieval.CourseLibrary: passages and citations
        signer=None,  # conversation.TurnSigner; default: a key of this process
        notebook_document=None,  # CompletionService.notebook_document, same engine
    ) -> None:
        from .conversation import SaidTurns, TurnSigner

        super().__init__(engine, card, policy, usage, settings or ExplainSettings())
        self.course = course
        self.signer = signer or TurnSigner()
        self.said = SaidTurns()
        # Cells and errors are explained after the notebook as the completions show
        # it, in their cache (first words in seconds, not the whole notebook's
        # evaluation): only where the engine can, and is the completions' own.
        self.notebook_document = (
            notebook_document if getattr(engine, "chats_after_document", False) else None
        )

    async def _document(self, req: ExplainRequest) -> str:
        """The notebook to write this explanation or question after; '' for none: a
        question without a cell, no shared engine, or student text shaped like a
        control token (the document is the completions' prompt, which does not break
        every such shape; the chat's own messages do: `neutralise`)."""
        if self.notebook_document is None or not req.source.strip():
            return ""
        texts = [req.source, *(cell.source for cell in req.context_cells),
                 *(f"{entry.name} {entry.summary}" for entry in req.kernel_namespace)]
        # Off the event loop: a notebook's worth of text (bounded by the schema).
        if await asyncio.to_thread(lambda: any(SPECIAL_TOKEN.search(text) for text in texts)):
            return ""
        return await self.notebook_document(req.source, req.context_cells, req.path,
                                            req.kernel_namespace)

    async def _prompt(self, req: ExplainRequest, mode: str, language: str, user: str):
        """Messages, course grounding, the history's dropped count and the notebook
        document (`_document`) of one request."""
        from .conversation import course_block, question_chat

        budget = self.settings.budget_tokens
        grounding = await self.course.ground(req, user) if self.course else None
        hits = grounding.hits if grounding else []
        if req.kind != "question":
            course = course_block(hits, language) if hits else ""
            document = await self._document(req)
            # Off the event loop: a notebook's worth of text and a traceback to read.
            messages = await asyncio.to_thread(build_messages, req, mode, language, budget,
                                               course, document)  # fmt: skip
            return messages, grounding, 0, document
        document = await self._document(req)
        # Off the event loop: the history's signatures, the document's digest, the cells.
        messages, dropped = await asyncio.to_thread(
            question_chat, req, user, mode, language, self.signer, self.said, hits, document,
            budget, self.settings.history_budget_tokens,
        )  # fmt: skip
        return messages, grounding, dropped, document

    def _params(self, user: str, document: str) -> GenerationParams:
        """An explanation's generation; the same for the one prepared ahead (`prepare`),
        or that would prepare another prompt (the child cuts both to fit alike)."""
        settings = self.settings
        return GenerationParams(max_tokens=settings.max_tokens, temperature=0.2, top_p=0.9,
                                cache_salt=settings.cache_salt(user), document=document)  # fmt: skip

    def prepare(self, req: ExplainRequest, user: str) -> Coroutine[Any, Any, None]:
        """Refusals raise now (as `explain`'s); the returned coroutine evaluates ahead
        the prompt this explanation of a cell or an error will have, in the engine's
        conversation cache, so that its first words come at once when the student
        asks (the frontend prepares on intent: `labextension/src/explain/prepare.ts`).
        Best effort, a bet like a warm-up: the engine runs it only when idle and stops
        it for any request someone waits for; nothing for questions (their history is
        still being written), nor where chats are not written after the notebook."""
        mode = policy_mode(self.policy, req, user)  # "off" -> PolicyRefusal (403)
        return self._prepare(req, mode, user)

    async def _prepare(self, req: ExplainRequest, mode: str, user: str) -> None:
        if req.kind != "question" and self.notebook_document is not None:
            await self.work_ahead(lambda: self._evaluate_ahead(req, mode, user))

    async def _evaluate_ahead(self, req: ExplainRequest, mode: str, user: str) -> None:
        if self.engine.serving():
            return  # the engine would drop it: not even the prompt is built
        language = req.language or self.settings.default_language
        messages, _, _, document = await self._prompt(req, mode, language, user)
        if not document:
            return
        stats = GenerationStats()
        await self.engine.warm_chat(messages, self._params(user, document), stats)
        if stats.prompt_tokens:  # it ran (an engine busy with a request skips it)
            # Counted apart: frugality reports what the bets cost, taken or not.
            self.usage.record(user, PREPARE_FEATURE, prompt_tokens=stats.prompt_tokens,
                              cached_tokens=stats.cached_tokens,
                              engine_seconds=stats.engine_seconds,
                              cancelled=stats.stop_reason == "cancelled")  # fmt: skip

    async def explain(
        self, req: ExplainRequest, user: str, cancel: Optional[CancelToken] = None
    ) -> AsyncIterator[StreamChunk]:
        feature = FEATURE_OF_KIND[req.kind]
        mode = policy_mode(self.policy, req, user)  # "off" -> PolicyRefusal (403)
        self.check_ready()
        language = req.language or self.settings.default_language
        messages, grounding, dropped, document = await self._prompt(req, mode, language, user)
        sources = grounding.sources if grounding else None
        self.log_prompt("explain prompt", user, messages)
        run = self.start_run(user, feature, cancel)
        scope = self.editor_scope(user, req.editor_id)
        self.editors.claim(*scope, run.cancel)

        def clean(raw: str) -> tuple[str, bool]:
            return (remove_code_blocks(raw, language) if mode == "hint" else raw), False

        final, cited = "", False
        try:
            pieces = self.engine.chat(messages, self._params(user, document), run.cancel, run.stats)
            async with aclosing(run.stream(pieces, clean)) as texts:
                async for final in texts:
                    # Sources with the first words (the panel lists them at once) and at the end.
                    yield StreamChunk(id=req.request_id, text=final, model=self.card.id,
                                      sources=None if cited else sources)  # fmt: skip
                    cited = True
        finally:
            self.editors.release(*scope, run.cancel)
        final = final.strip()
        signature = self.signer.sign(user, final) if final else None
        if signature and document:
            self.said.record(user, signature, messages[-1]["content"], document, mode)
        yield StreamChunk(id=req.request_id, text=final, done=True, model=self.card.id,
                          timing=run.timing(), error=run.cancelled_message(),
                          stop_reason=run.stop_reason(), sources=sources, signature=signature,
                          history_dropped=dropped or None)  # fmt: skip
