"""A student's Jupyter server in campus mode (``CopilotApp.hub_service_url``): it relays
to the campus service with the student's own JupyterHub token, and shows the
service's course policy. Real hub, real service, real llama-server."""

from __future__ import annotations

import json

import pytest

from jupyter_copilot.policy import example_policy

pytestmark = pytest.mark.model

CODE = {"prefix": "def add(a, b):\n    return ", "suffix": "", "language": "python"}


@pytest.fixture
def hub_user() -> str:
    return "alice"


@pytest.fixture
def copilot_config(copilot_service, hub_user, monkeypatch) -> dict:
    # What JupyterHub's spawner puts in a student's server environment.
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", copilot_service.hub.tokens["alice"])
    monkeypatch.setenv("JUPYTERHUB_USER", hub_user)
    return {"hub_service_url": copilot_service.url}


@pytest.fixture
def copilot_app(jp_serverapp):
    return jp_serverapp.web_app.settings["copilot"]


async def test_the_students_server_relays_to_the_service(api, copilot_service):
    status = await api.wait_ready(timeout=30)
    assert status["features"]["engine"] == "hub_service"
    assert status["features"]["warm_while_typing"] is False  # the service's rate limits
    assert status["model"]["id"] == "smollm2-135m"  # the service's model card
    assert status["features"]["quota"]["daily_tokens"] == 200_000

    reply = await api.post("complete", CODE)
    assert reply.code == 200, reply.body
    assert json.loads(reply.body)["model"] == "smollm2-135m"
    chunks = await api.stream("complete?stream=1", {**CODE, "editor_id": "cell-1"})
    assert chunks[-1]["done"] and "error" not in chunks[-1]
    explained = await api.stream("explain", {"kind": "cell", "source": "print(2 ** 10)"})
    assert explained[-1]["done"] and explained[-1]["text"].strip()
    # Counted for alice (from her token), at the service.
    assert copilot_service.app.ledger.report("alice")["total"]["requests"] == 3


async def test_the_service_policy_reaches_the_student(
    api, copilot_app, copilot_service, policy_clock
):
    await api.wait_ready(timeout=30)
    copilot_service.write_policy(example_policy())
    policy_clock.set("2025-06-16T10:30:00+02:00")  # during the L1 exam
    reply = await api.post("complete", CODE)
    assert reply.code == 403
    error = json.loads(reply.body)
    assert error["field"] == "completion" and "Exam in progress" in error["error"]
    await copilot_app.engine_instance.refresh()  # the background poll, without waiting for it
    status = json.loads((await api.get("status")).body)
    assert status["features"]["completion"] == {
        "mode": "off",
        "reason": "Exam in progress (until 12:00)",
    }
    assert status["features"]["explain_cell"]["mode"] == "off"


@pytest.mark.hub_service(requests_per_minute={"completion": 3}, burst_seconds=20)
async def test_quota_429_reaches_the_student_with_retry_after(api):
    await api.wait_ready(timeout=30)
    assert (await api.post("complete", CODE)).code == 200
    refused = await api.post("complete", CODE)
    assert refused.code == 429
    assert int(refused.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("hub_user", ["bob"])
async def test_a_server_holding_another_students_token_gets_nothing(api, copilot_app):
    await copilot_app.engine_instance.refresh()
    status = json.loads((await api.get("status")).body)
    assert status["state"] == "error"
    assert "belongs to 'alice', not to 'bob'" in status["detail"]
    reply = await api.post("complete", CODE)
    assert reply.code == 503  # the service refuses; nothing is generated
