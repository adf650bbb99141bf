"""How many threads the local model should use right now: the cores it was given,
less those that other programs keep busy (first of all the notebook's kernel).

Why: llama.cpp's threads meet at a barrier after every operation of every layer.
When the kernel keeps one of two cores busy, the model's second thread gets the
core only in turns with it, and every barrier waits for those turns: the model
writes far slower than with one thread (15x on 2 cores), and the kernel gains
nothing from it (docs/benchmarks.md, "A busy kernel beside the model").

What is read (Linux only; anywhere else nothing is decided and the configured
thread count stands):
- the busy time of the cores this process may run on (`/proc/stat`, one line per
  CPU, steal included: a core the hypervisor took is not ours either), or, inside a
  cgroup v2 with a CPU limit (a container with `--cpus`), that cgroup's usage and its
  limit, since the limit, not the machine, is what is shared;
- this process's own time (`/proc/self/stat`, all its threads), taken off: the
  model does not compete with itself.

Run in the engine's child only. A sampler thread reads both every `period` seconds
(two small files); the generating thread asks `threads()` between evaluations and
applies a change there, never during one.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# A core counts as taken when other programs used at least this share of it over
# the last window: a kernel running a cell shows ~1.0, an idle server ~0.01.
TAKEN_SHARE = 0.5
SAMPLE_PERIOD_S = 0.25
TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def usable_cores() -> int:
    """The cores this process may run on (its affinity; all of them off Linux)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


@dataclass(frozen=True)
class CpuReading:
    wall: float  # seconds (monotonic)
    busy: float  # CPU seconds used on the shared cores, by everyone
    own: float  # CPU seconds used by this process


def threads_for(others_cores: float, capacity: float, limit: int) -> int:
    """Threads for the model: the cores of `capacity` that others leave, at most
    `limit`, at least one (a student still gets completions on a loaded machine)."""
    cores = math.ceil(capacity - others_cores - TAKEN_SHARE)
    return max(1, min(limit, cores))


def others_cores(before: CpuReading, after: CpuReading) -> float:
    """Cores other programs used between two readings (0 when time did not move)."""
    wall = after.wall - before.wall
    if wall <= 0:
        return 0.0
    return max(0.0, (after.busy - before.busy) - (after.own - before.own)) / wall


def busy_ticks(proc_stat: str, cpus: set[int] | None = None) -> int:
    """Busy clock ticks from /proc/stat (everything but idle and iowait): of the CPUs
    in `cpus`, or of all of them (the summary line) when None."""
    total = 0
    for line in proc_stat.splitlines():
        name, _, rest = line.partition(" ")
        if cpus is None:
            wanted = name == "cpu"
        else:
            wanted = name[3:].isdigit() and name.startswith("cpu") and int(name[3:]) in cpus
        if wanted:
            values = [int(v) for v in rest.split()[:8]]  # user nice system idle iowait irq softirq steal
            total += sum(values) - values[3] - values[4]
    return total


def process_ticks(pid_stat: str) -> tuple[int, int]:
    """(parent pid, user + system clock ticks) of a process, from /proc/<pid>/stat."""
    # The command name (field 2) may hold spaces and parentheses: count after its end.
    fields = pid_stat[pid_stat.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def parse_cgroup_limit(cpu_max: str) -> float | None:
    """Cores allowed by a cgroup v2 `cpu.max` ("quota period", or "max period")."""
    quota, _, period = cpu_max.strip().partition(" ")
    if quota == "max" or not period:
        return None
    return int(quota) / int(period)


def parse_cgroup_usage(cpu_stat: str) -> float:
    """CPU seconds used by a cgroup v2, from its `cpu.stat`."""
    for line in cpu_stat.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
    raise ValueError("no usage_usec in cpu.stat")


class CpuSource:
    """Where the readings come from on this machine (found once, at start)."""

    def __init__(self, root: Path = Path("/")) -> None:
        self._root = root
        self.cpus = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()
        self.capacity = float(len(self.cpus))
        self._cgroup: Path | None = None
        limited = self._cgroup_dir()
        if limited is not None:
            limit = parse_cgroup_limit((limited / "cpu.max").read_text())
            if limit is not None and limit < self.capacity:
                self._cgroup, self.capacity = limited, limit

    def _cgroup_dir(self) -> Path | None:
        """This process's cgroup v2 folder, where it has a CPU limit file."""
        try:
            lines = (self._root / "proc/self/cgroup").read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            if line.startswith("0::"):
                folder = self._root / "sys/fs/cgroup" / line[3:].strip().lstrip("/")
                if (folder / "cpu.max").is_file() and (folder / "cpu.stat").is_file():
                    return folder
        return None

    def read(self) -> CpuReading:
        if self._cgroup is not None:
            busy = parse_cgroup_usage((self._cgroup / "cpu.stat").read_text())
        else:
            busy = busy_ticks((self._root / "proc/stat").read_text(), self.cpus) / TICKS_PER_S
        own = process_ticks((self._root / "proc/self/stat").read_text())[1] / TICKS_PER_S
        return CpuReading(time.monotonic(), busy, own)


class CpuShare:
    """The thread count to use now, kept up to date by a sampler thread.

    `threads()` is the configured `limit` until the first window is read, and
    always where the machine cannot be read (not Linux, files missing)."""

    def __init__(self, limit: int, source: CpuSource | None = None,
                 period: float = SAMPLE_PERIOD_S) -> None:  # fmt: skip
        self.limit = limit
        self.others = 0.0
        self._threads = limit
        self._period = period
        self._stop = threading.Event()
        try:
            self._source = source or CpuSource()
            self._last = self._source.read()
        except (OSError, ValueError):
            self._source = None
            return
        threading.Thread(target=self._sample, name="cpu-share", daemon=True).start()

    def threads(self) -> int:
        return self._threads

    def update(self) -> None:
        """Read a new window (the sampler's step; tests call it directly)."""
        reading = self._source.read()
        self.others = others_cores(self._last, reading)
        self._last = reading
        self._threads = threads_for(self.others, self._source.capacity, self.limit)

    def _sample(self) -> None:
        while not self._stop.wait(self._period):
            try:
                self.update()
            except (OSError, ValueError):  # a file vanished: keep the last decision
                continue

    def close(self) -> None:
        self._stop.set()
