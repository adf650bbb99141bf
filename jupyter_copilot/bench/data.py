"""Benchmark inputs: where the data lives, HumanEval tasks, notebooks as cells."""

from __future__ import annotations

import gzip
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

DATA_ENV = "JUPYTER_COPILOT_BENCH_DATA"
SINGLE_LINE_FILE = "HumanEval-SingleLineInfilling.jsonl.gz"
MULTI_LINE_FILE = "HumanEval-MultiLineInfilling.jsonl.gz"


def default_data_dir() -> Path:
    """$JUPYTER_COPILOT_BENCH_DATA, else ``../shared/bench`` next to the repository
    (the data is shared between checkouts and never copied into the project)."""
    configured = os.environ.get(DATA_ENV)
    if configured:
        return Path(configured).expanduser()
    repo_root = Path(__file__).resolve().parents[2]
    return repo_root.parent / "shared" / "bench"


def resolve_data_file(name: str | os.PathLike, data_dir: str | os.PathLike | None) -> Path:
    """An existing path as given, else `name` inside the data directory."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    return Path(data_dir or default_data_dir()).expanduser() / path


@dataclass(frozen=True)
class HumanEvalTask:
    task_id: str
    entry_point: str
    prompt: str
    suffix: str
    canonical_solution: str
    test: str


def load_humaneval(path: str | os.PathLike) -> list[HumanEvalTask]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    fields = HumanEvalTask.__dataclass_fields__
    return [HumanEvalTask(**{key: row[key] for key in fields}) for row in rows]


def sample_tasks(tasks: list, limit: int | None, seed: int | None = 0) -> list:
    """The first `limit` tasks after a seeded shuffle (``seed=None``: file order).

    Seed 0 and limit 150 give the sample of the reference figures in
    ``shared/bench/README.md`` (``random.Random(0).shuffle``, first 150).
    """
    chosen = list(tasks)
    if seed is not None:
        random.Random(seed).shuffle(chosen)
    return chosen[:limit] if limit else chosen


# The dev / held-out split of a notebook folder: tune on "dev", report "held-out"
# once per decision. Fixed, so that every run of every session splits the same way.
SPLIT_SEED = 2026
HALVES = ("dev", "held-out")


def split_halves(paths: list[Path], split_seed: int = SPLIT_SEED) -> dict[str, list[Path]]:
    """{"dev": [...], "held-out": [...]}: a seeded shuffle of the sorted paths, cut in
    two (dev gets the odd one), each half sorted again."""
    shuffled = sorted(paths)
    random.Random(f"split/{split_seed}").shuffle(shuffled)
    middle = (len(shuffled) + 1) // 2
    return {"dev": sorted(shuffled[:middle]), "held-out": sorted(shuffled[middle:])}


@dataclass(frozen=True)
class Cell:
    cell_type: str  # "code", "markdown" or "raw"
    source: str


def load_notebook(path: str | os.PathLike) -> list[Cell]:
    with open(path, encoding="utf-8") as f:
        notebook = json.load(f)
    cells = []
    for cell in notebook.get("cells", []):
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(source)
        cells.append(Cell(cell.get("cell_type", "code"), source))
    return cells


def notebook_paths(
    folder: str | os.PathLike,
    max_notebooks: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    half: str | None = None,
    split_seed: int = SPLIT_SEED,
) -> list[Path]:
    """The .ipynb files below `folder` (checkpoints skipped), sorted by path.

    `half` ("dev" or "held-out") first keeps one half of the folder (`split_halves`).
    `sample` keeps a seeded random choice of that many (still sorted), so that a
    short run covers the whole folder rather than its first chapter; `max_notebooks`
    then keeps the first ones.
    """
    paths = sorted(
        path
        for path in Path(folder).expanduser().rglob("*.ipynb")
        if ".ipynb_checkpoints" not in path.parts
    )
    if half is not None:
        paths = split_halves(paths, split_seed)[half]
    if sample is not None and sample < len(paths):
        paths = sorted(random.Random(seed).sample(paths, sample))
    return paths[:max_notebooks] if max_notebooks else paths
