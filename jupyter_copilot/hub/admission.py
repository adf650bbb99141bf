"""Which requests of the campus service reach the engine, and when (issue #10, item 6).

The engine computes a few sequences at once (llama-server ``--parallel``, vLLM
``--max-num-seqs``). Sending it more than that only queues them inside the engine,
where a completion waits until the student has typed on — and then evicts the
prompt cache of the requests someone still waits for. Measured on 2 cores, completed
throughput fell from 5.8/s at 50 typing students to 1/s at 200. So the service keeps
the queue itself, where it can see who is still waiting:

- at most `engine_slots` requests are on the engine; the others wait here;
- a newer request of the same student and editor supersedes the older one: a waiting
  one is dropped before it reaches the engine, a running one is cancelled;
- a request whose expected wait is longer than its feature's `admission_max_wait` is
  refused at once (429 + Retry-After) instead of queueing to be stale; one that waits
  that long anyway is refused then;
- a freed slot goes to the waiting student who holds the fewest slots (then the
  oldest request), and nobody holds more than a fair share while others wait;
- a request whose client went away leaves the queue.

Everything runs on the service's event loop: no locks.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from traitlets import Dict, HasTraits, Int

from ..engines.base import CancelToken
from .quotas import QuotaExceeded


class Dropped(Exception):
    """The request left the queue without reaching the engine; nobody waits for it
    (the reply says "cancelled: <reason>", as for any cancelled request)."""

    reason = "dropped"


class Superseded(Dropped):
    """A newer request of the same editor arrived while this one waited."""

    reason = "superseded by a newer request"


class Abandoned(Dropped):
    """The client went away while the request waited."""

    reason = "client disconnected"


class AdmissionTraits(HasTraits):
    engine_slots = Int(
        4,
        help="""Sequences the engine computes at once (llama-server --parallel, vLLM
        --max-num-seqs): requests beyond wait in the service, where superseded and
        abandoned ones are dropped before they cost engine time.""",
    ).tag(config=True)

    admission_max_wait = Dict(
        {"completion": 1.5, "explain_cell": 15.0, "explain_error": 15.0, "warm": 0.0},
        help="""Seconds a request of each feature may wait for an engine slot; a
        request expected to wait longer gets 429 + Retry-After at once. A completion
        that comes after the student typed on is useless; warming never waits.""",
    ).tag(config=True)

    def make_admission(self) -> Admission:
        return Admission(self.engine_slots, {k: float(v) for k, v in self.admission_max_wait.items()})


@dataclass(eq=False)
class _Entry:
    user: str
    editor: str | None
    feature: str
    cancel: CancelToken
    arrived: float
    granted: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Admission:
    def __init__(
        self,
        slots: int,
        max_wait: dict[str, float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slots = max(1, slots)
        self.max_wait = max_wait
        self._clock = clock
        self._waiting: list[_Entry] = []
        self._running: list[_Entry] = []
        self._editors: dict[tuple[str, str], _Entry] = {}  # the newest entry of each editor
        self._hold_seconds = 0.5  # moving average of how long a request holds a slot
        self.dropped = {"superseded": 0, "shed": 0, "timed_out": 0, "abandoned": 0}

    # -- what the handlers use ------------------------------------------------------------
    @asynccontextmanager
    async def slot(
        self, user: str, editor: str | None, feature: str, cancel: CancelToken
    ) -> AsyncIterator[None]:
        """Hold an engine slot for the block. Raises `Dropped` (superseded, or `cancel`
        fired while waiting) or `QuotaExceeded` (429) when the wait is too long."""
        entry = _Entry(user, editor, feature, cancel, self._clock())
        self._supersede(entry)
        self._shed_if_hopeless(entry)
        self._waiting.append(entry)
        self._grant()
        try:
            await self._wait_for_grant(entry)
        except BaseException:
            self._leave(entry)
            raise
        started = self._clock()
        try:
            yield
        finally:
            held = self._clock() - started
            self._hold_seconds += 0.2 * (held - self._hold_seconds)
            self._leave(entry)

    def snapshot(self) -> dict:
        return {
            "slots": self.slots,
            "running": len(self._running),
            "waiting": len(self._waiting),
            "dropped": dict(self.dropped),
        }

    # -- internals ---------------------------------------------------------------------------
    def _supersede(self, entry: _Entry) -> None:
        if not entry.editor:
            return
        key = (entry.user, entry.editor)
        older = self._editors.get(key)
        self._editors[key] = entry
        if older is None:
            return
        if older in self._waiting:
            self._waiting.remove(older)
            if not older.granted.done():
                older.granted.set_exception(Superseded())
            self.dropped["superseded"] += 1
        elif older in self._running:
            older.cancel.cancel(Superseded.reason)  # stops the engine work; frees the slot

    def _shed_if_hopeless(self, entry: _Entry) -> None:
        limit = self.max_wait.get(entry.feature, 0.0)
        if len(self._running) < self.slots and not self._waiting:
            return  # a free slot: no wait at all
        expected = (len(self._waiting) + 1) / self.slots * self._hold_seconds
        if limit <= 0 or expected > limit:
            self.dropped["shed"] += 1
            self._forget_editor(entry)
            raise QuotaExceeded(
                "the engine is busy; try again",
                retry_after=max(1, math.ceil(expected)),
                limit="busy",
            )

    async def _wait_for_grant(self, entry: _Entry) -> None:
        if entry.granted.done():
            return entry.granted.result()
        limit = self.max_wait.get(entry.feature, 0.0)
        cancelled = asyncio.ensure_future(entry.cancel.wait())
        try:
            done, _ = await asyncio.wait(
                {entry.granted, cancelled}, timeout=limit, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            cancelled.cancel()
        if entry.granted.done():
            return entry.granted.result()  # granted, or Superseded raised
        if cancelled in done:
            self.dropped["abandoned"] += 1
            raise Abandoned()
        self.dropped["timed_out"] += 1
        raise QuotaExceeded(
            "the engine is busy; try again", retry_after=max(1, math.ceil(limit)), limit="busy"
        )

    def _leave(self, entry: _Entry) -> None:
        if entry in self._waiting:
            self._waiting.remove(entry)
        if entry in self._running:
            self._running.remove(entry)
        self._forget_editor(entry)
        self._grant()

    def _forget_editor(self, entry: _Entry) -> None:
        if entry.editor and self._editors.get((entry.user, entry.editor)) is entry:
            del self._editors[(entry.user, entry.editor)]

    def _grant(self) -> None:
        """Give free slots to waiting requests: first to the student who holds the
        fewest slots, then to the oldest request. So a student gets a second slot only
        while nobody holding fewer waits (max-min fair shares), and a free slot never
        stays idle while someone waits."""
        while len(self._running) < self.slots and self._waiting:
            held: dict[str, int] = {}
            for running in self._running:
                held[running.user] = held.get(running.user, 0) + 1
            chosen = min(self._waiting, key=lambda w: (held.get(w.user, 0), w.arrived))
            self._waiting.remove(chosen)
            if chosen.cancel.cancelled:
                self._forget_editor(chosen)
                if not chosen.granted.done():
                    chosen.granted.set_exception(Abandoned())
                continue
            self._running.append(chosen)
            chosen.granted.set_result(None)
