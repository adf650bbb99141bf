"""The course policy in the database: every version kept (the console's history),
the newest in force, seen by every replica of the service within `check_interval`.

It has the interface of `policy.PolicyFile` (`document()`, `replace()`, `error`,
`loaded_at`, `path`), so `CoursePolicy` takes either. Fail-closed: a stored version
that no longer validates (a hand edit in the database, a newer schema) turns every
feature off with a reason that says so, until staff save a valid policy.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone

from sqlalchemy import func, insert, select

from ..policy import FEATURES, CoursePolicyDocument
from .tables import policy_versions
from .usage_store import UsageStore

log = logging.getLogger("jupyter_copilot.hub")
BROKEN_REASON = "the course policy cannot be read; every feature is off until staff fix it"
MAX_HISTORY = 200


def closed_policy(timezone_name: str) -> CoursePolicyDocument:
    return CoursePolicyDocument(
        timezone=timezone_name, default={f: "off" for f in FEATURES}, default_reason=BROKEN_REASON
    )


class DatabasePolicy:
    path = None  # no file: the admin API's `source` says "database"

    def __init__(
        self,
        store: UsageStore,
        *,
        initial: CoursePolicyDocument | None = None,
        check_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.check_interval = check_interval
        self._clock = clock
        self._initial = initial or CoursePolicyDocument()
        self._document = self._initial
        self._version: int | None = None
        self._checked_at = float("-inf")
        self.error: str | None = None
        self.loaded_at: float | None = None
        self.version_info: dict | None = None
        self._reload()

    def document(self) -> CoursePolicyDocument:
        if self._clock() - self._checked_at >= self.check_interval:
            self._reload()
        return self._document

    def _reload(self) -> None:
        self._checked_at = self._clock()
        try:
            with self.store.engine.connect() as conn:
                newest = conn.execute(select(func.max(policy_versions.c.id))).scalar()
                if newest is None or newest == self._version:
                    return
                row = conn.execute(
                    select(policy_versions).where(policy_versions.c.id == newest)
                ).mappings().one()
        except Exception as exc:  # noqa: BLE001 - the database is down: keep the last one
            self.error = f"database: {exc.__class__.__name__}: {exc}"[:500]
            log.error("jupyter-copilot: course policy not reloaded: %s", self.error)
            return
        self._version = newest
        self.version_info = _describe(row)
        try:
            document = CoursePolicyDocument.model_validate_json(row["document"])
        except ValueError as exc:
            self._document = closed_policy(self._initial.timezone)
            self.error = f"policy version {newest}: {exc}"[:2000]
            log.error("jupyter-copilot: stored course policy is invalid, features off: %s",
                      self.error)  # fmt: skip
        else:
            self._document, self.error = document, None
        self.loaded_at = time.time()

    def replace(self, document: CoursePolicyDocument, author: str = "", summary: str = "") -> int:
        version = record_version(self.store, document, author, summary or
                                 summarise(self._document, document))  # fmt: skip
        self._checked_at = float("-inf")
        self._reload()
        return version


def record_version(store: UsageStore, document: CoursePolicyDocument, author: str,
                   summary: str) -> int:  # fmt: skip
    with store.engine.begin() as conn:
        result = conn.execute(
            insert(policy_versions).values(
                at=datetime.now(timezone.utc).replace(tzinfo=None),
                author=author or "?",
                summary=summary[:2000],
                document=document.model_dump_json(exclude_defaults=True),
            )
        )
        return int(result.inserted_primary_key[0])


def history(store: UsageStore, limit: int = 50) -> list[dict]:
    """The newest versions first: who, when, what changed, and the document."""
    limit = max(1, min(limit, MAX_HISTORY))
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(policy_versions).order_by(policy_versions.c.id.desc()).limit(limit)
        ).mappings().all()
    out = []
    for row in rows:
        item = _describe(row)
        try:
            item["policy"] = json.loads(row["document"])
        except ValueError:
            item["policy"] = None
        out.append(item)
    return out


def _describe(row) -> dict:
    return {
        "version": row["id"],
        "at": row["at"].replace(tzinfo=timezone.utc).isoformat(),
        "author": row["author"],
        "summary": row["summary"],
    }


def summarise(old: CoursePolicyDocument, new: CoursePolicyDocument) -> str:
    """What changed, in a line: defaults per feature, rules added/removed/changed."""
    parts = []
    for feature in FEATURES:
        before, after = old.default.get(feature, "on"), new.default.get(feature, "on")
        if before != after:
            parts.append(f"default {feature}: {before} -> {after}")
    if old.timezone != new.timezone:
        parts.append(f"timezone: {old.timezone} -> {new.timezone}")
    names_old = {_rule_key(r, i): r for i, r in enumerate(old.rules)}
    names_new = {_rule_key(r, i): r for i, r in enumerate(new.rules)}
    for key, rule in names_new.items():
        if key not in names_old:
            parts.append(f"+ rule {key}")
        elif names_old[key] != rule:
            parts.append(f"~ rule {key}")
    for key in names_old:
        if key not in names_new:
            parts.append(f"- rule {key}")
    return "; ".join(parts) or "no change"


def _rule_key(rule, index: int) -> str:
    return repr(rule.name) if rule.name else f"#{index + 1}"
