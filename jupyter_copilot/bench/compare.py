"""Paired comparison of two notebook replays of the same targets (`bench compare`).

Exact match on ~60 targets moves by several points between seeds, so a change is
judged on the targets themselves: how many it fixed, how many it broke, by cursor
kind (line start / mid-line), with the completions that changed.
"""

from __future__ import annotations

import json
from pathlib import Path

from .report import table


def _scored(path: str | Path) -> tuple[dict, list[dict]]:
    payload = json.loads(Path(path).read_text())
    rows = [row for variant in payload["results"].values() for row in variant
            if row["phase"] in ("first", "later") and row["kind"] == "line"]
    return payload, rows


def _key(row: dict) -> tuple:
    return row["variant"], row["notebook"], row["cell_index"], row["line_index"], row["column"]


def compare(before: str | Path, after: str | Path) -> dict:
    """{"by_cursor": {kind: counts}, "changed": [rows]} over the targets of both runs."""
    _, rows_before = _scored(before)
    _, rows_after = _scored(after)
    after_by_key = {_key(row): row for row in rows_after}
    by_cursor: dict[str, dict] = {}
    changed = []
    for row in rows_before:
        other = after_by_key.get(_key(row))
        if other is None:
            continue
        kind = row.get("cursor", "?")
        counts = by_cursor.setdefault(kind, {"n": 0, "exact_before": 0, "exact_after": 0,
                                             "fixed": 0, "broken": 0, "text_differs": 0})
        counts["n"] += 1
        counts["exact_before"] += bool(row["exact_match"])
        counts["exact_after"] += bool(other["exact_match"])
        counts["fixed"] += bool(other["exact_match"] and not row["exact_match"])
        counts["broken"] += bool(row["exact_match"] and not other["exact_match"])
        if row["completion"] != other["completion"]:
            counts["text_differs"] += 1
            changed.append({"notebook": row["notebook"], "cell": row["cell_index"],
                            "cursor": kind, "expected": row["expected"],
                            "before": row["completion"], "after": other["completion"],
                            "exact_before": row["exact_match"],
                            "exact_after": other["exact_match"]})
    total = {key: sum(c[key] for c in by_cursor.values())
             for key in ("n", "exact_before", "exact_after", "fixed", "broken", "text_differs")}
    return {"by_cursor": {**by_cursor, "all": total}, "changed": changed}


def compare_table(result: dict) -> str:
    rows = []
    for kind, c in result["by_cursor"].items():
        n = c["n"] or 1
        rows.append([kind, c["n"], round(c["exact_before"] / n, 3), round(c["exact_after"] / n, 3),
                     c["fixed"], c["broken"], c["text_differs"]])
    return table(["cursor", "targets", "exact before", "exact after", "fixed", "broken",
                  "completion differs"], rows)


def add_compare_parser(kinds) -> None:
    parser = kinds.add_parser("compare", help="paired comparison of two `notebooks --json` runs",
                              description="Targets fixed and broken between two replays of "
                              "the same targets, by cursor kind.")
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--show", action="store_true", help="list the completions that changed")
    parser.set_defaults(func=_compare)


def _compare(args) -> int:
    result = compare(args.before, args.after)
    print(compare_table(result))
    if args.show:
        for row in result["changed"]:
            mark = {(False, True): "fixed", (True, False): "broken"}.get(
                (bool(row["exact_before"]), bool(row["exact_after"])), "same score")
            print(f"\n{row['notebook']} cell {row['cell']} ({row['cursor']}, {mark})\n"
                  f"  expected {row['expected']!r}\n  before   {row['before']!r}\n"
                  f"  after    {row['after']!r}")
    return 0
