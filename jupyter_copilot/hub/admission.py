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

With `engine_prompt_caches` > 0 (llama-server: its ``--parallel``), each of the
engine's prompt caches is a **seat** lent to one student at a time, and their requests
go to it (llama-server's ``id_slot``): their next prompt extends the last one, so it is
mostly cached. Without seats, with more typing students than slots, every slot serves
another student each time: at 200 students on 2 cores 23-43 % of prompt tokens were
cached and 75-80 % of engine work was cancelled by typing before it finished
(docs/deployment.md §7). A seat changes hands only when its student has not asked for
`seat_idle_seconds`, or has held it `seat_tenure_seconds` while others wait (then
the student seated least recently gets it): under overload some students are served
well, in turns, instead of everyone badly; a student without a seat who cannot get one
soon is told at once (429, Retry-After: when the next seat can change hands).

Everything runs on the service's event loop: no locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from traitlets import Dict, Float, HasTraits, Int

from ..engines.base import CancelToken, engine_cache_slot
from .quotas import QuotaExceeded

# Seconds a free seat is kept for a student whose turn it is and who is due back (a
# typing student asks again at their next pause, 1-2 s after their Retry-After).
TURN_GRACE = 3.0


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

    engine_prompt_caches = Int(
        0,
        help="""Prompt caches the engine keeps, one per student at a time (llama-server:
        its --parallel, which may exceed engine_slots: the slots beyond are caches that
        wait their turn). Each student's requests go to their own cache (id_slot), so
        their prompt stays cached while they type; under overload a cache changes
        hands in turns (seat_idle_seconds, seat_tenure_seconds). Worth it with more
        caches than engine_slots (e.g. llama-server --parallel 16, engine_slots 4): with
        as many caches as slots, the few seats turn away students a small engine could
        still serve. -1: as many as llama-server has slots (GET /props); 0: no seats
        (and what vLLM needs: its prefix cache is shared by all sequences).""",
    ).tag(config=True)

    seat_idle_seconds = Float(
        5.0,
        help="""A student who has not asked for this long gives up their prompt cache
        to a student waiting for one.""",
    ).tag(config=True)

    seat_tenure_seconds = Float(
        30.0,
        help="""A student who has held a prompt cache this long gives it up between
        two requests when another student waits for one (turns under overload).""",
    ).tag(config=True)

    def make_admission(self) -> Admission:
        seats = SeatRules(max(0, self.engine_prompt_caches), self.seat_idle_seconds,
                          self.seat_tenure_seconds)  # fmt: skip
        waits = {k: float(v) for k, v in self.admission_max_wait.items()}
        return Admission(self.engine_slots, waits, seats=seats)


@dataclass(frozen=True)
class SeatRules:
    count: int = 0  # 0: no seats
    idle: float = 5.0
    tenure: float = 30.0


@dataclass(eq=False)
class _Seat:
    """One of the engine's prompt caches, and the student whose prompt it holds."""

    index: int
    owner: str | None = None
    taken: float = 0.0  # when the owner got it
    last_asked: float = -math.inf  # the owner's last request (arrival or end)
    busy: bool = False

    def free_for_others(self, now: float, rules: SeatRules) -> bool:
        """Whether a student waiting for a seat may take this one (once it is free)."""
        return (
            self.owner is None
            or now - self.last_asked >= rules.idle
            or now - self.taken >= rules.tenure
        )

    def changes_hands_in(self, now: float, rules: SeatRules) -> float:
        if self.free_for_others(now, rules):
            return 0.0
        return min(rules.idle - (now - self.last_asked), rules.tenure - (now - self.taken))


@dataclass(eq=False)
class _Entry:
    user: str
    editor: str | None
    feature: str
    cancel: CancelToken
    arrived: float
    seat: _Seat | None = None
    granted: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Admission:
    def __init__(
        self,
        slots: int,
        max_wait: dict[str, float],
        clock: Callable[[], float] = time.monotonic,
        seats: SeatRules | None = None,
    ) -> None:
        self.slots = max(1, slots)
        self.max_wait = max_wait
        self._clock = clock
        self.seat_rules = seats or SeatRules()
        self._seats = [_Seat(i) for i in range(max(0, self.seat_rules.count))]
        self._seated_at: dict[str, float] = {}  # when each student last got a seat
        self._turns: dict[str, float] = {}  # refused for want of a seat: when told to come back
        self._waiting: list[_Entry] = []
        self._running: list[_Entry] = []
        self._editors: dict[tuple[str, str], _Entry] = {}  # the newest entry of each editor
        self._hold_seconds = 0.5  # moving average of how long a request holds a slot
        self.dropped = {"superseded": 0, "shed": 0, "timed_out": 0, "abandoned": 0}
        self.seat_changes = 0

    # -- what the handlers use ------------------------------------------------------------
    @asynccontextmanager
    async def slot(
        self, user: str, editor: str | None, feature: str, cancel: CancelToken
    ) -> AsyncIterator[None]:
        """Hold an engine slot for the block. Raises `Dropped` (superseded, or `cancel`
        fired while waiting) or `QuotaExceeded` (429) when the wait is too long."""
        entry = _Entry(user, editor, feature, cancel, self._clock())
        own = self._seat_of(user)
        if own is not None:
            own.last_asked = entry.arrived
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
        routed = engine_cache_slot.set(entry.seat.index if entry.seat else None)
        try:
            yield
        finally:
            # A stream closed by the loop's async-generator finaliser ends in another
            # context, where the reset is refused: the slot must be freed all the same.
            with contextlib.suppress(ValueError):
                engine_cache_slot.reset(routed)
            held = self._clock() - started
            self._hold_seconds += 0.2 * (held - self._hold_seconds)
            self._leave(entry)

    def snapshot(self) -> dict:
        return {
            "slots": self.slots,
            "running": len(self._running),
            "waiting": len(self._waiting),
            "dropped": dict(self.dropped),
            **(self._seat_counts() if self._seats else {}),
        }

    def _seat_counts(self) -> dict:
        return {"seats": len(self._seats), "seat_changes": self.seat_changes}

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
        now = self._clock()
        seat_in = self._seat_wait(entry.user, now)
        if len(self._running) < self.slots and not self._waiting and seat_in == 0:
            return  # a free slot (and seat): no wait at all
        expected = max((self._ahead_of(entry) + 1) / self.slots * self._hold_seconds, seat_in)
        if limit <= 0 or expected > limit:
            self.dropped["shed"] += 1
            self._forget_editor(entry)
            retry_after = max(1, math.ceil(expected))
            if seat_in > 0:
                self._turns[entry.user] = now + retry_after
            raise QuotaExceeded("the engine is busy; try again", retry_after=retry_after,
                                limit="busy")  # fmt: skip

    def _ahead_of(self, entry: _Entry) -> int:
        """Waiting requests that would get a slot before `entry`: all of them, except
        that a student with a seat goes before those still waiting for one."""
        if self._seats and self._seat_of(entry.user) is not None:
            return sum(1 for w in self._waiting if self._seat_of(w.user) is not None)
        return len(self._waiting)

    # -- seats ---------------------------------------------------------------------------
    def adopt_seats(self, count: int) -> None:
        """Use `count` seats from now on (the engine told how many prompt caches it
        has). Changed only while no seat is in use, so no request loses its seat."""
        count = max(0, count)
        if count == len(self._seats) or any(seat.busy for seat in self._seats):
            return
        self._seats = [_Seat(i) for i in range(count)]
        self.seat_rules = SeatRules(count, self.seat_rules.idle, self.seat_rules.tenure)

    def _seat_of(self, user: str) -> _Seat | None:
        return next((seat for seat in self._seats if seat.owner == user), None)

    def _seat_wait(self, user: str, now: float) -> float:
        """Seconds until `user` can have a seat: 0 with no seats, with their own, or
        with one free for others now (busy or not: a request holds it a short while)
        and nobody ahead of them in the turns."""
        if not self._seats or self._seat_of(user) is not None:
            return 0.0
        soonest = min(seat.changes_hands_in(now, self.seat_rules) for seat in self._seats)
        if soonest == 0 and not self._my_turn(user, now):
            return TURN_GRACE  # those ahead are due back within that time
        if soonest > 0 and self._engine_has_room(user, now):
            return 0.0  # nobody else waits: a seat is lent at once (see _seat_for)
        return soonest

    def _engine_has_room(self, user: str, now: float, entry: _Entry | None = None) -> bool:
        """A slot is free, nobody else waits, and nobody was refused lately: then a
        student without a seat may take one held by a student still typing (who takes
        another the same way). Below saturation seats cost nobody anything (a small
        llama-server with more typing students than slots works as without seats, its
        own prompt cache in RAM helping); once the engine was full and someone was
        refused, seats change hands only by the idle and tenure rules, in turns."""
        if len(self._running) >= self.slots or any(w is not entry for w in self._waiting):
            return False
        self._forget_stale_turns(now)
        return not self._turns

    def _forget_stale_turns(self, now: float) -> None:
        for other, back_at in list(self._turns.items()):
            if now > back_at + TURN_GRACE:
                del self._turns[other]  # did not come back: no longer waiting a turn

    def _my_turn(self, user: str, now: float) -> bool:
        """Turns between students without a seat: one who was refused a seat, is due
        back (their Retry-After) within TURN_GRACE and was seated less recently goes
        first, so a student who just lost a seat cannot take the next free one ahead of
        them. A free seat is kept for them no longer than that: one who does not come
        back loses their turn, and one told to come back later does not hold it."""
        self._forget_stale_turns(now)
        mine = self._seated_at.get(user, -math.inf)
        return not any(
            self._seated_at.get(other, -math.inf) < mine and back_at <= now + TURN_GRACE
            for other, back_at in self._turns.items()
            if other != user
        )

    def _seat_for(self, entry: _Entry, now: float) -> _Seat | None:
        """The free seat `entry` may run on now, or None (it waits)."""
        own = self._seat_of(entry.user)
        if own is not None:
            return None if own.busy else own
        if not self._my_turn(entry.user, now):
            return None
        idle = [s for s in self._seats if not s.busy]
        free = [s for s in idle if s.free_for_others(now, self.seat_rules)]
        if not free and self._engine_has_room(entry.user, now, entry):
            free = idle
        # A seat nobody holds first, then the one whose student asked least recently.
        return min(free, key=lambda s: (s.owner is not None, s.last_asked, s.taken), default=None)

    def _take_seat(self, entry: _Entry, seat: _Seat, now: float) -> None:
        if seat.owner != entry.user:
            if seat.owner is not None:
                self.seat_changes += 1
            seat.owner, seat.taken = entry.user, now
            self._seated_at[entry.user] = now
            self._turns.pop(entry.user, None)
        seat.busy, seat.last_asked = True, now
        entry.seat = seat

    def _choose_seated(self) -> tuple[_Entry, _Seat] | None:
        """Students with a seat first (their prompt is cached: cheap), oldest request
        first; then a student waiting for a seat, the one seated least recently (turns),
        on the seat free for others that was used least recently."""
        now = self._clock()
        returning = [w for w in self._waiting if self._seat_of(w.user) is not None]
        for entry in sorted(returning, key=lambda w: w.arrived):
            seat = self._seat_for(entry, now)
            if seat is not None:
                return entry, seat
        newcomers = [w for w in self._waiting if self._seat_of(w.user) is None]
        def in_turn(w: _Entry) -> tuple[float, float]:
            return self._seated_at.get(w.user, -math.inf), w.arrived

        for entry in sorted(newcomers, key=in_turn):
            seat = self._seat_for(entry, now)
            if seat is not None:
                return entry, seat
            break  # the first in turn gets no seat now: nobody after them may
        return None

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
        if self._seats and self._seat_of(entry.user) is None:
            self._turns[entry.user] = self._clock() + max(1, math.ceil(limit))
        raise QuotaExceeded(
            "the engine is busy; try again", retry_after=max(1, math.ceil(limit)), limit="busy"
        )

    def _leave(self, entry: _Entry) -> None:
        if entry in self._waiting:
            self._waiting.remove(entry)
        if entry in self._running:
            self._running.remove(entry)
        if entry.seat is not None:
            entry.seat.busy, entry.seat.last_asked = False, self._clock()
            entry.seat = None
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
            seat = None
            if self._seats:
                pick = self._choose_seated()
                if pick is None:
                    return  # the waiting wait for a seat, not for a slot
                chosen, seat = pick
            else:
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
            if seat is not None:
                self._take_seat(chosen, seat, self._clock())
            self._running.append(chosen)
            chosen.granted.set_result(None)
