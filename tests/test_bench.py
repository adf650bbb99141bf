"""The benchmark harness on tiny inputs: execution, scoring, targets, JSON output.

Timings are printed and written to JSON by the harness, never asserted here.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest

from jupyter_copilot.bench import metrics
from jupyter_copilot.bench.completers import Completion
from jupyter_copilot.bench.data import (
    SINGLE_LINE_FILE,
    Cell,
    default_data_dir,
    load_humaneval,
    notebook_paths,
    sample_tasks,
    split_halves,
)
from jupyter_copilot.bench.execution import humaneval_program, run_program
from jupyter_copilot.bench.humaneval import middle_for, run_humaneval
from jupyter_copilot.bench.replay import (
    Variant,
    ahead_prefix,
    cells_above,
    replay_notebook,
    score,
    summarize,
)
from jupyter_copilot.bench.targets import (
    at_line_start,
    cursor_columns,
    notebook_targets,
    third_column,
)

HUMANEVAL = default_data_dir() / SINGLE_LINE_FILE
needs_humaneval = pytest.mark.skipif(not HUMANEVAL.is_file(), reason=f"no {HUMANEVAL}")


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory) -> Path:
    """A 2-task slice of the real single-line HumanEval file."""
    with gzip.open(HUMANEVAL, "rt", encoding="utf-8") as f:
        rows = [next(f), next(f)]
    path = tmp_path_factory.mktemp("humaneval") / "two.jsonl"
    path.write_text("".join(rows))
    return path


# -- pass@1 execution ----------------------------------------------------------------


@needs_humaneval
def test_canonical_completion_passes_and_a_wrong_one_fails(two_tasks):
    for task in load_humaneval(two_tasks):
        good = humaneval_program(task.prompt, task.canonical_solution, task.suffix, task.test,
                                 task.entry_point)
        assert run_program(good).passed
        indent = task.canonical_solution[: len(task.canonical_solution)
                                          - len(task.canonical_solution.lstrip())]
        bad = humaneval_program(task.prompt, middle_for(indent + "return None"), task.suffix,
                                task.test, task.entry_point)
        outcome = run_program(bad)
        assert not outcome.passed and outcome.status == "failed"
        assert outcome.detail  # the last line of the traceback


def test_a_program_that_never_ends_times_out_and_is_killed():
    started = time.monotonic()
    outcome = run_program("import subprocess, sys\n"
                          "subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
                          "while True:\n    pass\n", timeout=1.0)
    assert outcome.status == "timeout" and not outcome.passed
    assert time.monotonic() - started < 10


def test_a_syntax_error_is_a_failure_not_a_crash():
    outcome = run_program("def f(:\n")
    assert outcome.status == "failed" and "SyntaxError" in outcome.detail


# -- scores ----------------------------------------------------------------------------


def test_edit_similarity():
    assert metrics.edit_similarity("abc", "abc") == 1.0
    assert metrics.edit_similarity("", "") == 1.0
    assert metrics.edit_similarity("", "abcd") == 0.0
    assert metrics.edit_similarity("abcd", "abce") == pytest.approx(0.75)
    assert metrics.edit_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)


def test_percentiles_and_summary():
    assert metrics.percentile([], 50) is None
    assert metrics.percentile([3, 1, 2], 50) == 2
    assert metrics.percentile([0, 10], 95) == pytest.approx(9.5)
    summary = metrics.latency_summary([100.0, 200.0, 300.0])
    assert summary == {"n": 3, "p50_ms": 200.0, "p95_ms": 290.0, "mean_ms": 200.0}


def test_replay_scores_the_cursor_line_or_the_block():
    assert score("line", "np.zeros(3)\nnext_line()", "np.zeros(3)") == (True, 1.0)
    assert score("line", " np.zeros(3)", "np.zeros(3)")[0] is False  # a space is a mistake
    assert score("block", "a = 1  \n    b = 2\n\n", "a = 1\n    b = 2")[0] is True


def test_first_code_line_ignores_blank_lines_and_indentation():
    assert metrics.first_code_line("\n\n    return x\n    y") == "return x"


def test_humaneval_sample_is_seeded():
    tasks = list(range(20))
    assert sample_tasks(tasks, 5, 0) == sample_tasks(tasks, 5, 0)
    assert sample_tasks(tasks, 5, None) == [0, 1, 2, 3, 4]
    assert sample_tasks(tasks, 5, 0) != sample_tasks(tasks, 5, 1)


# -- cursor positions --------------------------------------------------------------------

NOTEBOOK = [
    Cell("markdown", "# Arrays\nSome words."),
    Cell("code", "import numpy as np\nx = np.arange(10)\nprint(x.sum())"),
    Cell("code", "# a comment only\n%matplotlib inline"),
    Cell("code", "for i in range(3):\n    y = x * i\n    print(y)\nz = 1"),
    Cell("raw", "raw text"),
    Cell("code", ""),
]


def test_cursor_columns_are_line_starts_and_after_identifiers_brackets_dots():
    line = "    y = np.zeros(3)"
    columns = cursor_columns(line)
    assert columns[0] == 4  # the line start, after the indentation
    text_before = {line[:c] for c in columns}
    assert "    y = np." in text_before  # after "."
    assert "    y = np.zeros(" in text_before  # after "("
    assert "    y =" in text_before  # after "="
    assert "    y" in text_before  # after an identifier
    # At least two characters are left to type everywhere.
    assert all(len(line[c:].strip()) >= 2 for c in columns)


def test_targets_are_deterministic_and_seeded():
    first = notebook_targets("a.ipynb", NOTEBOOK, seed=0, blocks=True)
    again = notebook_targets("a.ipynb", NOTEBOOK, seed=0, blocks=True)
    assert first == again and first
    seeds = {tuple(notebook_targets("a.ipynb", NOTEBOOK, seed=s)) for s in range(10)}
    assert len(seeds) > 1
    for target in first:
        source = NOTEBOOK[target.cell_index].source
        assert NOTEBOOK[target.cell_index].cell_type == "code"
        assert target.prefix + target.expected in source  # nothing after the cursor is shown
        assert target.suffix == ""
    # Comment-only and magic lines are never targets.
    assert all(target.cell_index != 2 for target in first)
    kinds = {target.kind for target in first}
    assert kinds == {"line", "block"}
    block = next(t for t in first if t.kind == "block")
    assert block.prefix.endswith("for i in range(3):\n    ")
    assert block.expected == "y = x * i\n    print(y)"


def test_suffix_policy_cell_keeps_the_lines_below():
    targets = notebook_targets("a.ipynb", NOTEBOOK, seed=3, lines_per_cell=3, suffix_policy="cell")
    target = next(t for t in targets if t.cell_index == 3 and t.line_index == 0)
    assert target.suffix == "\n    y = x * i\n    print(y)\nz = 1"


def test_cells_above_is_what_the_frontend_sends():
    context = cells_above(NOTEBOOK, 5)
    assert [cell.cell_type for cell in context] == ["markdown", "code", "code", "code"]
    assert cells_above(NOTEBOOK, 0) == []


# -- the runners, with a fake completer (no model) -------------------------------------------


class EchoCompleter:
    """Answers with the expected text of a fixed table (or nothing), instantly."""

    explicit_mode = False

    def __init__(self, answers: dict[str, str]):
        self.answers = answers
        self.requests = []
        self.warmed = []

    async def complete(self, req):
        self.requests.append(req)
        return Completion(self.answers.get(req.prefix, ""), 1.0, "line", {"prompt_tokens": 10})

    async def warm(self, req):
        self.warmed.append(req)
        return 2.0


async def test_replay_walks_cells_warms_once_per_cell_and_types_one_character():
    targets = notebook_targets("a.ipynb", NOTEBOOK, seed=0, lines_per_cell=2)
    answers = {t.prefix: t.expected for t in targets[:1]}
    completer = EchoCompleter(answers)
    rows = await replay_notebook("a.ipynb", NOTEBOOK, targets, Variant("product", completer, True))
    assert rows[0]["phase"] == "first"
    assert rows[0]["exact_match"] and rows[0]["notebook_first"]
    assert len(completer.warmed) == len({t.cell_index for t in targets if t.cell_index > 0})
    typed = [r for r in rows if r["phase"] == "typed"]
    assert typed and all(r["expected"] for r in typed)
    assert completer.requests[1].prefix == targets[0].prefix + targets[0].expected[0]
    assert all(r.context_cells == cells_above(NOTEBOOK, r_t.cell_index)
               for r, r_t in zip(completer.requests[::2], targets))
    summary = summarize(rows)
    assert summary["line"]["n"] == len(targets)
    assert summary["latency"]["prewarm"]["n"] == len(completer.warmed)
    json.dumps(summary)


def test_start_sampler_puts_the_cursor_after_the_indentation():
    targets = notebook_targets("a.ipynb", NOTEBOOK, seed=0, sampler="start", lines_per_cell=4)
    assert targets and all(at_line_start(t.prefix) for t in targets)
    body = next(t for t in targets if t.expected == "y = x * i")
    assert body.prefix == "for i in range(3):\n    "
    assert ahead_prefix(body) == "for i in range(3):\n"  # the line above, ended
    first = next(t for t in targets if t.line_index == 0)
    assert ahead_prefix(first) is None  # no line above in its cell


class AheadCompleter(EchoCompleter):
    asks_ahead = True


async def test_replay_asks_ahead_before_line_starts_under_a_line():
    targets = [t for t in notebook_targets("a.ipynb", NOTEBOOK, seed=0, sampler="start",
                                           lines_per_cell=4) if t.cell_index == 3]  # fmt: skip
    completer = AheadCompleter({})
    rows = await replay_notebook("a.ipynb", NOTEBOOK, targets, Variant("product", completer, True),
                                 typed=False, ahead_gap_ms=1.0)  # fmt: skip
    asked = [r for r in completer.requests if r.ahead]
    under = [t for t in targets if ahead_prefix(t) is not None]
    assert len(asked) == len(under) > 0
    assert [r.prefix for r in asked] == [ahead_prefix(t) for t in under]
    # Each ahead request comes just before its target's own request, same editor.
    for index, req in enumerate(completer.requests):
        if req.ahead:
            after = completer.requests[index + 1]
            assert not after.ahead and after.editor_id == req.editor_id
            assert after.prefix.startswith(req.prefix)
    summary = summarize(rows)
    assert summary["asked_ahead"]["n"] == len(under)
    assert summary["latency"]["line_start_below"]["all_n"] == len(under)
    # A completer that cannot ask ahead (llama-server's) is replayed as before.
    plain = EchoCompleter({})
    await replay_notebook("a.ipynb", NOTEBOOK, targets, Variant("infill", plain, True),
                          typed=False, ahead_gap_ms=1.0)  # fmt: skip
    assert not any(getattr(r, "ahead", False) for r in plain.requests)


@needs_humaneval
async def test_humaneval_runner_scores_a_perfect_and_an_empty_completer(two_tasks):
    tasks = load_humaneval(two_tasks)
    perfect = EchoCompleter({t.prompt: t.canonical_solution.rstrip("\n") for t in tasks})
    rows = await run_humaneval(tasks, perfect)
    assert all(r["passed"] and r["exact_match"] for r in rows)
    assert perfect.requests[0].suffix == "\n" + tasks[0].suffix  # an empty line opened
    rows = await run_humaneval(tasks, EchoCompleter({}))
    assert not any(r["passed"] or r["exact_match"] for r in rows)


# -- end to end with the small test model -------------------------------------------------


@needs_humaneval
@pytest.mark.model
def test_cli_humaneval_writes_json(two_tasks, test_model_path, tmp_path, capsys):
    from jupyter_copilot.cli import main

    out = tmp_path / "he.json"
    code = main(["bench", "humaneval", "--file", str(two_tasks), "--model", test_model_path,
                 "--json", str(out), "--quiet", "--set", "line_max_tokens=8"])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["benchmark"] == "humaneval" and data["machine"]["nproc"]
    summary = data["summary"]["product"]
    assert summary["n"] == 2 and 0 <= summary["pass_at_1"] <= 1
    assert summary["latency_all"]["p50_ms"] > 0 and summary["latency"]["all_n"] == 2
    assert all("others_cores" in r for r in data["results"]["product"])
    assert {r["task_id"] for r in data["results"]["product"]} == {
        "SingleLineInfilling/HumanEval/0/L0", "SingleLineInfilling/HumanEval/0/L1"}
    assert "pass@1" in capsys.readouterr().out


@pytest.mark.model
@pytest.mark.slow
def test_cli_notebooks_replays_through_a_jupyter_server(test_model_path, tmp_path, capsys):
    from jupyter_copilot.cli import main

    folder = tmp_path / "nbs"
    folder.mkdir()
    cells = [{"cell_type": c.cell_type, "source": c.source, "metadata": {}} for c in NOTEBOOK]
    (folder / "a.ipynb").write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4,
                                                "nbformat_minor": 5}))
    out = tmp_path / "nb.json"
    code = main(["bench", "notebooks", str(folder), "--variants", "product,product-cell",
                 "--model", test_model_path, "--max-requests", "2", "--json", str(out),
                 "--quiet", "--set", "line_max_tokens=8"])
    assert code == 0
    data = json.loads(out.read_text())
    assert set(data["summary"]) == {"product", "product-cell"}
    assert data["summary"]["product"]["line"]["n"] == 2
    assert data["summary"]["product"]["errors"] == 0
    assert "cold p50" in capsys.readouterr().out


def test_targets_per_notebook_is_a_seeded_spread_sample():
    every = notebook_targets("a.ipynb", NOTEBOOK, seed=0, lines_per_cell=3)
    some = notebook_targets("a.ipynb", NOTEBOOK, seed=0, lines_per_cell=3, per_notebook=2)
    assert len(some) == 2 and all(target in every for target in some)
    assert some == notebook_targets("a.ipynb", NOTEBOOK, seed=0, lines_per_cell=3, per_notebook=2)


def test_third_sampler_cuts_after_the_first_third_of_the_code():
    # 12 characters of code after 4 of indentation: the cursor after 4 of them.
    assert third_column("    y = np.zeros") == 8
    assert "    y = np.zeros"[:8] == "    y = "
    assert third_column("print(x)") == 2  # "pr|int(x)": inside a name, unlike "pause"
    assert third_column("  x") is None  # fewer than 2 characters left to type
    targets = notebook_targets("a.ipynb", NOTEBOOK, seed=0, sampler="third", lines_per_cell=3)
    assert targets
    for target in targets:
        line = NOTEBOOK[target.cell_index].source.split("\n")[target.line_index]
        assert target.column == third_column(line)  # one cursor per line, always the same
        assert target.prefix.endswith(line[: target.column])
        assert target.expected == line[target.column :].rstrip()
        assert not at_line_start(target.prefix)
    assert targets == notebook_targets("a.ipynb", NOTEBOOK, seed=0, sampler="third",
                                       lines_per_cell=3)
    with pytest.raises(ValueError):
        notebook_targets("a.ipynb", NOTEBOOK, sampler="middle")


def test_pause_sampler_mixes_line_starts_and_mid_line_cursors():
    kinds = {at_line_start(t.prefix)
             for seed in range(20)
             for t in notebook_targets("a.ipynb", NOTEBOOK, seed=seed, lines_per_cell=3)}
    assert kinds == {True, False}


def test_dev_and_held_out_halves_split_a_folder_once_and_for_all(tmp_path):
    for index in range(7):
        (tmp_path / f"nb{index}.ipynb").write_text("{}")
    paths = notebook_paths(tmp_path)
    halves = split_halves(paths)
    dev, held_out = halves["dev"], halves["held-out"]
    assert len(dev) == 4 and len(held_out) == 3  # dev gets the odd one
    assert sorted(dev + held_out) == paths and not set(dev) & set(held_out)
    assert split_halves(list(reversed(paths))) == halves  # the order given does not matter
    assert notebook_paths(tmp_path, half="held-out") == held_out
    # A sample is drawn within the half, never from the other one.
    assert set(notebook_paths(tmp_path, sample=2, seed=5, half="dev")) <= set(dev)
    assert split_halves(paths, split_seed=1) != halves


def test_summary_reports_line_starts_and_mid_line_cursors_apart():
    rows = [{"phase": "first", "kind": "line", "cursor": cursor, "exact_match": exact,
             "edit_similarity": 1.0 if exact else 0.5, "latency_ms": 10.0, "notebook_first": False,
             "warm_ms": None, "timing": {}, "error": None}
            for cursor, exact in [("line_start", True), ("line_start", False), ("mid_line", True)]]
    cursor = summarize(rows)["cursor"]
    assert cursor["line_start"] == {"n": 2, "exact_match": 0.5, "edit_similarity": 0.75}
    assert cursor["mid_line"]["n"] == 1 and cursor["mid_line"]["exact_match"] == 1.0


def test_others_cores_subtracts_our_own_cpu_time():
    from jupyter_copilot.bench import interference
    from jupyter_copilot.bench.interference import CpuSample, others_cores

    ticks = interference.TICKS_PER_S
    before = CpuSample(wall=10.0, busy_ticks=1000, ours_ticks=500)
    after = CpuSample(wall=12.0, busy_ticks=1000 + 3 * ticks, ours_ticks=500 + 2 * ticks)
    assert others_cores(before, after) == pytest.approx(0.5)  # 1 core-second over 2 s
    assert others_cores(None, after) is None
    if interference.available():
        now = interference.sample()
        assert now.busy_ticks > 0 and now.ours_ticks >= 0
    rows = [{"others_cores": 0.0}, {"others_cores": 0.9}, {"others_cores": None}]
    assert interference.quiet(rows) == [rows[0]]


@pytest.mark.slow
def test_cli_load_runs_students_through_a_real_jupyterhub(tmp_path, capsys):
    """The campus load test end to end, briefly: a real JupyterHub with
    configurable-http-proxy, the copilot service, simulated students with their own
    tokens. The engine is the instant stand-in: this checks the harness and the
    service path, not llama.cpp (docs/deployment.md has the real runs)."""
    from jupyter_copilot.cli import main

    out = tmp_path / "load.json"
    code = main(["bench", "load", "--engine", "instant", "--students", "3",
                 "--duration", "4", "--ramp", "1", "--output", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["command"].startswith("jupyter copilot bench load")
    (level,) = report["results"]
    assert level["students"] == 3 and level["errors"] == 0
    assert level["completed"] > 0 and level["latency_p50_s"] is not None
    assert "| students |" in capsys.readouterr().out


def test_context_points_take_budgets_from_each_run(tmp_path):
    from jupyter_copilot.bench.plots import context_points

    def summary(exact):
        return {"line": {"exact_match": exact, "edit_similarity": exact + 0.1, "n": 4},
                "prompt_tokens": {"cold": 100 * exact}, "latency": {"cold": {"p50_ms": 500}}}

    runs = [
        {"config": {"overrides": {}},
         "summary": {"product": summary(0.5), "product-cell": summary(0.2)}},
        {"config": {"overrides": {"context_budget_tokens": "512"}},
         "summary": {"product": summary(0.4)}},
        {"config": {"overrides": {"context_budget_tokens": 512}},  # measured already
         "summary": {"product": summary(0.9)}},
    ]
    paths = []
    for i, run in enumerate(runs):
        paths.append(tmp_path / f"run{i}.json")
        paths[-1].write_text(json.dumps(run))
    points = context_points(paths)
    assert [(p["budget"], p["exact_match"]) for p in points] == [(0, 0.2), (512, 0.4), (1536, 0.5)]


def test_compare_counts_targets_fixed_and_broken_by_cursor_kind(tmp_path, capsys):
    from jupyter_copilot.bench.compare import compare
    from jupyter_copilot.cli import main

    def run(completions):
        rows = [{"variant": "product", "notebook": "a.ipynb", "cell_index": index,
                 "line_index": 0, "column": column, "kind": "line", "cursor": cursor,
                 "phase": "first", "expected": "x)", "completion": text,
                 "exact_match": text == "x)"}
                for index, (column, cursor, text) in enumerate(completions)]
        rows.append({**rows[0], "phase": "typed"})  # typed requests are not scored
        path = tmp_path / f"run{len(list(tmp_path.iterdir()))}.json"
        path.write_text(json.dumps({"results": {"product": rows}}))
        return path

    before = run([(0, "line_start", "x)"), (3, "mid_line", "y)"), (4, "mid_line", "z")])
    after = run([(0, "line_start", "y)"), (3, "mid_line", "x)"), (4, "mid_line", "zz")])
    result = compare(before, after)
    assert result["by_cursor"]["line_start"] == {"n": 1, "exact_before": 1, "exact_after": 0,
                                                 "fixed": 0, "broken": 1, "text_differs": 1}
    assert result["by_cursor"]["mid_line"]["fixed"] == 1
    assert result["by_cursor"]["all"]["text_differs"] == 3
    assert main(["bench", "compare", str(before), str(after), "--show"]) == 0
    shown = capsys.readouterr().out
    assert "broken" in shown and "fixed" in shown and "'zz'" in shown


def test_set_takes_json_and_python_booleans():
    import argparse

    from jupyter_copilot.bench.cli import _overrides

    args = argparse.Namespace(set=["token_healing=True", "reuse_suggestions=false",
                                   "cache_reuse_tokens=32", "model=x"], threads=None)
    # "True" must not reach a Bool trait as a string: the server would ignore it.
    assert _overrides(args) == {"token_healing": True, "reuse_suggestions": False,
                                "cache_reuse_tokens": 32, "model": "x"}


def _one_notebook(tmp_path: Path) -> Path:
    folder = tmp_path / "nbs"
    folder.mkdir()
    cells = [{"cell_type": c.cell_type, "source": c.source, "metadata": {}} for c in NOTEBOOK]
    (folder / "a.ipynb").write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4,
                                                "nbformat_minor": 5}))
    return folder


@pytest.mark.model
def test_cli_busy_kernel_gives_a_core_back_to_a_busy_kernel(test_model_path, tmp_path, capsys):
    """The real engine beside a process spinning on one core: with fit_threads it
    evaluates with one thread fewer (two-core machines: one) and says so."""
    import os

    from jupyter_copilot.cli import main

    out = tmp_path / "busy.json"
    code = main(["bench", "busy-kernel", str(_one_notebook(tmp_path)), "--model", test_model_path,
                 "--fit", "true", "--json", str(out), "--quiet", "--set", "line_max_tokens=4"])
    assert code == 0
    data = json.loads(out.read_text())
    rows = data["results"]["fit_threads=true"]
    assert [r["phase"] for r in rows] == ["warm", "idle", "busy"]
    busy = rows[-1]
    assert busy["kernel_rate_share"] > 0 and data["config"]["alone_rate"] > 0
    if len(os.sched_getaffinity(0)) == 2:
        assert busy["threads"] == 1
    assert set(data["summary"]["fit_threads=true"]) == {"idle", "busy"}
    assert "kernel's speed during it" in capsys.readouterr().out


@pytest.mark.model
def test_cli_decode_cost_times_passes_and_prices_drafts(test_model_path, tmp_path, capsys):
    from jupyter_copilot.cli import main

    out = tmp_path / "cost.json"
    code = main(["bench", "decode-cost", str(_one_notebook(tmp_path)), "--model", test_model_path,
                 "--draft-model", test_model_path, "--batches", "1,3", "--repeats", "1",
                 "--json", str(out)])
    assert code == 0
    summary = json.loads(out.read_text())["summary"]
    assert set(summary["pass_ms"]) == {"1", "3"} and summary["draft_pass_ms"] > 0
    assert {row["draft_tokens"] for row in summary["draft_model"]} == {2}
    assert "Speculative decoding" in capsys.readouterr().out


def test_speculation_prices_a_round_by_its_expected_tokens():
    from jupyter_copilot.bench.decode_cost import expected_tokens, speculation_table

    assert expected_tokens(0.0, 4) == 1.0  # every draft token wrong: the pass's own token
    assert expected_tokens(1.0, 4) == 5.0
    assert expected_tokens(0.5, 1) == pytest.approx(1.5)
    # A 2-token pass at 150 ms, a free draft of 1 token right half the time: 100 ms a token.
    rows = speculation_table({1: 100.0, 2: 150.0}, None)
    assert {r["acceptance"]: r["ms_per_token"] for r in rows}[0.5] == 100.0
    # The same with a draft model that costs 30 ms a token: 120 ms a token.
    rows = speculation_table({1: 100.0, 2: 150.0}, 30.0)
    assert {r["acceptance"]: r["ms_per_token"] for r in rows}[0.5] == 120.0


def test_busy_kernel_summary_counts_threads_and_the_kernels_speed():
    from jupyter_copilot.bench.busy_kernel import rate, summarize, table

    assert rate((0.0, 0), (2.0, 100)) == 50.0 and rate((1.0, 5), (1.0, 9)) == 0.0
    row = {"ms": 100.0, "first_token_ms": 40.0, "ms_per_token": 30.0, "generated_tokens": 3}
    rows = [{**row, "phase": "warm", "threads": 2},
            {**row, "phase": "idle", "threads": 2},
            {**row, "phase": "busy", "threads": 1, "ms": 300.0, "kernel_rate_share": 0.9},
            {**row, "phase": "busy", "threads": 1, "ms": 500.0, "ms_per_token": None,
             "kernel_rate_share": 1.0}]
    summary = summarize(rows)
    assert set(summary) == {"idle", "busy"}  # the warm-up is not scored
    assert summary["busy"]["ms_p50"] == 400.0 and summary["busy"]["threads"] == {1: 2}
    assert summary["busy"]["ms_per_token_p50"] == 30.0  # a one-token answer has none
    assert summary["busy"]["kernel_rate_share_p50"] == 0.95
    assert "| on | busy | 2 | 400.0 |" in table({"on": summary})


@pytest.mark.model
@pytest.mark.parametrize("after_notebook", [True, False])
def test_cli_explain_cache_keeps_both_caches(test_model_path, tmp_path, after_notebook):
    """The completion after an explanation finds the notebook in the cache. Written
    after the notebook (the default), the explanation finds it too, and so does the
    same explanation again, and a follow-up question finds the explanation's prompt
    and answer, and so does a second one after typing; in a chat of its own, the
    explanation again finds its chat's cache (the prompts built as the server builds
    them)."""
    from jupyter_copilot.cli import main

    out = tmp_path / "explain.json"
    code = main(["bench", "explain-cache", str(_one_notebook(tmp_path)), "--model", test_model_path,
                 "--json", str(out), "--quiet",
                 "--set", f"explain_after_notebook={str(after_notebook).lower()}"])
    assert code == 0
    rows = {row["phase"]: row for row in json.loads(out.read_text())["results"]}
    assert list(rows) == ["warm", "base", "explain", "follow_up", "after", "follow_up_again",
                          "explain_again"]
    assert rows["after"]["cached_tokens"] >= rows["base"]["prompt_tokens"] - 8
    if after_notebook:
        assert rows["explain"]["cached_tokens"] >= rows["base"]["prompt_tokens"] // 2
        # The question comes after the explanation's whole prompt and (most of) its answer.
        follow_up = rows["follow_up"]
        assert follow_up["cached_tokens"] > rows["explain"]["prompt_tokens"]
        assert follow_up["prompt_tokens"] - follow_up["cached_tokens"] < 64  # the question turn
        # The second question, after typing in between: the conversation is still cached.
        again = rows["follow_up_again"]
        assert again["cached_tokens"] > follow_up["prompt_tokens"]
        assert again["prompt_tokens"] - again["cached_tokens"] < 64
        # The cell's last tokens differ: the completion in between typed one more character.
        assert rows["explain_again"]["cached_tokens"] >= rows["explain"]["cached_tokens"] - 4
    else:
        assert rows["explain_again"]["cached_tokens"] >= rows["explain"]["prompt_tokens"] // 2


@pytest.mark.model
def test_cli_explain_cache_in_french(test_model_path, tmp_path):
    """`--language fr`: the explanation and the questions as the server asks them in
    French (a longer prompt than in English: what French students wait for)."""
    from jupyter_copilot.cli import main

    notebooks = _one_notebook(tmp_path)

    def asked(language: str) -> tuple[str, dict]:
        out = tmp_path / f"{language}.json"
        assert main(["bench", "explain-cache", str(notebooks), "--model", test_model_path,
                     "--json", str(out), "--quiet", "--language", language]) == 0
        payload = json.loads(out.read_text())
        return payload["config"]["language"], {row["phase"]: row for row in payload["results"]}

    (en, english), (fr, french) = asked("en"), asked("fr")
    assert (en, fr) == ("en", "fr")
    for phase in ("explain", "follow_up"):
        assert french[phase]["prompt_tokens"] > english[phase]["prompt_tokens"]
    assert french["follow_up"]["cached_tokens"] > french["explain"]["prompt_tokens"]


@pytest.mark.model
def test_cli_explain_cache_prepared_leaves_one_token_to_the_explanation(test_model_path, tmp_path):
    """`--prepared`: the explanation evaluated ahead, as the server prepares it; asked
    for, it evaluates one token (and the completions still find their cache)."""
    from jupyter_copilot.cli import main

    out = tmp_path / "explain.json"
    assert main(["bench", "explain-cache", str(_one_notebook(tmp_path)), "--model", test_model_path,
                 "--json", str(out), "--quiet", "--prepared"]) == 0
    rows = {row["phase"]: row for row in json.loads(out.read_text())["results"]}
    assert list(rows)[:4] == ["warm", "base", "prepare", "explain"]
    prepare, explain = rows["prepare"], rows["explain"]
    assert prepare["prompt_tokens"] == explain["prompt_tokens"]
    assert prepare["cached_tokens"] >= rows["base"]["prompt_tokens"] // 2
    assert explain["prompt_tokens"] - explain["cached_tokens"] == 1
    assert rows["after"]["cached_tokens"] >= rows["base"]["prompt_tokens"] - 8


@pytest.mark.model
def test_cli_explain_cache_asked_before_the_preparation_is_done(test_model_path, tmp_path):
    """`--ask-after`: the explanation asked while its preparation runs stops it and is
    answered (the preparation's row comes first, its own stop reason said)."""
    from jupyter_copilot.cli import main

    out = tmp_path / "explain.json"
    assert main(["bench", "explain-cache", str(_one_notebook(tmp_path)), "--model", test_model_path,
                 "--json", str(out), "--quiet", "--ask-after", "0"]) == 0
    rows = json.loads(out.read_text())["results"]
    assert [row["phase"] for row in rows][:4] == ["warm", "base", "prepare", "explain"]
    assert rows[2]["stop_reason"] in ("cancelled", "warm")  # stopped, or done first
    assert rows[3]["prompt_tokens"] >= rows[3]["cached_tokens"] > 0


def test_long_cell_target_is_the_last_line_of_the_deepest_long_cell():
    from jupyter_copilot.bench.explain_cache import long_cell_target

    target = long_cell_target("a.ipynb", NOTEBOOK, 3)
    assert (target.cell_index, target.line_index) == (3, 3)
    assert target.prefix == "for i in range(3):\n    y = x * i\n    print(y)\n" and target.expected == "z = 1"
    assert long_cell_target("a.ipynb", NOTEBOOK, 5) is None
    assert long_cell_target("a.ipynb", NOTEBOOK, 2, 3).cell_index == 2  # the 2-line cell


@pytest.mark.parametrize("bad", ["-5", "abc", "16-0", "0", "3-x"])
def test_cell_lines_are_checked(bad, capsys):
    from jupyter_copilot.cli import main

    with pytest.raises(SystemExit):
        main(["bench", "explain-cache", "--cell-lines", bad])
    assert "N or N-M lines" in capsys.readouterr().err


@pytest.mark.model
def test_cli_explain_cache_long_cell_with_the_kernels_names(test_model_path, tmp_path):
    """--cell-lines picks the long cell; --kernel runs the cells above in a real kernel
    and its names reach the completions and the explanation, which finds the cell's
    completion prompt cached past them; without them it stops where they begin."""
    from jupyter_copilot.cli import main

    cached = {}
    folder = _one_notebook(tmp_path)
    for flag in ([], ["--explain-without-names"]):
        out = tmp_path / f"explain{len(flag)}.json"
        code = main(["bench", "explain-cache", str(folder),
                     "--model", test_model_path, "--json", str(out), "--quiet",
                     "--cell-lines", "3-6", "--kernel", *flag])  # fmt: skip
        assert code == 0
        rows = {row["phase"]: row for row in json.loads(out.read_text())["results"]}
        assert rows["explain"]["cell_lines"] == 4 and rows["explain"]["kernel_names"] >= 2  # np, x
        cached[bool(flag)] = rows["explain"]["cached_tokens"]
        base = rows["base"]["prompt_tokens"]
    assert cached[False] >= base - 8 > cached[True]


def test_the_replayed_typing_warm_up_lags_behind_the_cursor():
    """`--typing-warm` sends what the frontend's last throttled warm-up saw: a couple of
    characters short of the pause's text, and only once something was typed on the
    cursor's line."""
    from jupyter_copilot.bench.replay import typing_warm_prefix

    assert typing_warm_prefix("x = 1\nplt.scat") == "x = 1\nplt.sc"
    # Nothing typed on the line then: the frontend sent nothing.
    assert typing_warm_prefix("x = 1\np") is None and typing_warm_prefix("x = 1\n    ab") is None
    # At a line start, the line above was being typed: its last character and Enter
    # since (the editor's indentation is not typed).
    assert typing_warm_prefix("x = 12\n") == "x = 1" and typing_warm_prefix("x = 1\n    ") == "x = "
    # ... unless nothing was typed on that line either, or it is the cell's first.
    assert typing_warm_prefix("x = 1\n\n") is None and typing_warm_prefix("x\n") is None
    assert typing_warm_prefix("") is None and typing_warm_prefix("    ") is None


async def test_the_replay_asks_ahead_while_typing_before_each_request():
    """`--typing-ahead-gap-ms`: before each target, the suggestion asked ahead at the
    cell as the frontend's last throttled tick saw it, same editor; then the pause's
    request, whose prefix extends it; at a line start, asked on the line above."""
    from jupyter_copilot.bench.replay import typing_warm_prefix

    targets = notebook_targets("a.ipynb", NOTEBOOK, seed=0, sampler="start", lines_per_cell=4)
    targets += notebook_targets("a.ipynb", NOTEBOOK, seed=0, sampler="third", lines_per_cell=3)
    completer = AheadCompleter({})
    variant = Variant("product", completer, True, prewarm=False, typing_ahead_gap_ms=1.0)
    rows = await replay_notebook("a.ipynb", NOTEBOOK, targets, variant, typed=False)
    asked = [r for r in completer.requests if r.ahead]
    typing = [typing_warm_prefix(t.prefix) for t in targets]
    assert [r.prefix for r in asked] == [p for p in typing if p is not None]
    assert 0 < len(asked) < len(targets)  # not at a cell's first line
    assert any("\n" in r.prefix[len(a.prefix) :] for a, r in _ahead_then_pause(completer.requests))
    for req, after in _ahead_then_pause(completer.requests):
        assert not after.ahead and after.editor_id == req.editor_id
        assert after.prefix.startswith(req.prefix) and after.prefix != req.prefix
    assert sum(row["typing_ahead_ms"] is not None for row in rows) == len(asked)


def _ahead_then_pause(requests):
    """(a request asked ahead, the one after it) pairs."""
    return [(req, requests[i + 1]) for i, req in enumerate(requests) if req.ahead]


async def test_the_replay_asks_the_suggestion_on_entry_instead_of_the_warm_up():
    """`--entry-ahead`: where the replay warms a cell up, it asks the suggestion at the
    target's cursor ahead instead (the frontend's `askOnEntry`), waits for it and
    records its time as the warm-up's; then the target's own request, same editor and
    text. A completer that cannot ask ahead is warmed up as before."""
    targets = notebook_targets("a.ipynb", NOTEBOOK, seed=0, lines_per_cell=2)
    completer = AheadCompleter({})
    variant = Variant("product", completer, True, entry_ahead=True)
    rows = await replay_notebook("a.ipynb", NOTEBOOK, targets, variant, typed=False)
    assert completer.warmed == []
    asked = [r for r in completer.requests if r.ahead]
    firsts = [row for row in rows if row["phase"] == "first" and row["warm_ms"] is not None]
    assert len(asked) == len(firsts) > 0
    for req, after in _ahead_then_pause(completer.requests):
        assert after.prefix == req.prefix and after.suffix == req.suffix
        assert after.editor_id == req.editor_id and not after.ahead
    assert all(row["warm_ms"] == 1.0 for row in firsts)  # the ahead request's latency
    plain = EchoCompleter({})
    await replay_notebook("a.ipynb", NOTEBOOK, targets, Variant("infill", plain, True,
                          entry_ahead=True), typed=False)  # fmt: skip
    assert plain.warmed and not any(getattr(r, "ahead", False) for r in plain.requests)


def test_the_beam_finds_a_more_probable_line_than_greedy():
    """A toy model: a line end is the likeliest first token (never taken: an empty
    line), then "a" (0.3), whose three continuations split the rest, and "b" (0.2),
    surely followed by an end. Greedy writes "ax" (0.3 × 0.4), the most probable line
    is "b" (0.2)."""
    import math

    from jupyter_copilot.bench.most_probable import best_line

    pieces = {0: b"a", 1: b"b", 2: b"x", 3: b"y", 4: b"z", 5: b"\n", 6: b""}
    low = math.log(1e-9)

    def next_logprobs(tokens):
        scores = [low] * len(pieces)
        if not tokens:  # a line end first would be an empty line: never a candidate
            scores[5], scores[0], scores[1] = math.log(0.5), math.log(0.3), math.log(0.2)
        elif tokens == [0]:
            scores[2], scores[3], scores[4] = math.log(0.4), math.log(0.3), math.log(0.3)
        elif len(tokens) == 2 and tokens[0] == 0:
            scores[5] = 0.0
        elif tokens == [1]:
            scores[6] = 0.0  # an end-of-generation token: writes nothing, ends the line
        return scores

    greedy = best_line(next_logprobs, pieces.__getitem__, width=1, max_tokens=8)
    assert greedy.text == "ax" and greedy.logprob == pytest.approx(math.log(0.3 * 0.4))
    beam = best_line(next_logprobs, pieces.__getitem__, width=3, max_tokens=8)
    assert beam.text == "b" and beam.logprob == pytest.approx(math.log(0.2))


def test_a_line_is_scored_by_its_likeliest_spelling_and_its_end():
    """ "ab" then the line's end, as one path of tokens (what the beam scores): spelled
    [ab] (0.2) or [a][b] (0.5 × 0.8), then ended by a newline token (0.6 after [b],
    0.25 after [ab]) or one that writes nothing (0.3, 0.25). The likeliest path:
    [a][b][newline], 0.5 × 0.8 × 0.6."""
    import math

    from jupyter_copilot.bench.most_probable import ModelLines

    pieces = [b"a", b"b", b"ab", b"\n", b"", b"b\n"]

    class ToyLlm:
        def n_vocab(self):
            return len(pieces)

    class ToyLines(ModelLines):
        def piece(self, token):
            return pieces[token]

        def next_logprobs(self, tokens):
            after = {(): [0.5, 0.1, 0.2, 0.1, 0.0, 0.1], (0,): [0.0, 0.8, 0.0, 0.0, 0.0, 0.2],
                     (0, 1): [0.05, 0.05, 0.0, 0.6, 0.3, 0.0],
                     (2,): [0.25, 0.25, 0.0, 0.25, 0.25, 0.0]}[tuple(tokens)]  # fmt: skip
            return [math.log(p) if p else -1e9 for p in after]

    lines = ToyLines(ToyLlm())
    assert lines.text_logprob([], "ab") == pytest.approx(math.log(0.5 * 0.8 * 0.6))
    # "a" alone: [a] then "b\n" is not an end of "a" (it writes "b" first); no "\n" or
    # empty token right after [a] either: the model never ends the line there.
    assert lines.text_logprob([], "a") < math.log(1e-6)
    assert lines.text_logprob([], "c") is None


def test_most_probable_line_summary_counts_fixed_and_broken():
    from jupyter_copilot.bench.most_probable import summarize, table

    def row(greedy_exact, beam_line, beam_exact, author=None):
        return {"author_logprob": author,
                "widths": {"1": {"line": "g", "exact_match": greedy_exact, "seconds": 1.0,
                                 "text_logprob": -2.0},
                           "3": {"line": beam_line, "exact_match": beam_exact, "seconds": 3.0}}}

    rows = [row(True, "g", True, -1.0), row(False, "b", True, -1.5), row(True, "b", False),
            row(False, "b", False, -7.0)]
    summary = summarize(rows, [1, 3])
    # Two greedy misses with the author's line scored: one the model finds more
    # probable than its own line (-1.5 > -2), one less (-7).
    assert summary["misses_scored"] == 2 and summary["misses_author_more_probable"] == 1
    assert summary["widths"]["1"] == {"exact": 2, "exact_match": 0.5, "differ": 0, "fixed": 0,
                                      "broken": 0, "seconds_mean": 1.0}
    assert summary["widths"]["3"] == {"exact": 2, "exact_match": 0.5, "differ": 3, "fixed": 1,
                                      "broken": 1, "seconds_mean": 3.0}
    text = table(summary, [1, 3])
    assert "| 3 | 4 | 2 (0.5) | 3 | 1 | 1 | 3.0 |" in text and "own: 1 of 2" in text


@pytest.mark.model
def test_cli_most_probable_line_runs_the_model_on_the_product_prompts(test_model_path, tmp_path):
    from jupyter_copilot.cli import main

    out = tmp_path / "beam.json"
    code = main(["bench", "most-probable-line", str(_one_notebook(tmp_path)), "--model",
                 test_model_path, "--widths", "1,2", "--quiet", "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    rows = data["results"]
    assert rows and data["summary"]["targets"] == len(rows)
    for row in rows:
        greedy, beam = row["widths"]["1"], row["widths"]["2"]
        assert greedy["line"] and "\n" not in greedy["line"] and beam["line"]
        assert greedy["exact_match"] == (greedy["line"] == row["expected"].rstrip())
        assert greedy["logprob"] < 0 and beam["logprob"] < 0
        # The author's line, scored by the model (here it always tokenizes alike).
        assert row["author_logprob"] < 0 and greedy["text_logprob"] < 0
        if greedy["exact_match"]:  # the same text, scored alike
            assert row["author_logprob"] == pytest.approx(greedy["text_logprob"], abs=1e-2)
