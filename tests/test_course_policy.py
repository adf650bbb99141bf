"""The course policy document, its file and the per-student quotas, on their own."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from jupyter_copilot.hub.quotas import QuotaExceeded, Quotas, QuotaSettings
from jupyter_copilot.policy import (
    CoursePolicy,
    CoursePolicyDocument,
    Policy,
    PolicyFile,
    PolicyRefusal,
    example_policy,
)


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


@pytest.fixture
def document() -> CoursePolicyDocument:
    return CoursePolicyDocument.model_validate(example_policy())


def test_the_fixed_policy_keeps_its_interface():
    policy = Policy(modes={"completion": "off", "explain_cell": "on", "explain_error": "hint"})
    assert policy.mode("completion") == "off"
    assert policy.require("explain_error") == "hint"
    with pytest.raises(PolicyRefusal):
        policy.require("completion", "anyone")
    assert policy.features()["completion"] == {"mode": "off", "reason": "set by the administrator"}
    assert policy.features()["explain_cell"] == {"mode": "on"}


def test_exam_window_is_timezone_aware(document):
    decide = document.decide
    # 09:00 in Paris is 07:00 UTC in June (summer time).
    assert (
        decide("completion", "alice", {"l1-python"}, at("2025-06-16T06:59:59+00:00")).mode == "on"
    )
    during = decide("completion", "alice", {"l1-python"}, at("2025-06-16T07:00:00+00:00"))
    assert during == ("off", "Exam in progress (until 12:00)")
    assert (
        decide("completion", "alice", {"l1-python"}, at("2025-06-16T10:00:00+00:00")).mode == "on"
    )
    # Not in the group, or exempted: unaffected.
    assert decide("completion", "eve", {"l2-data"}, at("2025-06-16T08:00:00+00:00")).mode == "on"
    assert (
        decide("completion", "prof", {"l1-python", "staff"}, at("2025-06-16T08:00:00+00:00")).mode
        == "on"
    )


def test_weekly_window_and_most_restrictive_rule_wins(document):
    friday_quiz = at("2025-06-20T14:10:00+02:00")
    assert document.decide("completion", "eve", ["l2-data"], friday_quiz) == (
        "off",
        "Quiz (until 14:30)",
    )
    assert (
        document.decide("completion", "eve", ["l2-data"], at("2025-06-19T14:10:00+02:00")).mode
        == "on"
    )
    # hint (always) and off (exam window) both apply to explanations: off wins.
    exam = at("2025-06-16T09:30:00+02:00")
    assert document.decide("explain_cell", "alice", ["l1-python"], exam).mode == "off"
    assert (
        document.decide(
            "explain_cell", "alice", ["l1-python"], at("2025-06-17T09:30:00+02:00")
        ).mode
        == "hint"
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"rules": [{"group": ["x"], "features": {"completion": "off"}}]},  # typo
        {"default": {"completion": "hint"}},  # no hint mode for completions
        {"timezone": "Mars/Olympus"},
        {
            "rules": [
                {"features": {"completion": "off"}, "windows": [{"start": "12:00", "end": "09:00"}]}
            ]
        },
    ],
)
def test_a_wrong_policy_is_rejected(bad):
    with pytest.raises(ValidationError):
        CoursePolicyDocument.model_validate(bad)


def test_the_policy_file_is_reread_and_a_bad_edit_keeps_the_last_good_one(tmp_path):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"default": {"completion": "off"}}))
    now = [0.0]
    source = PolicyFile(path, check_interval=2.0, clock=lambda: now[0])
    policy = CoursePolicy(source, groups_of=lambda user: {"l1-python"})
    assert policy.mode("completion", "alice") == "off"

    path.write_text(json.dumps({"default": {"completion": "on"}, "rules": []}))
    os.utime(path, (1e9, 1e9))
    assert policy.mode("completion", "alice") == "off"  # not checked again yet
    now[0] = 2.0
    assert policy.mode("completion", "alice") == "on"

    path.write_text("{ not json")
    os.utime(path, (2e9, 2e9))
    now[0] = 4.0
    assert policy.mode("completion", "alice") == "on"
    assert source.error and "policy.json" in source.error

    source.replace(CoursePolicyDocument.model_validate({"default": {"explain_cell": "hint"}}))
    assert source.error is None
    assert json.loads(path.read_text()) == {"default": {"explain_cell": "hint"}}
    assert policy.features("alice")["explain_cell"] == {
        "mode": "hint",
        "reason": "set by the course staff",
    }


# --- quotas -------------------------------------------------------------------------------------


def test_rate_bucket_allows_a_burst_then_refills():
    clock = [0.0]
    quotas = Quotas(QuotaSettings(requests_per_minute={"completion": 60}, burst_seconds=3,
                                  max_in_flight=0, daily_tokens=0), clock=lambda: clock[0])  # fmt: skip
    for _ in range(3):  # 60/min x 3 s = a burst of 3
        with quotas.admit("alice", "completion"):
            pass
    with pytest.raises(QuotaExceeded) as caught, quotas.admit("alice", "completion"):
        pass
    assert caught.value.limit == "rate" and caught.value.retry_after == 1
    with quotas.admit("bob", "completion"):  # per student
        pass
    clock[0] = 1.0
    with quotas.admit("alice", "completion"):
        pass


def test_requests_in_flight_are_capped_per_student():
    quotas = Quotas(QuotaSettings(requests_per_minute={}, max_in_flight=1, daily_tokens=0))
    with quotas.admit("alice", "completion"):
        with pytest.raises(QuotaExceeded) as caught, quotas.admit("alice", "explain_cell"):
            pass
        assert caught.value.limit == "concurrency"
        with quotas.admit("bob", "completion"):
            pass
    with quotas.admit("alice", "completion"):
        pass
    with quotas.admit("prof", "completion", groups=()):
        pass


def test_daily_tokens_reset_at_local_midnight():
    now = [datetime(2025, 6, 16, 21, 0, tzinfo=timezone.utc)]  # 23:00 in Paris
    quotas = Quotas(QuotaSettings(requests_per_minute={}, daily_tokens=100, timezone="Europe/Paris",
                                  exempt_groups=("staff",)), wall_clock=lambda: now[0])  # fmt: skip
    quotas.charge("alice", 120)
    with pytest.raises(QuotaExceeded) as caught, quotas.admit("alice", "completion"):
        pass
    assert caught.value.limit == "daily_tokens"
    assert caught.value.retry_after == 3600  # until midnight, Paris time
    with quotas.admit("alice", "completion", groups=["staff"]):  # exempt group
        pass
    now[0] = datetime(2025, 6, 16, 22, 0, 1, tzinfo=timezone.utc)  # 00:00:01 in Paris
    with quotas.admit("alice", "completion"):
        pass
    assert quotas.remaining("alice")["tokens_used_today"] == 0


def test_the_hub_service_command_lists_its_settings(capsys):
    from jupyter_copilot.cli import main

    with pytest.raises(SystemExit) as done:
        main(["hub-service", "--help-all"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for trait in ("engine_url", "policy_file", "daily_token_quota", "staff_groups"):
        assert f"--CopilotHubService.{trait}=" in out
