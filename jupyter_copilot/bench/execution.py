"""pass@1: run a completed HumanEval program in a separate Python with a time limit.

The program is model output: it runs in its own process (isolated mode, empty
temporary working directory, no stdin), in its own session so that a timeout
kills whatever it spawned too. This is a benchmark harness for trusted machines,
not a sandbox.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    passed: bool
    status: str  # "passed", "failed", "timeout"
    detail: str = ""  # the last line of stderr when it failed


def humaneval_program(prompt: str, middle: str, suffix: str, test: str, entry_point: str) -> str:
    """prompt + middle + suffix + tests + ``check(entry_point)``."""
    return f"{prompt}{middle}{suffix}\n\n{test}\n\ncheck({entry_point})\n"


def run_program(source: str, timeout: float = 10.0) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="copilot-bench-") as workdir:
        path = os.path.join(workdir, "program.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(source)
        proc = subprocess.Popen(
            [sys.executable, "-I", path],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return Outcome(False, "timeout", f"no result within {timeout:g} s")
    if proc.returncode == 0:
        return Outcome(True, "passed")
    lines = stderr.decode(errors="replace").strip().splitlines()
    return Outcome(False, "failed", lines[-1][:300] if lines else f"exit status {proc.returncode}")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()
