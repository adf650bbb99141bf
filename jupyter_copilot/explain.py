"""Explain this cell / explain this error: chat prompt -> engine -> markdown stream.

The teaching mode (`on` / `hint` / `off`) comes from the server's policy only; a
request cannot choose it. In `hint` mode the prompt asks for guidance without the
corrected code, and because a small model does not always obey, fenced code blocks
are also removed from the answer before it reaches the student.
"""

from __future__ import annotations

import logging
import re
import time
from contextlib import aclosing
from typing import AsyncIterator, Optional

from .context import estimate_tokens
from .engines.base import CancelToken, Engine, GenerationParams, GenerationStats
from .policy import RESTRICTION, Policy
from .prompts import ASK_GROUNDING, EXPLAIN_LABELS, EXPLAIN_SYSTEM, EXPLAIN_TASK, HINT_CODE_REMOVED
from .schema import ExplainRequest, ModelCard, StreamChunk, Timing
from .usage import UsageLedger

log = logging.getLogger("jupyter_copilot")

FEATURE_OF_KIND = {"cell": "explain_cell", "error": "explain_error", "question": "ask"}

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# A fenced block, closed or still streaming (unclosed at the end of the text).
FENCED_CODE = re.compile(r"```[^\n]*\n.*?(```|\Z)", re.DOTALL)


def strip_ansi(text: str) -> str:
    """Tracebacks from IPython are coloured with ANSI codes; the model needs plain text."""
    return ANSI_ESCAPE.sub("", text)


def remove_code_blocks(markdown: str, language: str) -> str:
    return FENCED_CODE.sub(HINT_CODE_REMOVED[language] + "\n", markdown)


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


def notebook_parts(req: ExplainRequest, language: str, budget_tokens: int) -> list[str]:
    """Earlier cells, the cell and the error, as markdown sections of the prompt."""
    labels = EXPLAIN_LABELS[language]
    parts: list[str] = []
    context = [c.source for c in req.context_cells if c.cell_type == "code" and c.source.strip()]
    context = _tail_within(context, budget_tokens)
    if context:
        parts.append(f"## {labels['context']}\n```python\n" + "\n\n".join(context) + "\n```")
    if req.source.strip() or req.kind != "question":
        parts.append(f"## {labels['cell']}\n```python\n{req.source}\n```")
    if req.error is not None:
        trace = strip_ansi("\n".join(req.error.traceback))
        # The end of a traceback names the failing line; keep it when trimming.
        trace = trace[-4000:]
        parts.append(
            f"## {labels['error']}\n```\n{strip_ansi(req.error.ename)}: "
            f"{strip_ansi(req.error.evalue)}\n{trace}\n```"
        )
    return parts


def build_messages(
    req: ExplainRequest, mode: str, language: str, budget_tokens: int, course: str = ""
) -> list[dict]:
    parts = notebook_parts(req, language, budget_tokens)
    if course:
        parts.append(course)
    parts.append(EXPLAIN_TASK[(req.kind, mode, language)])
    system = EXPLAIN_SYSTEM[language] + (" " + ASK_GROUNDING[language] if course else "")
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


class ExplainService:
    def __init__(
        self,
        engine: Engine,
        card: ModelCard,
        policy: Policy,
        usage: UsageLedger,
        *,
        max_tokens: int = 400,
        budget_tokens: int = 1024,
        default_language: str = "en",
        log_prompts: bool = False,
        course=None,  # course.retrieval.CourseLibrary: passages and citations
        history_budget_tokens: int = 1024,
    ) -> None:
        from .conversation import TurnSigner
        from .service import EditorRegistry

        self.engine = engine
        self.card = card
        self.policy = policy
        self.usage = usage
        self.max_tokens = max_tokens
        self.budget_tokens = budget_tokens
        self.default_language = default_language
        self.log_prompts = log_prompts
        self.course = course
        self.history_budget_tokens = history_budget_tokens
        self.signer = TurnSigner()
        self.panels = EditorRegistry()  # a newer question of a panel cancels the older

    def _mode(self, req: ExplainRequest, user: str) -> str:
        mode = self.policy.require(FEATURE_OF_KIND[req.kind], user)  # "off" -> 403
        if req.kind == "question" and req.error is not None:
            # A question about an error is also an error explanation: the stricter wins.
            mode = max(mode, self.policy.require("explain_error", user), key=RESTRICTION.get)
        return mode

    async def _prompt(self, req: ExplainRequest, mode: str, language: str, user: str):
        """Messages, course grounding and the history's dropped count of one request."""
        from .conversation import course_block, question_messages, trusted_history

        grounding = await self.course.ground(req, user) if self.course else None
        hits = grounding.hits if grounding else []
        if req.kind != "question":
            course = course_block(hits, language) if hits else ""
            return build_messages(req, mode, language, self.budget_tokens, course), grounding, 0
        hint = (lambda text: remove_code_blocks(text, language)) if mode == "hint" else None
        history = trusted_history(req.history, user, self.signer, self.history_budget_tokens, hint)
        context = "\n\n".join(notebook_parts(req, language, self.budget_tokens))
        messages = question_messages(req, mode, language, context, history, hits)
        return messages, grounding, history.dropped

    async def explain(
        self, req: ExplainRequest, user: str, cancel: Optional[CancelToken] = None
    ) -> AsyncIterator[StreamChunk]:
        feature = FEATURE_OF_KIND[req.kind]
        mode = self._mode(req, user)
        language = req.language or self.default_language
        messages, grounding, dropped = await self._prompt(req, mode, language, user)
        sources = grounding.sources if grounding else None
        if self.log_prompts:
            log.info("copilot explain prompt for %s: %r", user, messages)
        token = cancel or CancelToken()
        self.panels.claim(user, req.editor_id, token)
        stats = GenerationStats()
        started = time.perf_counter()
        text, first_ms, failed, cited = "", None, False, False
        try:
            params = GenerationParams(max_tokens=self.max_tokens, temperature=0.2, top_p=0.9)
            async with aclosing(self.engine.chat(messages, params, token, stats)) as pieces:
                async for piece in pieces:
                    if first_ms is None:
                        first_ms = round((time.perf_counter() - started) * 1000, 1)
                    text += piece
                    shown = remove_code_blocks(text, language) if mode == "hint" else text
                    # Sources with the first words (the panel lists them at once) and at the end.
                    yield StreamChunk(id=req.request_id, text=shown, model=self.card.id,
                                      sources=None if cited else sources)  # fmt: skip
                    cited = True
        except Exception:
            failed = True
            raise
        finally:
            self.panels.release(user, req.editor_id, token)
            self.usage.record(
                user, feature,
                prompt_tokens=stats.prompt_tokens, generated_tokens=stats.generated_tokens,
                engine_seconds=stats.engine_seconds, cancelled=token.cancelled, error=failed,
            )
        final = remove_code_blocks(text, language) if mode == "hint" else text
        timing = Timing(
            first_token_ms=first_ms,
            total_ms=round((time.perf_counter() - started) * 1000, 1),
            prompt_tokens=stats.prompt_tokens,
            generated_tokens=stats.generated_tokens,
        )
        final = final.strip()
        yield StreamChunk(
            id=req.request_id, text=final, done=True, model=self.card.id, timing=timing,
            error=f"cancelled: {token.reason}" if token.cancelled else None,
            sources=sources, signature=self.signer.sign(user, final) if final else None,
            history_dropped=dropped or None,
        )
