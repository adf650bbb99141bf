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
from .policy import Policy
from .prompts import EXPLAIN_LABELS, EXPLAIN_SYSTEM, EXPLAIN_TASK, HINT_CODE_REMOVED
from .schema import ExplainRequest, ModelCard, StreamChunk, Timing
from .usage import UsageLedger

log = logging.getLogger("jupyter_copilot")

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


def build_messages(req: ExplainRequest, mode: str, language: str, budget_tokens: int) -> list[dict]:
    labels = EXPLAIN_LABELS[language]
    parts: list[str] = []
    context = [c.source for c in req.context_cells if c.cell_type == "code" and c.source.strip()]
    context = _tail_within(context, budget_tokens)
    if context:
        parts.append(f"## {labels['context']}\n```python\n" + "\n\n".join(context) + "\n```")
    parts.append(f"## {labels['cell']}\n```python\n{req.source}\n```")
    if req.kind == "error" and req.error is not None:
        trace = strip_ansi("\n".join(req.error.traceback))
        # The end of a traceback names the failing line; keep it when trimming.
        trace = trace[-4000:]
        parts.append(
            f"## {labels['error']}\n```\n{strip_ansi(req.error.ename)}: "
            f"{strip_ansi(req.error.evalue)}\n{trace}\n```"
        )
    parts.append(EXPLAIN_TASK[(req.kind, mode, language)])
    return [
        {"role": "system", "content": EXPLAIN_SYSTEM[language]},
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
    ) -> None:
        self.engine = engine
        self.card = card
        self.policy = policy
        self.usage = usage
        self.max_tokens = max_tokens
        self.budget_tokens = budget_tokens
        self.default_language = default_language
        self.log_prompts = log_prompts

    async def explain(
        self, req: ExplainRequest, user: str, cancel: Optional[CancelToken] = None
    ) -> AsyncIterator[StreamChunk]:
        feature = "explain_cell" if req.kind == "cell" else "explain_error"
        mode = self.policy.require(feature, user, path=req.path)  # "off" -> PolicyRefusal (403)
        language = req.language or self.default_language
        messages = build_messages(req, mode, language, self.budget_tokens)
        if self.log_prompts:
            log.info("copilot explain prompt for %s: %r", user, messages)
        token = cancel or CancelToken()
        stats = GenerationStats()
        started = time.perf_counter()
        text, first_ms, failed = "", None, False
        try:
            params = GenerationParams(max_tokens=self.max_tokens, temperature=0.2, top_p=0.9)
            async with aclosing(self.engine.chat(messages, params, token, stats)) as pieces:
                async for piece in pieces:
                    if first_ms is None:
                        first_ms = round((time.perf_counter() - started) * 1000, 1)
                    text += piece
                    shown = remove_code_blocks(text, language) if mode == "hint" else text
                    yield StreamChunk(id=req.request_id, text=shown, model=self.card.id)
        except Exception:
            failed = True
            raise
        finally:
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
        yield StreamChunk(
            id=req.request_id, text=final.strip(), done=True, model=self.card.id, timing=timing,
            error=f"cancelled: {token.reason}" if token.cancelled else None,
        )
