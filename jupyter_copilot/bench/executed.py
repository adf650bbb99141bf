"""Executed replay: notebooks run in a real kernel, completions with its live names.

Each notebook is executed cell by cell in a fresh IPython kernel (jupyter_client +
ipykernel, in a scratch folder: a cell that fails, for a missing data file or
library, just fails, as it would for the student; a cell that runs too long is
interrupted). Before the targets of a cell, the kernel's namespace is summarized
with the very probe the JupyterLab extension sends (context/kernel_probe.py), and
each target is asked twice of the product's completion path: without and with that
summary (``kernel_namespace``), the rest of the request being the same.

A target "uses a runtime-only name" when the text to type contains a name the
summary shows (a variable, a column or key label, an attribute or method) that the
code above the cursor never spells.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..context.kernel_probe import decode_reply, probe_expression
from ..schema import CompleteRequest, NamespaceEntry
from .data import Cell
from .metrics import mean
from .replay import cells_above, score
from .targets import Target

VARIANTS = ("plain", "kernel")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]+")
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")
_MEMBER_LISTS = ("attributes: ", "methods: ")
_TYPE_WORDS = {"int", "str", "float", "bool", "list", "dict", "tuple", "set", "function"}
# The data files next to a notebook are copied next to it in the kernel's folder (as
# a student has them); bigger ones are left out (the cell that reads them fails).
MAX_DATA_FILE_BYTES = 20 * 1024 * 1024


def copy_data_files(source: Path, target: Path) -> list[str]:
    """The files (not notebooks, not hidden) of `source` copied into `target`."""
    copied = []
    for path in sorted(source.iterdir()):
        if (path.is_file() and path.suffix != ".ipynb" and not path.name.startswith(".")
                and path.stat().st_size <= MAX_DATA_FILE_BYTES):
            shutil.copyfile(path, target / path.name)
            copied.append(path.name)
    return copied


class NotebookKernel:
    """One IPython kernel for one notebook, driven like a student's (blocking client)."""

    def __init__(self, cell_timeout: float = 20.0, kernel_name: str = "python3",
                 data_dir: Path | None = None) -> None:
        self.cell_timeout = cell_timeout
        self.kernel_name = kernel_name
        self._scratch = tempfile.TemporaryDirectory(prefix="copilot-executed-")
        self.data_files = copy_data_files(data_dir, Path(self._scratch.name)) if data_dir else []
        self.manager = None
        self.client = None

    def __enter__(self) -> NotebookKernel:
        self._start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop()
        self._scratch.cleanup()

    def _start(self) -> None:
        from jupyter_client import KernelManager

        env = {**os.environ, "MPLBACKEND": "Agg", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
        self.manager = KernelManager(kernel_name=self.kernel_name, transport="ipc",
                                     ip=os.path.join(self._scratch.name, ".kernel"))
        self.manager.start_kernel(cwd=self._scratch.name, env=env)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)

    def _stop(self) -> None:
        if self.client is not None:
            self.client.stop_channels()
        if self.manager is not None:
            self.manager.shutdown_kernel(now=True)

    def _reply(self, msg_id: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while True:
            self._drain_iopub()
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                msg = self.client.get_shell_msg(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg["content"]

    def _drain_iopub(self) -> None:
        while True:
            try:
                self.client.get_iopub_msg(timeout=0)
            except queue.Empty:
                return

    def run(self, source: str) -> str:
        """'ok', 'error' (the cell raised), 'timeout' (interrupted) or 'restarted'."""
        msg_id = self.client.execute(source, store_history=True, allow_stdin=False)
        content = self._reply(msg_id, self.cell_timeout)
        if content is not None:
            return content.get("status", "error")
        self.manager.interrupt_kernel()
        if self._reply(msg_id, 10.0) is not None:
            return "timeout"
        self._stop()  # stuck even after the interrupt: a fresh kernel, like a student
        self._start()
        return "restarted"

    def run_cells(self, cells: list[Cell], start: int, stop: int) -> dict[int, str]:
        """Run the code cells of `cells[start:stop]` in order: {index: `run`'s status}."""
        return {index: self.run(cells[index].source) for index in range(start, stop)
                if cells[index].cell_type == "code" and cells[index].source.strip()}  # fmt: skip

    def namespace(self, timeout: float = 10.0) -> list[dict]:
        """The probe's entries, asked the way the frontend asks (silent, no history)."""
        msg_id = self.client.execute(
            "", silent=True, store_history=False, allow_stdin=False,
            user_expressions={"copilot": probe_expression()},
        )
        content = self._reply(msg_id, timeout) or {}
        result = content.get("user_expressions", {}).get("copilot", {})
        if result.get("status") != "ok":
            return []
        return decode_reply(result.get("data", {}).get("text/plain", ""))


def runtime_names(entries: list[dict]) -> set[str]:
    """Names the summary shows: variables, quoted labels, attributes and methods."""
    names: set[str] = set()
    for entry in entries:
        names.add(entry["name"])
        summary = entry["summary"]
        for label in _QUOTED.findall(summary):
            names.update(_IDENTIFIER.findall(label))
        for heading in _MEMBER_LISTS:
            if heading in summary:
                members = summary.split(heading, 1)[1].split(";")[0]
                names.update(set(_IDENTIFIER.findall(members)) - _TYPE_WORDS)
    return names


_KEY_OPENER = re.compile(r"""\[\s*(['"])(?=[A-Za-z_])""")


def key_candidates(notebook: str, cell_index: int, source: str) -> list[Target]:
    """Cursors right after ``["`` or ``['`` (where `df["` asks for a column): the
    rest of the line is the target. Kept only where the key is runtime-only."""
    lines = source.split("\n")
    found = []
    for index, line in enumerate(lines):
        if line.lstrip().startswith("#"):
            continue
        for match in _KEY_OPENER.finditer(line):
            column = match.end()
            expected = line[column:].rstrip()
            if len(expected) >= 2:
                prefix = "\n".join(lines[:index] + [line[:column]])
                found.append(Target(notebook, cell_index, index, column, "line", prefix, "",
                                    expected))
    return found


def first_identifier(text: str) -> str:
    match = _IDENTIFIER.search(text.partition("\n")[0])
    return match.group(0) if match and text.strip().startswith(match.group(0)) else ""


def runtime_only(expected: str, code_above: str, names: set[str]) -> list[str]:
    """The names of `expected` the summary shows and the code above never spells."""
    spelled = set(_IDENTIFIER.findall(code_above))
    return sorted({n for n in _IDENTIFIER.findall(expected) if n in names and n not in spelled})


@dataclass
class ExecutedNotebook:
    name: str
    cells: list[Cell]
    targets: list[Target]
    folder: Path | None = None  # where its data files are
    cell_status: dict[int, str] = field(default_factory=dict)


async def replay_executed(
    notebook: ExecutedNotebook,
    completer,
    kernel_factory: Callable[[Path | None], NotebookKernel],
    *,
    key_targets: bool = False,
    on_result: Callable[[dict], None] | None = None,
) -> list[dict]:
    rows: list[dict] = []
    by_cell: dict[int, list[tuple[str, Target]]] = {}
    for target in notebook.targets:
        by_cell.setdefault(target.cell_index, []).append(("seeded", target))
    if key_targets:
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type == "code":
                for target in key_candidates(notebook.name, index, cell.source):
                    by_cell.setdefault(index, []).append(("key", target))
    with kernel_factory(notebook.folder) as kernel:
        executed = 0
        for cell_index in sorted(by_cell):
            notebook.cell_status.update(kernel.run_cells(notebook.cells, executed, cell_index))
            executed = cell_index
            entries = kernel.namespace()
            names = runtime_names(entries)
            namespace = [NamespaceEntry(**e) for e in entries]
            context = cells_above(notebook.cells, cell_index)
            code_above = "\n".join(c.source for c in context)
            for sampler, target in by_cell[cell_index]:
                used = runtime_only(target.expected, code_above + "\n" + target.prefix, names)
                if sampler == "key" and not (used and first_identifier(target.expected) in used):
                    continue  # a key the code above spells: the seeded sampler covers those
                line_start = not target.prefix.rpartition("\n")[2].strip()
                for variant in VARIANTS:
                    req = CompleteRequest(
                        prefix=target.prefix, suffix=target.suffix, language="python",
                        path=notebook.name, cell_id=f"cell-{cell_index}",
                        # One editor per variant: the other's suggestion is not reused.
                        editor_id=f"bench:{variant}:{notebook.name}#cell-{cell_index}",
                        context_cells=context,
                        kernel_namespace=namespace if variant == "kernel" else [],
                    )
                    reply = await completer.complete(req)
                    exact, similarity = score(target.kind, reply.text, target.expected)
                    row = {
                        "variant": variant, "notebook": notebook.name,
                        "cell_index": cell_index, "line_index": target.line_index,
                        "column": target.column, "kind": target.kind, "sampler": sampler,
                        "line_start": line_start, "runtime_names": used,
                        "namespace_entries": len(entries), "expected": target.expected,
                        "completion": reply.text, "exact_match": exact,
                        "first_name": bool(first_identifier(target.expected))
                        and first_identifier(reply.text) == first_identifier(target.expected),
                        # ... or at least with a name the kernel has (a real column or key)
                        "real_name": first_identifier(reply.text) in names,
                        "edit_similarity": similarity, "error": reply.error,
                    }
                    rows.append(row)
                    if on_result:
                        on_result(row)
    return rows


def _group(rows: list[dict]) -> dict:
    return {
        "n": len(rows),
        "exact_match": mean([float(r["exact_match"]) for r in rows]),
        "edit_similarity": mean([r["edit_similarity"] for r in rows]),
        # The completion starts with the right name (column, key, attribute).
        "first_name": mean([float(r["first_name"]) for r in rows]),
        "real_name": mean([float(r.get("real_name", False)) for r in rows]),
    }


def summarize(rows: list[dict]) -> dict:
    """Per variant: overall, runtime-only targets, line starts and mid-line cursors."""
    summary = {}
    for variant in VARIANTS:
        keyed = [r for r in rows if r["variant"] == variant and r["sampler"] == "key"]
        mine = [r for r in rows if r["variant"] == variant and r["sampler"] == "seeded"]
        summary[variant] = {
            "all": _group(mine),
            "key_targets": _group(keyed),
            "runtime_only": _group([r for r in mine if r["runtime_names"]]),
            "line_start": _group([r for r in mine if r["line_start"]]),
            "mid_line": _group([r for r in mine if not r["line_start"]]),
            "errors": sum(bool(r["error"]) for r in mine),
        }
    return summary


def cell_outcomes(notebooks: list[ExecutedNotebook]) -> dict:
    statuses = [s for nb in notebooks for s in nb.cell_status.values()]
    return {status: statuses.count(status) for status in sorted(set(statuses))}
