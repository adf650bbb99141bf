"""Course passages for one explanation or question, within a token budget, and citations.

`CourseLibrary` knows which course a user follows: one index on a single server
(`CopilotApp.course_material`), one per course group on the campus service
(`CopilotHubService.course_material`, keyed by JupyterHub group; "*" for everyone).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..context import estimate_tokens
from ..schema import ExplainRequest, Source
from ..explain import strip_ansi
from .index import CourseIndex, Hit

log = logging.getLogger("jupyter_copilot")

EXCERPT_CHARS = 280  # what the panel shows under a citation
MAX_QUERY_CHARS = 4000  # the question, the cell and the error's last line are enough


@dataclass
class Grounding:
    """The passages given to the model and the citations shown to the student."""

    hits: list[Hit]
    sources: list[Source]


def query_of(req: ExplainRequest) -> str:
    """What to look up: the question first, then the error, then the cell's code."""
    parts = []
    if req.question:
        parts.append(req.question)
    if req.error is not None:
        parts.append(f"{strip_ansi(req.error.ename)} {strip_ansi(req.error.evalue)[:300]}")
    if req.source:
        parts.append(req.source[:1500])
    return "\n".join(parts)[:MAX_QUERY_CHARS]


def within_budget(hits: list[Hit], budget_tokens: int) -> list[Hit]:
    """The best passages that fit the budget, the last one cut to what is left."""
    kept, used = [], 0
    for hit in hits:
        cost = estimate_tokens(hit.text)
        if used + cost > budget_tokens:
            room = budget_tokens - used
            if room >= 60:  # a stub of a passage helps nobody
                kept.append(Hit(hit.path, hit.title, hit.text[: room * 3], hit.cell_index,
                                hit.page, hit.score))  # fmt: skip
            break
        kept.append(hit)
        used += cost
    return kept


def excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1] + "…"


class CourseLibrary:
    """Course indexes by course group; `ground()` is what the explain service calls."""

    def __init__(
        self,
        material: Mapping[str, Iterable[str]],
        index_dir: str | os.PathLike,
        groups_of: Callable[[str], Iterable[str]] = lambda user: (),
        *,
        budget_tokens: int = 600,
        max_sources: int = 3,
        student_prefix: str = "",
        check_interval: float = 30.0,
    ) -> None:
        self.groups_of = groups_of
        self.budget_tokens = budget_tokens
        self.max_sources = max_sources
        self.student_prefix = student_prefix.strip("/")
        self.indexes: dict[str, CourseIndex] = {}
        for group, folders in material.items():
            folders = [str(Path(f).expanduser()) for f in folders]
            key = hashlib.sha256("\n".join(sorted(folders)).encode()).hexdigest()[:16]
            db = ":memory:" if str(index_dir) == ":memory:" else Path(index_dir) / f"course-{key}.sqlite"
            self.indexes[group] = CourseIndex(folders, db, check_interval=check_interval)
        # The first sync of a big course takes seconds: not in the server's start-up path.
        self._first_sync = threading.Thread(target=self.sync_all, daemon=True,
                                            name="copilot-course-index")  # fmt: skip
        self._first_sync.start()

    def sync_all(self) -> None:
        for group, index in self.indexes.items():
            try:
                index.sync()
            except Exception:  # noqa: BLE001 - a broken course must not stop the server
                log.exception("jupyter-copilot: cannot index the course material of %r", group)

    def index_for(self, user: str) -> Optional[CourseIndex]:
        groups = sorted(self.groups_of(user)) if user else []
        for group in groups:
            if group in self.indexes:
                return self.indexes[group]
        return self.indexes.get("*")

    def ground_sync(self, req: ExplainRequest, user: str) -> Optional[Grounding]:
        index = self.index_for(user)
        if index is None:
            return None
        self._first_sync.join()  # the first question waits for the first index
        index.maybe_sync()
        hits = within_budget(index.search(query_of(req), limit=self.max_sources), self.budget_tokens)
        if not hits:
            return None
        sources = [
            Source(
                path=f"{self.student_prefix}/{hit.path}" if self.student_prefix else hit.path,
                cell_index=hit.cell_index,
                title=hit.title,
                excerpt=excerpt(hit.text),
            )
            for hit in hits
        ]
        return Grounding(hits, sources)

    async def ground(self, req: ExplainRequest, user: str) -> Optional[Grounding]:
        # SQLite and file stats block: keep them off the server's event loop.
        return await asyncio.to_thread(self.ground_sync, req, user)

    def close(self) -> None:
        for index in self.indexes.values():
            index.close()
