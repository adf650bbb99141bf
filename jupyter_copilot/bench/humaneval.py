"""HumanEval infilling: pass@1 by execution, first-line exact match, latency.

The product is asked the way an editor would ask it: the cursor on an empty line
where the missing code goes (``prefix`` = the task's prompt, ``suffix`` = a newline
then the task's suffix), the mode left to the server unless told. The raw
reference gets the task's prompt and suffix as they are, in a plain FIM prompt.
Either way, the program run is ``prompt + completion + newline + suffix + tests``.
"""

from __future__ import annotations

from collections.abc import Callable

from ..schema import CompleteRequest
from .data import HumanEvalTask
from .execution import humaneval_program, run_program
from .interference import measure, quiet_or_all
from .metrics import first_code_line, latency_summary, mean


def request_for(task: HumanEvalTask, completer, mode: str | None) -> CompleteRequest:
    if getattr(completer, "explicit_mode", False):
        return CompleteRequest(prefix=task.prompt, suffix=task.suffix, mode=mode or "line")
    return CompleteRequest(prefix=task.prompt, suffix="\n" + task.suffix, mode=mode)


def middle_for(completion: str) -> str:
    """The completion as inserted on its own line(s)."""
    return completion if completion.endswith("\n") else completion + "\n"


async def run_humaneval(
    tasks: list[HumanEvalTask],
    completer,
    *,
    mode: str | None = None,
    exec_timeout: float = 10.0,
    on_result: Callable[[dict], None] | None = None,
) -> list[dict]:
    results = []
    for task in tasks:
        reply, others = await measure(completer.complete(request_for(task, completer, mode)))
        program = humaneval_program(
            task.prompt, middle_for(reply.text), task.suffix, task.test, task.entry_point
        )
        outcome = run_program(program, timeout=exec_timeout)
        result = {
            "task_id": task.task_id,
            "completion": reply.text,
            "expected": task.canonical_solution,
            "passed": outcome.passed,
            "status": outcome.status,
            "detail": outcome.detail,
            "exact_match": first_code_line(reply.text) == first_code_line(task.canonical_solution),
            "latency_ms": reply.latency_ms,
            "others_cores": others,
            "mode": reply.mode,
            "timing": reply.timing,
            "error": reply.error,
        }
        results.append(result)
        if on_result:
            on_result(result)
    return results


def summarize(results: list[dict]) -> dict:
    return {
        "n": len(results),
        "pass_at_1": mean([float(r["passed"]) for r in results]),
        "exact_match": mean([float(r["exact_match"]) for r in results]),
        "timeouts": sum(r["status"] == "timeout" for r in results),
        "errors": sum(bool(r["error"]) for r in results),
        # Only the requests during which other programs used < QUIET_CORES cores
        # (when that is known); `all_n` says how many were made.
        "latency": {**latency_summary([r["latency_ms"] for r in quiet_or_all(results)]),
                    "all_n": len(results)},
        "latency_all": latency_summary([r["latency_ms"] for r in results]),
        "mean_generated_tokens": mean(
            [r["timing"].get("generated_tokens", 0) for r in results if r["timing"]]
        ),
        "mean_prompt_tokens": mean(
            [r["timing"].get("prompt_tokens", 0) for r in results if r["timing"]]
        ),
    }
