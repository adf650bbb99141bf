"""Policy logic added for the console: path-pattern rules and the schedule of mode
changes that the status reply carries (for the students' notifications)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from jupyter_copilot.policy import CoursePolicyDocument, path_matches, schedule


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("tp-noté/**", "tp-noté/a.ipynb", True),
        ("tp-noté/**", "tp-noté/td1/b.ipynb", True),
        ("tp-noté/**", "/tp-noté/a.ipynb", True),
        ("tp-noté/**", "tp-note/a.ipynb", False),
        ("tp-noté/**", "autre/tp-noté/a.ipynb", False),
        ("**/exam*.ipynb", "s1/exam-1.ipynb", True),
        ("**/exam*.ipynb", "exam.ipynb", True),
        ("*.ipynb", "a/b.ipynb", False),
    ],
)
def test_path_patterns(pattern, path, matches):
    assert path_matches(pattern, path) is matches


def test_a_path_rule_applies_only_to_matching_notebooks():
    doc = CoursePolicyDocument.model_validate({
        "rules": [{"groups": ["l1"], "paths": ["tp-noté/**"], "reason": "TP noté",
                   "features": {"explain_cell": "hint", "completion": "off"}}],
    })  # fmt: skip
    now = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)
    assert doc.decide("explain_cell", "alice", ["l1"], now, "tp-noté/tp1.ipynb").mode == "hint"
    assert doc.decide("completion", "alice", ["l1"], now, "tp-noté/tp1.ipynb").mode == "off"
    assert doc.decide("explain_cell", "alice", ["l1"], now, "td/td1.ipynb").mode == "on"
    assert doc.decide("explain_cell", "alice", ["l1"], now, None).mode == "on"  # see docs
    assert doc.decide("explain_cell", "bob", ["l2"], now, "tp-noté/tp1.ipynb").mode == "on"


def test_the_schedule_says_when_a_window_starts_and_ends():
    doc = CoursePolicyDocument.model_validate({
        "timezone": "Europe/Paris",
        "rules": [
            {"name": "exam", "groups": ["l1"], "reason": "Examen",
             "features": {"completion": "off"},
             "windows": [{"start": "2026-12-01T09:00", "end": "2026-12-01T12:00"}]},
            {"name": "quiz", "groups": ["l1"], "reason": "Quiz",
             "features": {"explain_cell": "hint"},
             "windows": [{"days": ["tue"], "start": "14:00", "end": "14:30"}]},
        ],
    })  # fmt: skip
    before = datetime(2026, 12, 1, 7, 0, tzinfo=timezone.utc)  # 08:00 in Paris, a Tuesday
    plan = schedule(doc, "completion", "alice", ["l1"], before)
    assert plan["mode"] == "on" and plan["since"] is None
    assert plan["next"] == {"at": "2026-12-01T09:00:00+01:00", "mode": "off",
                            "reason": "Examen (until 12:00)"}  # fmt: skip
    during = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)
    plan = schedule(doc, "completion", "alice", ["l1"], during)
    assert plan["mode"] == "off" and plan["reason"].startswith("Examen")
    assert plan["since"] == "2026-12-01T09:00:00+01:00"
    assert plan["until"] == "2026-12-01T12:00:00+01:00" and plan["next"]["mode"] == "on"
    # A weekly slot: next Tuesday's, or today's if it is still to come.
    plan = schedule(doc, "explain_cell", "alice", ["l1"], during)
    assert plan["next"]["at"] == "2026-12-01T14:00:00+01:00" and plan["next"]["mode"] == "hint"
    # Not in the group: nothing ever changes.
    assert schedule(doc, "completion", "bob", ["l2"], during)["next"] is None
