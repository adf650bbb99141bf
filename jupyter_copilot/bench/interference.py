"""How much CPU other programs took while a request ran (Linux /proc; shared machines).

On a 2-core machine shared with builds and test suites, one busy neighbour can
double a latency: llama.cpp's threads wait for each other at every step. Each
request therefore records ``others_cores``, the average number of cores used by
processes that are not this benchmark or its descendants (the Jupyter server, the
engine, llama-server), hypervisor steal included. Summaries report latency over
the "quiet" requests (``others_cores`` below `QUIET_CORES`) next to all requests.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..engines.cpu_share import TICKS_PER_S, busy_ticks, process_ticks

QUIET_CORES = 0.15


@dataclass(frozen=True)
class CpuSample:
    wall: float
    busy_ticks: int  # all CPUs, all processes
    ours_ticks: int  # this process and its descendants


def _total_busy() -> int:
    return busy_ticks(Path("/proc/stat").read_text())  # all CPUs


def _process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, user + system ticks) of every live process."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        table[int(entry.name)] = process_ticks(raw)
    return table


def _ours(table: dict[int, tuple[int, int]]) -> int:
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0, [os.getpid()]
    while todo:
        pid = todo.pop()
        total += table.get(pid, (0, 0))[1]
        todo += children.get(pid, [])
    return total


def available() -> bool:
    return Path("/proc/stat").is_file()


def sample() -> CpuSample | None:
    if not available():
        return None
    try:
        return CpuSample(time.perf_counter(), _total_busy(), _ours(_process_table()))
    except (OSError, ValueError, IndexError):
        return None


def others_cores(before: CpuSample | None, after: CpuSample | None) -> float | None:
    """Average cores used by other processes between two samples (None if unknown).

    Processes of ours that ended in between are not counted as ours (their ticks
    vanish from the table): keep the interval to one request.
    """
    if before is None or after is None or after.wall <= before.wall:
        return None
    others = (after.busy_ticks - before.busy_ticks) - (after.ours_ticks - before.ours_ticks)
    return round(max(others, 0) / TICKS_PER_S / (after.wall - before.wall), 3)


async def measure(awaitable):
    """(result of `awaitable`, others_cores while it ran)."""
    before = sample()
    result = await awaitable
    return result, others_cores(before, sample())


def quiet(rows: list[dict]) -> list[dict]:
    """The rows measured while the rest of the machine was (nearly) idle."""
    return [r for r in rows if r.get("others_cores") is not None
            and r["others_cores"] < QUIET_CORES]


def quiet_or_all(rows: list[dict]) -> list[dict]:
    """The quiet rows where interference was measured, else every row (no /proc)."""
    measured = any(r.get("others_cores") is not None for r in rows)
    return quiet(rows) if measured else rows
