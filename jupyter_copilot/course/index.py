"""The course index: passages of staff's course folders in SQLite FTS5, ranked by BM25.

Incremental: `sync()` compares each file's size and modification time with what was
indexed and re-reads only the files that changed (new, edited or removed), so a
course of hundreds of notebooks is re-checked in milliseconds. The index lives in
one SQLite file (kept across restarts) and is re-synced at most every
`check_interval` seconds when it is used: staff edit the folder, students' next
question sees it, no restart.

Why FTS5 and no embedding model: it is in every Python's sqlite3, needs no model
and no GPU, and with the stemming and glossary of text.py it finds the right
notebook for most questions (docs/benchmarks.md, `jupyter copilot bench grounding`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .chunking import SUFFIXES, passages_of
from .text import query_terms, terms

log = logging.getLogger("jupyter_copilot")

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, mtime_ns INTEGER, size INTEGER
);
CREATE TABLE IF NOT EXISTS passages (
    id INTEGER PRIMARY KEY, file_id INTEGER NOT NULL, cell_index INTEGER, page INTEGER,
    title TEXT, text TEXT
);
CREATE INDEX IF NOT EXISTS passages_file ON passages(file_id);
CREATE VIRTUAL TABLE IF NOT EXISTS passage_terms USING fts5(
    title, body, tokenize = 'unicode61 remove_diacritics 2'
);
"""
# BM25 weight of a heading's words against the body's: a section titled "Sorting
# arrays" is about sorting even when the word is rare in its text.
TITLE_WEIGHT, BODY_WEIGHT = 4.0, 1.0
# Bounds: a course folder is staff's, but a stray data file must not stall indexing.
MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_FILES = 5000
CANDIDATES = 60


@dataclass
class Hit:
    path: str  # relative to the course folder's parent (what the student sees)
    title: str
    text: str
    cell_index: Optional[int]
    page: Optional[int]
    score: float  # higher is better


@dataclass
class SyncReport:
    files: int = 0
    indexed: int = 0
    removed: int = 0
    passages: int = 0
    seconds: float = 0.0


class CourseIndex:
    """Course folders -> passages. Thread-safe (one connection behind a lock)."""

    def __init__(
        self,
        folders: Iterable[str | os.PathLike],
        db_path: str | os.PathLike = ":memory:",
        *,
        check_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folders = [Path(f).expanduser().resolve() for f in folders]
        for folder in self.folders:
            if not folder.is_dir():  # a typo in the config must not fail silently
                log.warning("jupyter-copilot: course material folder %s does not exist", folder)
        self.db_path = str(db_path)
        self.check_interval = check_interval
        self._clock = clock
        self._checked_at = float("-inf")
        self._lock = threading.Lock()
        if self.db_path != ":memory:":
            Path(self.db_path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.db_path, check_same_thread=False)
        self._db.executescript(SCHEMA)
        self.last_sync: Optional[SyncReport] = None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- files -------------------------------------------------------------------------
    def _course_files(self) -> Iterator[tuple[str, Path]]:
        count = 0
        for folder in self.folders:
            if not folder.is_dir():
                continue
            for root, dirs, names in os.walk(folder):
                # Hidden folders and Jupyter's checkpoints are not course material.
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
                for name in sorted(names):
                    if name.startswith(".") or not name.lower().endswith(SUFFIXES):
                        continue
                    path = Path(root) / name
                    count += 1
                    if count > MAX_FILES:
                        log.warning("jupyter-copilot: course has over %d files; the rest is skipped",
                                    MAX_FILES)  # fmt: skip
                        return
                    yield (path.relative_to(folder.parent).as_posix(), path)

    def sync(self) -> SyncReport:
        """Index new and changed files, forget removed ones."""
        started = time.perf_counter()
        report = SyncReport()
        with self._lock:
            known = {
                path: (file_id, mtime, size)
                for file_id, path, mtime, size in self._db.execute(
                    "SELECT id, path, mtime_ns, size FROM files"
                )
            }
            seen = set()
            with self._db:  # one transaction: a crash leaves the previous index
                for rel, path in self._course_files():
                    try:
                        info = path.stat()
                    except OSError:
                        continue
                    seen.add(rel)
                    report.files += 1
                    old = known.get(rel)
                    if old and (old[1], old[2]) == (info.st_mtime_ns, info.st_size):
                        continue
                    if old:
                        self._forget(old[0])
                    if info.st_size > MAX_FILE_BYTES:
                        continue
                    self._index_file(rel, path, info)
                    report.indexed += 1
                for rel, (file_id, _, _) in known.items():
                    if rel not in seen:
                        self._forget(file_id)
                        report.removed += 1
            report.passages = self._db.execute("SELECT count(*) FROM passages").fetchone()[0]
        self._checked_at = self._clock()
        report.seconds = time.perf_counter() - started
        self.last_sync = report
        if report.indexed or report.removed:
            log.info("jupyter-copilot: course index: %d files re-read, %d removed, %d passages "
                     "(%.2f s)", report.indexed, report.removed, report.passages,
                     report.seconds)  # fmt: skip
        return report

    def _forget(self, file_id: int) -> None:
        ids = [row[0] for row in self._db.execute(
            "SELECT id FROM passages WHERE file_id = ?", (file_id,))]  # fmt: skip
        self._db.executemany("DELETE FROM passage_terms WHERE rowid = ?", [(i,) for i in ids])
        self._db.execute("DELETE FROM passages WHERE file_id = ?", (file_id,))
        self._db.execute("DELETE FROM files WHERE id = ?", (file_id,))

    def _index_file(self, rel: str, path: Path, info: os.stat_result) -> None:
        cursor = self._db.execute(
            "INSERT INTO files (path, mtime_ns, size) VALUES (?, ?, ?)",
            (rel, info.st_mtime_ns, info.st_size),
        )
        file_id = cursor.lastrowid
        # The file name is part of every heading: "03.08-Aggregation-and-Grouping".
        name_terms = " ".join(terms(path.stem.replace("-", " ")))
        for passage in passages_of(path):
            row = self._db.execute(
                "INSERT INTO passages (file_id, cell_index, page, title, text) VALUES (?,?,?,?,?)",
                (file_id, passage.cell_index, passage.page, passage.title, passage.text),
            ).lastrowid
            self._db.execute(
                "INSERT INTO passage_terms (rowid, title, body) VALUES (?, ?, ?)",
                (row, " ".join(terms(passage.title)) + " " + name_terms,
                 " ".join(terms(passage.text))),
            )  # fmt: skip

    def maybe_sync(self) -> None:
        if self._clock() - self._checked_at >= self.check_interval:
            self.sync()

    # -- search ----------------------------------------------------------------------------
    def search(self, text: str, limit: int = 3, per_file: int = 1) -> list[Hit]:
        """The best passages for `text`, at most `per_file` from one file (so that the
        first sources name different notebooks)."""
        wanted = query_terms(text)
        if not wanted:
            return []
        match = " OR ".join(f'"{t}"' for t in wanted)
        with self._lock:
            rows = self._db.execute(
                "SELECT p.id, f.path, p.title, p.text, p.cell_index, p.page,"
                f" bm25(passage_terms, {TITLE_WEIGHT}, {BODY_WEIGHT}) AS rank"
                " FROM passage_terms JOIN passages p ON p.id = passage_terms.rowid"
                " JOIN files f ON f.id = p.file_id"
                " WHERE passage_terms MATCH ? ORDER BY rank LIMIT ?",
                (match, CANDIDATES),
            ).fetchall()
        hits: list[Hit] = []
        taken: dict[str, int] = {}
        for _, path, title, body, cell_index, page, rank in rows:
            if taken.get(path, 0) >= per_file:
                continue
            taken[path] = taken.get(path, 0) + 1
            hits.append(Hit(path, title, body, cell_index, page, -rank))
            if len(hits) >= limit:
                break
        return hits
