"""The console's service routes against a real JupyterHub (its tokens and groups) and
a real database: reports, export/erasure, the policy editor and its history, and
403 for students on every staff route. No engine is needed: usage rows come from the
service's own ledger (`ledger.record`, what the completion and explain services call
after each request)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from conftest_hub import Clock, free_port, service_argv

STAFF_ROUTES = [
    ("GET", "admin/usage"),
    ("GET", "admin/usage?by=user&format=csv"),
    ("GET", "admin/users/bob/usage"),
    ("DELETE", "admin/users/bob/usage"),
    ("GET", "admin/policy"),
    ("PUT", "admin/policy"),
    ("GET", "admin/policy/history"),
    ("GET", "usage?user=bob"),
]


@pytest.fixture
def console_service(jupyterhub, tmp_path, jp_asyncio_loop, request):
    """The service with a database and the policy in it (no policy file), and an
    engine address where nothing listens (these routes never call it)."""
    from traitlets.config import Config

    from conftest_hub import ServiceUnderTest
    from jupyter_copilot.hub.app import CopilotHubService

    clock = Clock()
    marker = request.node.get_closest_marker("hub_service")
    traits = {
        **jupyterhub.service_traits(tmp_path),
        "engine_url": f"http://127.0.0.1:{free_port()}/v1",
        "policy_check_interval": 0.0,
        "timezone": "Europe/Paris",
        "db_url": f"sqlite:///{tmp_path / 'copilot-service.sqlite'}",
        **(marker.kwargs if marker else {}),
    }
    app = CopilotHubService(config=Config({"CopilotHubService": traits}))
    app.setup(now=clock)
    jp_asyncio_loop.run_until_complete(app.start_async())
    service = ServiceUnderTest(app, jupyterhub.service_url, jupyterhub,
                               tmp_path / "unused.json")  # fmt: skip
    service.clock = clock
    yield service
    jp_asyncio_loop.run_until_complete(app.stop_async())


async def call(service, method: str, route: str, user: str | None, body=None, **kw):
    async with httpx.AsyncClient(timeout=60) as client:
        return await client.request(method, service.url + route, json=body,
                                    headers=service.headers(user), **kw)  # fmt: skip


async def seen(service, *users: str) -> None:
    """Each user calls the service once (the service learns their groups)."""
    for user in users:
        assert (await call(service, "GET", "status", user)).status_code == 200


def charge(service, user: str, feature: str = "completion", prompt=100, generated=10, seconds=0.5):
    service.app.ledger.record(user, feature, prompt_tokens=prompt, generated_tokens=generated,
                              engine_seconds=seconds)  # fmt: skip


async def test_a_student_gets_403_on_every_staff_route(console_service):
    await seen(console_service, "alice", "bob")
    charge(console_service, "bob")
    for method, route in STAFF_ROUTES:
        body = {"rules": []} if method == "PUT" else None
        reply = await call(console_service, method, route, "alice", body)
        assert reply.status_code == 403, (method, route, reply.text)
        assert "bob" not in reply.text or "may not read" in reply.text
    assert console_service.app.store.totals()["requests"] == 1  # nothing erased


async def test_reports_add_up_with_the_requests_made(console_service):
    await seen(console_service, "alice", "bob", "prof")
    for user, feature in [("alice", "completion"), ("alice", "completion"),
                          ("alice", "explain_cell"), ("bob", "completion"),
                          ("prof", "explain_error")]:  # fmt: skip
        charge(console_service, user, feature)
    reply = await call(console_service, "GET", "admin/usage?group=l1-python&by=day,feature",
                       "prof")  # fmt: skip
    assert reply.status_code == 200, reply.text
    rows = reply.json()["rows"]
    today = console_service.app.store.today()
    by_feature = {r["feature"]: r for r in rows}
    assert {r["day"] for r in rows} == {today} and {r["group"] for r in rows} == {"l1-python"}
    assert by_feature["completion"]["requests"] == 3
    assert by_feature["explain_cell"]["requests"] == 1 and "explain_error" not in by_feature
    assert sum(r["prompt_tokens"] for r in rows) == 400
    assert reply.json()["total"]["requests"] == 5  # all courses, each request once
    assert reply.json()["admission"]["running"] == 0  # the engine queue, as security.md says
    assert sum(r["generated_tokens"] for r in rows) == 40
    assert sum(r["wh"] for r in rows) == pytest.approx(4 * 0.5 * 300 / 3600, rel=1e-3)
    assert all(r["gco2e"] > 0 for r in rows)
    # Per student: pseudonyms by default.
    per_user = (await call(console_service, "GET", "admin/usage?by=user&group=l1-python",
                           "prof")).json()  # fmt: skip
    assert per_user["pseudonymised"] is True
    assert sorted(r["requests"] for r in per_user["rows"]) == [1, 3]
    assert not {"alice", "bob"} & {r["user"] for r in per_user["rows"]}
    # The same rows as CSV.
    reply = await call(console_service, "GET", "admin/usage?group=l1-python&format=csv", "prof")
    assert reply.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(reply.text)))
    assert sum(int(r["requests"]) for r in table) == 4
    # Dates are checked, and a wrong `by` is a 400 naming it.
    bad = await call(console_service, "GET", "admin/usage?from=yesterday", "prof")
    assert bad.status_code == 400 and bad.json()["field"] == "from"
    bad = await call(console_service, "GET", "admin/usage?by=prompt", "prof")
    assert bad.status_code == 400 and bad.json()["field"] == "by"
    # A student's own view: their requests only, each counted once.
    own = (await call(console_service, "GET", "usage", "alice")).json()
    assert own["user"] == "alice" and own["total"]["requests"] == 3
    assert sum(r["requests"] for r in own["rows"]) == 3 and "group" not in own["rows"][0]
    assert own["quota"]["tokens_used_today"] == 330


@pytest.mark.hub_service(show_student_names=True)
async def test_an_admin_may_let_staff_see_names(console_service):
    await seen(console_service, "alice")
    charge(console_service, "alice")
    rows = (await call(console_service, "GET", "admin/usage?by=user", "prof")).json()["rows"]
    assert [r["user"] for r in rows] == ["alice"]


async def test_export_and_erasure_of_a_student(console_service):
    await seen(console_service, "alice", "bob")
    charge(console_service, "alice")
    charge(console_service, "alice", "explain_cell")
    charge(console_service, "bob")
    export = await call(console_service, "GET", "admin/users/alice/usage", "prof")
    assert export.status_code == 200
    rows = export.json()["rows"]
    assert len(rows) == 2 and {r["groups"][0] for r in rows} == {"l1-python"}
    assert not any("prefix" in r or "text" in r for r in rows)  # counts only, never code
    as_csv = await call(console_service, "GET", "admin/users/alice/usage?format=csv", "prof")
    assert len(as_csv.text.strip().splitlines()) == 3
    erased = await call(console_service, "DELETE", "admin/users/alice/usage", "prof")
    assert erased.json() == {"user": "alice", "erased_requests": 2}
    after = await call(console_service, "GET", "admin/users/alice/usage", "prof")
    assert after.json()["rows"] == []
    assert console_service.app.store.totals()["requests"] == 1


async def test_the_policy_editor_applies_at_once_and_keeps_a_history(console_service):
    await seen(console_service, "alice")
    app, clock = console_service.app, console_service.clock
    clock.now = datetime(2026, 12, 1, 10, 30, tzinfo=timezone.utc)  # 11:30 in Paris
    policy = {
        "timezone": "Europe/Paris",
        "rules": [{
            "name": "hints for the next hour", "groups": ["l1-python"],
            "features": {"explain_cell": "hint", "explain_error": "hint"},
            "reason": "Travail en autonomie",
            "windows": [{"start": "2026-12-01T11:00", "end": "2026-12-01T12:30"}],
        }],
    }  # fmt: skip
    reply = await call(console_service, "PUT", "admin/policy", "prof", policy)
    assert reply.status_code == 200, reply.text
    assert reply.json()["source"] == "database"
    status = (await call(console_service, "GET", "status", "alice")).json()["features"]
    assert status["explain_cell"]["mode"] == "hint"
    assert status["explain_cell"]["reason"].startswith("Travail en autonomie")
    assert status["schedule"]["explain_cell"]["until"] == "2026-12-01T12:30:00+01:00"
    assert status["schedule"]["explain_cell"]["since"] == "2026-12-01T11:00:00+01:00"
    assert status["schedule"]["explain_cell"]["next"]["mode"] == "on"
    assert status["completion"]["mode"] == "on"
    assert app.policy.mode("explain_cell", "prof") == "on"  # staff are not in the group
    # Later that day the rule has ended; no restart, nothing else to do.
    clock.now += timedelta(hours=2)
    assert app.policy.mode("explain_cell", "alice") == "on"
    # A broken document is refused with the field that is wrong; nothing changes.
    bad = await call(console_service, "PUT", "admin/policy", "prof",
                     {"rules": [{"features": {"completion": "hint"}}]})  # fmt: skip
    assert bad.status_code == 400 and "completion" in bad.text
    reply = await call(console_service, "PUT", "admin/policy", "prof", {"rules": []})
    history = (await call(console_service, "GET", "admin/policy/history", "prof")).json()
    versions = history["versions"]
    assert [v["author"] for v in versions] == ["prof", "prof"]
    assert versions[0]["summary"] == "- rule 'hints for the next hour'"
    assert versions[1]["policy"]["rules"][0]["reason"] == "Travail en autonomie"
    described = (await call(console_service, "GET", "admin/policy", "prof")).json()
    assert "l1-python" in described["groups"] and "staff" not in described["groups"]


async def test_an_explain_cell_rule_bounds_error_explanations_in_the_status(console_service):
    """Staff turn only "Explain this cell" off: the students' status (the buttons, the
    notifications) says error explanations are off too, as the service enforces; the
    console's form is told the bound (it follows it)."""
    await seen(console_service, "alice")
    console_service.clock.now = datetime(2026, 12, 1, 10, 30, tzinfo=timezone.utc)
    policy = {"timezone": "Europe/Paris",
              "rules": [{"name": "exam", "groups": ["l1-python"], "reason": "Examen",
                         "features": {"explain_cell": "off"},
                         "windows": [{"start": "2026-12-01T11:00", "end": "2026-12-01T12:30"}]}]}
    reply = await call(console_service, "PUT", "admin/policy", "prof", policy)  # fmt: skip
    assert reply.json()["bounded_by"] == {"explain_error": ["explain_cell"]}
    status = (await call(console_service, "GET", "status", "alice")).json()["features"]
    assert status["explain_error"]["mode"] == "off"
    assert status["explain_error"]["reason"].startswith("Examen")
    assert status["schedule"]["explain_error"]["until"] == "2026-12-01T12:30:00+01:00"


async def test_a_second_replica_on_the_same_database_sees_policy_and_usage(console_service,
                                                                           jp_asyncio_loop):
    from traitlets.config import Config

    from jupyter_copilot.hub.app import CopilotHubService

    await seen(console_service, "alice")
    charge(console_service, "alice")
    await call(console_service, "PUT", "admin/policy", "prof",
               {"default": {"completion": "off"}, "default_reason": "Examen"})  # fmt: skip
    config = Config({"CopilotHubService": {**console_service.app.config.CopilotHubService,
                                           "url": f"http://127.0.0.1:{free_port()}"}})
    replica = CopilotHubService(config=config)
    replica.setup()
    try:
        assert replica.policy.mode("completion", "alice") == "off"
        assert replica.store.totals()["requests"] == 1
        assert replica.quotas.remaining("alice")["tokens_used_today"] == 110
    finally:
        replica.store.close()
        await asyncio.sleep(0)


def test_the_service_killed_with_sigkill_keeps_its_policy_and_history(jupyterhub, tmp_path):
    """The real service process (`jupyter copilot hub-service`), SIGKILLed after a
    policy change and restarted on the same database: nothing committed is lost."""
    import signal
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    db_url = f"sqlite:///{tmp_path / 'copilot-service.sqlite'}"
    argv = [sys.executable, "-m", "jupyter_copilot.cli", "hub-service",
            *service_argv({**jupyterhub.service_traits(tmp_path), "db_url": db_url,
                           "engine_url": f"http://127.0.0.1:{free_port()}/v1"})]  # fmt: skip
    base = jupyterhub.service_url

    def request(method: str, route: str, body: bytes | None = None):
        req = urllib.request.Request(base + route, method=method, data=body, headers={
            "Authorization": f"token {jupyterhub.tokens['prof']}"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=30) as reply:
            return json.loads(reply.read())

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "health", timeout=2)
                return proc
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        proc.kill()
        raise AssertionError("the service did not start")

    proc = start()
    try:
        request("PUT", "admin/policy", json.dumps({"default": {"completion": "off"},
                                                   "default_reason": "Examen"}).encode())
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc = start()
        versions = request("GET", "admin/policy/history")["versions"]
        assert [v["author"] for v in versions] == ["prof"]
        assert request("GET", "admin/policy")["policy"]["default"] == {"completion": "off"}
    finally:
        proc.kill()
        proc.wait(10)
