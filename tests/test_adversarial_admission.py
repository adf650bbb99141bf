"""Overload admission of the campus service (issue #10, item 6).

Unit tests of the queue's logic (hub/admission.py, no engine), then the same rules
through the real service: a real JupyterHub issuing the students' tokens and
llama-server behind it (tests/conftest_hub.py)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from jupyter_copilot.engines.base import CancelToken
from jupyter_copilot.hub.admission import Abandoned, Admission, Superseded
from jupyter_copilot.hub.quotas import QuotaExceeded

WAITS = {"completion": 5.0, "explain_cell": 5.0, "warm": 0.0}


async def hold(admission, user, editor, log, release: asyncio.Event, feature="completion"):
    cancel = CancelToken()
    async with admission.slot(user, editor, feature, cancel):
        log.append(user if editor is None else f"{user}:{editor}")
        await release.wait()
    return cancel


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_superseded_waiting_request_never_reaches_the_engine():
    admission, log, release = Admission(1, WAITS), [], asyncio.Event()
    running = asyncio.ensure_future(hold(admission, "alice", "cell-1", log, release))
    await settle()
    older = asyncio.ensure_future(hold(admission, "bob", "cell-2", log, release))
    await settle()
    newer = asyncio.ensure_future(hold(admission, "bob", "cell-2", log, release))
    await settle()
    with pytest.raises(Superseded):
        await older
    release.set()
    await asyncio.gather(running, newer)
    assert log == ["alice:cell-1", "bob:cell-2"]  # the older bob request never ran
    assert admission.dropped["superseded"] == 1


async def test_a_newer_request_cancels_the_running_one_of_its_editor():
    admission, log, release = Admission(2, WAITS), [], asyncio.Event()
    first = asyncio.ensure_future(hold(admission, "alice", "cell-1", log, release))
    await settle()
    second = asyncio.ensure_future(hold(admission, "alice", "cell-1", log, release))
    await settle()
    release.set()
    cancelled_first, cancelled_second = await asyncio.gather(first, second)
    assert cancelled_first.cancelled and "superseded" in cancelled_first.reason
    assert not cancelled_second.cancelled


async def test_a_freed_slot_goes_to_the_student_who_holds_fewest():
    admission, log, release = Admission(2, WAITS), [], asyncio.Event()
    tasks = [asyncio.ensure_future(hold(admission, "flood", f"e{i}", log, release))
             for i in range(5)]  # fmt: skip
    await settle()
    late = asyncio.ensure_future(hold(admission, "late", "e0", log, release))
    await settle()
    assert log == ["flood:e0", "flood:e1"]  # both slots: flood had them first
    release.set()
    await asyncio.gather(*tasks, late)
    # late arrived after three of flood's requests, yet ran before them.
    assert log.index("late:e0") == 2


async def test_a_hopeless_wait_is_refused_at_once_with_retry_after():
    admission, log, release = Admission(1, {"completion": 1.0}), [], asyncio.Event()
    admission._hold_seconds = 2.0  # the engine takes 2 s per request
    running = asyncio.ensure_future(hold(admission, "alice", "a", log, release))
    await settle()
    with pytest.raises(QuotaExceeded) as refused:
        await hold(admission, "bob", "b", log, release)
    assert refused.value.retry_after >= 2 and refused.value.limit == "busy"
    assert admission.dropped["shed"] == 1 and admission.snapshot()["waiting"] == 0
    release.set()
    await running


async def test_a_request_that_waits_too_long_is_refused_then():
    admission, log, release = Admission(1, {"completion": 0.2}), [], asyncio.Event()
    admission._hold_seconds = 0.01  # looks quick, yet the running one never ends
    running = asyncio.ensure_future(hold(admission, "alice", "a", log, release))
    await settle()
    with pytest.raises(QuotaExceeded):
        await hold(admission, "bob", "b", log, release)
    assert admission.dropped["timed_out"] == 1
    release.set()
    await running


async def test_a_client_that_went_away_leaves_the_queue():
    admission, log, release = Admission(1, WAITS), [], asyncio.Event()
    running = asyncio.ensure_future(hold(admission, "alice", "a", log, release))
    await settle()
    cancel = CancelToken()

    async def waiting():
        async with admission.slot("bob", "b", "completion", cancel):
            log.append("bob ran")

    task = asyncio.ensure_future(waiting())
    await settle()
    cancel.cancel("client disconnected")
    with pytest.raises(Abandoned):
        await task
    release.set()
    await running
    assert "bob ran" not in log and admission.snapshot() == {
        "slots": 1, "running": 0, "waiting": 0,
        "dropped": {"superseded": 0, "shed": 0, "timed_out": 0, "abandoned": 1},
    }  # fmt: skip


async def test_warming_never_waits_for_a_slot():
    admission, log, release = Admission(1, WAITS), [], asyncio.Event()
    running = asyncio.ensure_future(hold(admission, "alice", "a", log, release))
    await settle()
    with pytest.raises(QuotaExceeded):
        await hold(admission, "bob", None, log, release, feature="warm")
    release.set()
    await running


# --- through the real service ---------------------------------------------------------------

CODE = {"prefix": "def add(a, b):\n    return ", "suffix": "", "language": "python"}


async def stream_complete(service, user: str, body: dict) -> tuple[int, list[dict], dict]:
    async with (
        httpx.AsyncClient(timeout=120) as client,
        client.stream("POST", service.url + "complete?stream=1", json=body,
                      headers=service.headers(user)) as reply,  # fmt: skip
    ):
        lines = [json.loads(line) async for line in reply.aiter_lines() if line.strip()]
        return reply.status_code, lines, dict(reply.headers)


@pytest.mark.model
@pytest.mark.hub_service(engine_slots=1, max_in_flight_per_user=0,
                         admission_max_wait={"completion": 30.0})  # fmt: skip
async def test_superseded_requests_are_dropped_before_the_engine(copilot_service):
    """A student's editor sends five requests in a row while the engine's only slot
    is held: only the last one to arrive reaches the engine."""
    app = copilot_service.app
    engine_calls = app.ledger.report()["total"]["requests"]
    async with app.slot_queue.slot("bob", "b", "completion", CancelToken()):
        alice = []
        for i in range(5):
            body = {**CODE, "prefix": CODE["prefix"] + "a" * i, "editor_id": "cell-1"}
            alice.append(asyncio.ensure_future(stream_complete(copilot_service, "alice", body)))
            await asyncio.sleep(0.05)
        for _ in range(600):  # until all five have arrived (at most 30 s)
            if app.slot_queue.dropped["superseded"] >= 4 and app.slot_queue.snapshot()["waiting"]:
                break
            await asyncio.sleep(0.05)
    replies = await asyncio.gather(*alice)
    assert all(status == 200 for status, _, _ in replies), replies
    finals = [lines[-1] for _, lines, _ in replies]
    answered = [f for f in finals if "error" not in f]
    dropped = [f for f in finals if f.get("error") == "cancelled: superseded by a newer request"]
    assert len(answered) == 1 and len(dropped) == 4, finals
    assert app.slot_queue.dropped["superseded"] == 4
    # Only the answered request cost the engine anything.
    assert app.ledger.report()["total"]["requests"] - engine_calls <= 1
    assert app.slot_queue.snapshot()["running"] == 0


@pytest.mark.model
@pytest.mark.hub_service(engine_slots=1, max_in_flight_per_user=0,
                         admission_max_wait={"completion": 0.3})  # fmt: skip
async def test_overload_is_shed_with_fast_429s_never_5xx(copilot_service):
    bodies = [(user, {**CODE, "editor_id": f"{user}-{i}"})
              for i in range(6) for user in ("alice", "bob", "prof")]  # fmt: skip
    replies = await asyncio.gather(*(stream_complete(copilot_service, u, b) for u, b in bodies))
    statuses = [status for status, _, _ in replies]
    assert all(s in (200, 429) for s in statuses), statuses
    assert 429 in statuses and 200 in statuses
    for status, _, headers in replies:
        if status == 429:
            assert int(headers["retry-after"]) >= 1


# --- seats: one prompt cache per student at a time (engine_prompt_caches) --------------------

from jupyter_copilot.engines.base import engine_cache_slot  # noqa: E402
from jupyter_copilot.hub.admission import SeatRules  # noqa: E402


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def seated(caches: int, slots: int = 1, idle: float = 5.0, tenure: float = 30.0,
           wait: float = 1.0) -> tuple[Admission, Clock]:  # fmt: skip
    clock = Clock()
    rules = SeatRules(caches, idle, tenure)
    return Admission(slots, {"completion": wait, "warm": 0.0}, clock=clock, seats=rules), clock


async def ask(admission, user: str, editor: str = "e") -> int | None:
    """One short request; returns the prompt cache the engine call would use."""
    async with admission.slot(user, editor, "completion", CancelToken()):
        return engine_cache_slot.get()


async def test_a_student_s_requests_go_to_the_same_prompt_cache():
    admission, clock = seated(caches=3, slots=2)
    first = {user: await ask(admission, user) for user in ("alice", "bob", "carol")}
    assert sorted(first.values()) == [0, 1, 2]  # each on a cache of their own
    for _ in range(3):
        clock.now += 1.0
        for user in ("carol", "alice", "bob"):
            assert await ask(admission, user) == first[user]
    assert engine_cache_slot.get() is None  # only inside the request
    assert admission.seat_changes == 0


async def test_below_saturation_a_student_without_a_seat_takes_one_at_once():
    """Seats protect students only when the engine is full: with a free slot and
    nobody waiting, a newcomer takes the seat of the student who asked least recently
    (who takes another the same way: a small engine works as without seats)."""
    admission, clock = seated(caches=2)
    await ask(admission, "alice")
    await ask(admission, "bob")
    clock.now += 1.0
    await ask(admission, "bob")
    assert await ask(admission, "carol") == 0  # alice's: she asked least recently
    assert await ask(admission, "alice") == 1
    assert admission.dropped["shed"] == 0 and admission.seat_changes == 2


async def test_when_the_engine_is_full_seats_wait_for_their_turn():
    """One cache, one slot. While alice's request runs, bob is refused at once (429,
    Retry-After: until alice's seat can change hands) and waits his turn; carol, who
    comes after him, may not take the seat in between; once alice stops asking for
    the idle time, the seat is bob's."""
    admission, clock = seated(caches=1, idle=5.0, tenure=30.0)
    log, release = [], asyncio.Event()
    running = asyncio.ensure_future(hold(admission, "alice", "a", log, release))
    await settle()
    with pytest.raises(QuotaExceeded) as refused:
        await ask(admission, "bob")
    assert refused.value.retry_after == 5 and refused.value.limit == "busy"
    release.set()
    await running
    clock.now += 1.0
    with pytest.raises(QuotaExceeded):
        await ask(admission, "carol")  # the engine has room, but it is bob's turn
    assert await ask(admission, "alice") == 0  # alice still types: her seat
    clock.now += 3.0
    with pytest.raises(QuotaExceeded):
        await ask(admission, "bob")  # alice asked 3 s ago: still hers
    clock.now += 2.0
    assert await ask(admission, "bob") == 0  # she stopped 5 s ago: bob's turn
    assert admission.seat_changes == 1


async def test_under_overload_seats_go_round_after_their_tenure():
    """Three students asking every second, one cache, the engine full at the start:
    each holds the seat for its tenure, then the one seated least recently (never,
    first) gets it — not the one who just lost it."""
    admission, clock = seated(caches=1, idle=5.0, tenure=10.0, wait=1.0)
    log, release = [], asyncio.Event()
    running = asyncio.ensure_future(hold(admission, "alice", "a", log, release))
    await settle()
    for user in ("bob", "carol"):
        with pytest.raises(QuotaExceeded):
            await ask(admission, user)  # the engine is full: they wait their turn
    release.set()
    await running
    holders = ["alice"]
    for _ in range(40):
        clock.now += 1.0
        for user in ("alice", "bob", "carol"):
            try:
                await asyncio.wait_for(ask(admission, user), 0.01)
            except (QuotaExceeded, asyncio.TimeoutError):
                continue
            if holders[-1] != user:
                holders.append(user)
    assert holders == ["alice", "bob", "carol", "alice", "bob"]  # every 10 s, in turn


async def test_an_unused_prompt_cache_is_taken_before_anyone_s():
    admission, clock = seated(caches=3)
    await ask(admission, "alice")
    clock.now += 10.0  # alice idle: her seat is free for others, but an unused one is first
    assert await ask(admission, "bob") == 1
    assert await ask(admission, "alice") == 0 and admission.seat_changes == 0


async def test_a_seated_student_s_new_request_waits_for_their_own_seat():
    """Two editors of one student: the second waits for the seat (their prompt cache),
    it does not take another student's."""
    admission, clock = seated(caches=2, slots=2, wait=5.0)
    log, release = [], asyncio.Event()
    first = asyncio.ensure_future(hold(admission, "alice", "nb1", log, release))
    await settle()
    second = asyncio.ensure_future(ask(admission, "alice", "nb2"))
    await settle()
    assert not second.done() and admission.snapshot()["waiting"] == 1
    release.set()
    await first
    assert await second == 0  # her own cache, after her first request
    assert await ask(admission, "bob") == 1


@pytest.mark.model
@pytest.mark.hub_service(engine_slots=2, engine_prompt_caches=-1, max_in_flight_per_user=0)
async def test_each_student_s_requests_go_to_their_own_llama_server_slot(copilot_service,
                                                                        llama_server):  # fmt: skip
    """Seats through the real service, as many as llama-server has slots (4; with
    engine_prompt_caches = -1): alice's and bob's completions, interleaved, each
    run on one llama-server slot of their own (the slot whose last task moved)."""
    used: dict[str, set[int]] = {"alice": set(), "bob": set()}
    for i in range(3):
        for user in ("alice", "bob"):
            before = await asyncio.to_thread(llama_server.slots)
            body = {**CODE, "prefix": f"# {user}\n" + CODE["prefix"] + "a" * i,
                    "editor_id": f"{user}-cell"}  # fmt: skip
            status, lines, _ = await stream_complete(copilot_service, user, body)
            assert status == 200 and "error" not in lines[-1], lines
            after = await asyncio.to_thread(llama_server.slots)
            moved = {a["id"] for a, b in zip(after, before) if a.get("id_task") != b.get("id_task")}
            used[user] |= moved
    assert len(used["alice"]) == 1 and len(used["bob"]) == 1, used
    assert used["alice"] != used["bob"]
    snapshot = copilot_service.app.slot_queue.snapshot()
    assert snapshot["seats"] == 4 and snapshot["seat_changes"] == 0
