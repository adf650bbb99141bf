"""The local model gives cores back while other programs keep them busy (cpu_share.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SentEvents, wait_engine_ready

from jupyter_copilot.engines.base import CancelToken, GenerationParams, GenerationStats
from jupyter_copilot.engines.cpu_share import (
    TICKS_PER_S,
    CpuReading,
    CpuShare,
    CpuSource,
    busy_ticks,
    others_cores,
    parse_cgroup_limit,
    process_ticks,
    threads_for,
)
from jupyter_copilot.engines.llama_cpp import LlamaCppConfig, LlamaCppEngine
from jupyter_copilot.engines.llama_worker import Worker

PROC_STAT = """cpu  900 0 100 1000 0 0 0 0 0 0
cpu0 400 0 50 500 10 0 0 0 0 0
cpu1 300 0 40 600 20 0 0 10 0 0
cpu2 200 0 10 0 0 0 0 0 0 0
intr 12345
"""


@pytest.mark.parametrize(
    "others, capacity, limit, expected",
    [
        (0.0, 2, 2, 2),  # nobody else: every core
        (0.3, 2, 2, 2),  # a server answering now and then does not take a core
        (0.5, 2, 2, 1),  # half a core used by others is taken
        (1.0, 2, 2, 1),  # the kernel runs a cell: one core left
        (2.0, 2, 2, 1),  # everything busy: still one thread, never none
        (0.0, 2, 1, 1),  # never more than configured
        (1.2, 4, 8, 3),  # a fifth of a second core is not a core
        (0.2, 1.5, 4, 1),  # a cgroup limit of 1.5 cores: one thread
    ],
)
def test_threads_for_leaves_the_cores_others_use(others, capacity, limit, expected):
    assert threads_for(others, capacity, limit) == expected


def test_others_cores_leaves_out_our_own_time():
    before = CpuReading(wall=10.0, busy=100.0, own=20.0)
    after = CpuReading(wall=12.0, busy=103.0, own=21.0)  # 3 CPU s in 2 s, 1 of them ours
    assert others_cores(before, after) == pytest.approx(1.0)
    assert others_cores(after, after) == 0.0
    # Counters read at slightly different moments must not give a negative share.
    assert others_cores(before, CpuReading(wall=11.0, busy=100.5, own=21.0)) == 0.0


def test_proc_stat_counts_only_our_cores_and_steal_as_busy():
    # cpu0: 400+50 busy (idle 500, iowait 10 left out); cpu1: 300+40+10 steal.
    assert busy_ticks(PROC_STAT, {0, 1}) == 450 + 350
    assert busy_ticks(PROC_STAT, {2}) == 210
    assert busy_ticks(PROC_STAT, set()) == 0
    assert busy_ticks(PROC_STAT) == 1000  # no CPUs named: the summary line, all of them


def test_self_stat_survives_a_command_name_with_parentheses():
    fields = ["S", "77"] + ["0"] * 9 + ["250", "50"] + ["0"] * 30  # ppid 77, utime 250, stime 50
    text = "4242 (python (worker) x) " + " ".join(fields)
    assert process_ticks(text) == (77, 300)
    assert process_ticks(Path("/proc/self/stat").read_text())[1] > 0


def test_cgroup_limit():
    assert parse_cgroup_limit("150000 100000\n") == 1.5
    assert parse_cgroup_limit("max 100000\n") is None


def _fake_root(tmp_path: Path, cpu_max: str) -> Path:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text("0::/kubepods/student-42\n")
    (tmp_path / "proc/self/stat").write_text(Path("/proc/self/stat").read_text())
    (tmp_path / "proc/stat").write_text(PROC_STAT)
    group = tmp_path / "sys/fs/cgroup/kubepods/student-42"
    group.mkdir(parents=True)
    (group / "cpu.max").write_text(cpu_max)
    (group / "cpu.stat").write_text("usage_usec 7000000\nuser_usec 5000000\n")
    return tmp_path


def test_a_container_cpu_limit_is_the_capacity_and_its_usage_the_load(tmp_path):
    source = CpuSource(_fake_root(tmp_path, "50000 100000\n"))  # half a core
    assert source.capacity == 0.5
    assert source.read().busy == 7.0  # the cgroup's usage, not the machine's /proc/stat


def test_without_a_limit_the_machine_cores_are_read(tmp_path):
    source = CpuSource(_fake_root(tmp_path, "max 100000\n"))
    assert source.capacity == len(os.sched_getaffinity(0))
    assert source.read().busy == busy_ticks(PROC_STAT, set(os.sched_getaffinity(0))) / TICKS_PER_S


class StepSource:
    """Readings given in turn: 2 cores, others' use as scripted."""

    capacity = 2.0

    def __init__(self, others_per_step: list[float]) -> None:
        self.readings = [CpuReading(0.0, 0.0, 0.0)]
        for step, others in enumerate(others_per_step, start=1):
            last = self.readings[-1]
            self.readings.append(CpuReading(float(step), last.busy + others + 0.9, last.own + 0.9))

    def read(self) -> CpuReading:
        return self.readings.pop(0)


def test_cpu_share_follows_the_other_programs():
    share = CpuShare(limit=2, source=StepSource([1.0, 0.05]), period=3600)
    assert share.threads() == 2  # nothing read yet: as configured
    share.update()
    assert (share.others, share.threads()) == (pytest.approx(1.0), 1)
    share.update()
    assert share.threads() == 2  # the kernel finished its cell
    share.close()


def test_an_unreadable_machine_keeps_the_configured_threads(tmp_path):
    share = CpuShare(limit=3, source=CpuSource(tmp_path))  # no /proc there
    assert share.threads() == 3


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_a_busy_process_is_seen_on_this_machine():
    """The real /proc: a child spinning on one core shows as (at least most of) a core."""
    share = CpuShare(limit=64, period=3600)
    spin = "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass"
    busy = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(0.2)
        share.update()  # forget the child's start-up
        time.sleep(1.0)
        share.update()
    finally:
        busy.wait()
    capacity = len(os.sched_getaffinity(0))
    assert share.others >= 0.6
    assert share.threads() == threads_for(share.others, capacity, 64) < capacity


class RecordingBackend:
    """Just enough of a backend to see which thread counts a job is given."""

    name, keeps_cache, last_prefill = "fake", True, {}

    def __init__(self) -> None:
        self.threads, self.calls = 2, []

    def set_threads(self, threads: int) -> None:
        self.calls.append(threads)
        self.threads = threads

    def n_ctx(self) -> int:
        return 512

    def tokenize(self, text: str) -> list[int]:
        return list(range(len(text)))

    def use_cache(self, lane: str, tokens=()) -> float:
        return 0.0

    def prefill(self, tokens, cancelled, leave, progress, chunk_tokens):
        for pos in range(0, len(tokens) - leave, chunk_tokens):
            progress(pos + chunk_tokens)
        return 0, True

    def generate(self, tokens, sampling):
        yield from (("a", None), ("b", None), ("c", "stop"))


class FixedShare:
    def __init__(self, threads: int) -> None:
        self.value = threads

    def threads(self) -> int:
        return self.value


def test_the_worker_applies_the_share_before_and_between_evaluations():
    backend, sent = RecordingBackend(), SentEvents()
    worker = Worker(backend, sent, FixedShare(1))
    worker.complete({"id": 1, "prompt": "x" * 200, "params": {"max_tokens": 8}})
    assert backend.calls and set(backend.calls) == {1}
    assert len(backend.calls) >= 4  # job start, prefill chunks, tokens
    assert sent.events[-1]["stats"]["threads"] == 1
    backend.calls.clear()
    Worker(backend, sent).warm({"id": 2, "prompt": "y" * 200})  # no share: never touched
    assert backend.calls == []


@pytest.mark.model
async def test_the_engine_reports_its_threads_with_fit_threads_on(test_model_path):
    """The real child with --fit-threads: it answers, and says how many threads it used
    (between one and the configured two, whatever else this machine is doing)."""
    engine = LlamaCppEngine(LlamaCppConfig(model_path=test_model_path, n_ctx=1024, threads=2,
                                           fit_threads=True))  # fmt: skip
    await engine.start()
    try:
        await wait_engine_ready(engine)
        stats = GenerationStats()
        pieces = [p async for p in engine.complete("def add(a, b):\n    return", GenerationParams(max_tokens=4),
                                                   CancelToken(), stats)]  # fmt: skip
        assert pieces and stats.threads in (1, 2)
    finally:
        await engine.close()
