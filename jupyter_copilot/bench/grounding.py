"""`jupyter copilot bench grounding`: does the course index cite the right notebook?

Given a course folder and a questions file (JSON list or JSON lines of
``{"question": ..., "notebook": "file name or path", "language": "fr"|"en"}``), index
the folder as the product does (course.CourseIndex, through the same query path as an
explanation), ask every question, and report hit@1 / hit@3 of the cited sources (is
the answering notebook the first source, one of the first three?), per language, plus
the time to index the folder from scratch, to re-check it unchanged, and the time a
query adds to a request. Numbers only mean something on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path, PurePosixPath


def add_grounding_parser(kinds) -> None:
    parser = kinds.add_parser(
        "grounding", help="course material retrieval: hit@1/hit@3 of cited notebooks, latency"
    )
    parser.add_argument("folder", help="folder of course material (notebooks, Markdown, …)")
    parser.add_argument("questions", help="JSON(L) file of {question, notebook, language}")
    parser.add_argument("--sources", type=int, default=3, help="sources cited per answer")
    parser.add_argument("--json", default=None, metavar="FILE", help="write results here")
    parser.add_argument("--quiet", action="store_true", help="no per-question lines")
    parser.add_argument("--misses", action="store_true", help="print the questions missed at 3")
    parser.set_defaults(func=run_grounding)


def load_questions(path: str | Path) -> list[dict]:
    text = Path(path).read_text(encoding="utf-8")
    stripped = text.lstrip()
    items = json.loads(text) if stripped.startswith("[") else [
        json.loads(line) for line in text.splitlines() if line.strip()
    ]
    for item in items:
        if not isinstance(item, dict) or not item.get("question") or not item.get("notebook"):
            raise ValueError(f"each question needs 'question' and 'notebook': {item!r}")
    return items


def same_file(cited: str, expected: str) -> bool:
    """A cited path names the expected notebook (by path suffix or by file name)."""
    cited_parts, expected_parts = PurePosixPath(cited).parts, PurePosixPath(expected).parts
    return cited_parts[-len(expected_parts):] == expected_parts


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def evaluate(folder: str, questions: list[dict], sources: int = 3, show=None) -> dict:
    from ..course.retrieval import CourseLibrary
    from ..schema import ExplainRequest

    with tempfile.TemporaryDirectory() as index_dir:
        started = time.perf_counter()
        library = CourseLibrary({"*": [folder]}, index_dir, max_sources=sources,
                                check_interval=3600)  # fmt: skip
        library._first_sync.join()
        build_s = time.perf_counter() - started
        index = library.indexes["*"]
        report = index.last_sync
        started = time.perf_counter()
        index.sync()
        recheck_ms = (time.perf_counter() - started) * 1000
        rows, latencies = [], []
        for item in questions:
            req = ExplainRequest(kind="question", question=item["question"],
                                 language=item.get("language"))  # fmt: skip
            started = time.perf_counter()
            grounding = library.ground_sync(req, "bench")
            latencies.append((time.perf_counter() - started) * 1000)
            cited = [s.path for s in grounding.sources] if grounding else []
            rank = next((i + 1 for i, p in enumerate(cited) if same_file(p, item["notebook"])), None)
            row = {"question": item["question"], "language": item.get("language", "?"),
                   "expected": item["notebook"], "cited": cited, "rank": rank}  # fmt: skip
            rows.append(row)
            if show:
                show(row)
        library.close()

    def rates(subset: list[dict]) -> dict:
        n = len(subset)
        return {
            "questions": n,
            "hit@1": round(sum(1 for r in subset if r["rank"] == 1) / n, 3) if n else None,
            "hit@3": round(sum(1 for r in subset if r["rank"] and r["rank"] <= 3) / n, 3)
            if n else None,
        }

    languages = sorted({r["language"] for r in rows})
    return {
        "course": {"folder": str(folder), "files": report.files, "passages": report.passages},
        "overall": rates(rows),
        "by_language": {lang: rates([r for r in rows if r["language"] == lang]) for lang in languages},
        "latency": {
            "index_build_s": round(build_s, 3),
            "index_recheck_unchanged_ms": round(recheck_ms, 2),
            "query_ms_median": round(statistics.median(latencies), 2) if latencies else None,
            "query_ms_p95": round(_percentile(latencies, 0.95), 2) if latencies else None,
            "query_ms_max": round(max(latencies), 2) if latencies else None,
        },
        "rows": rows,
    }


def run_grounding(args: argparse.Namespace) -> int:
    from .report import machine, now

    questions = load_questions(args.questions)

    def show(row: dict) -> None:
        mark = {1: "1", 2: "2", 3: "3"}.get(row["rank"], "-")
        print(f"[{mark}] ({row['language']}) {row['question'][:70]}")

    result = evaluate(args.folder, questions, args.sources, None if args.quiet else show)
    result = {"benchmark": "grounding", "date": now(), "machine": machine(),
              "argv": getattr(args, "argv", []), **result}  # fmt: skip
    summary = {k: result[k] for k in ("course", "overall", "by_language", "latency")}
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    if args.misses:
        for row in result["rows"]:
            if not row["rank"]:
                print(f"MISS ({row['language']}) {row['question']} -> expected {row['expected']}, "
                      f"cited {[PurePosixPath(p).name for p in row['cited']]}")  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 0
