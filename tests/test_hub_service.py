"""The campus service with real parts: a JupyterHub on loopback issuing the students'
tokens, HubAuth checking them, and llama-server generating the text."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from jupyter_copilot.policy import example_policy

pytestmark = pytest.mark.model

CODE = {"prefix": "def add(a, b):\n    return ", "suffix": "", "language": "python"}


async def call(service, method: str, route: str, user: str | None, body=None, **headers):
    async with httpx.AsyncClient(timeout=60) as client:
        return await client.request(method, service.url + route, json=body,
                                    headers=service.headers(user, **headers))  # fmt: skip


async def complete(service, user: str, **extra) -> httpx.Response:
    return await call(service, "POST", "complete", user, {**CODE, **extra})


# --- who may ask ---------------------------------------------------------------------------


async def test_both_students_get_completions_at_once(copilot_service):
    alice, bob = await asyncio.gather(
        complete(copilot_service, "alice"), complete(copilot_service, "bob")
    )
    for reply in (alice, bob):
        assert reply.status_code == 200, reply.text
        assert reply.json()["model"] == "smollm2-135m"
        assert reply.json()["timing"]["prompt_tokens"] > 0
    users = copilot_service.app.ledger.report()["users"]
    assert users["alice"]["requests"] == 1 and users["bob"]["requests"] == 1


async def test_streaming_through_the_service(copilot_service):
    url, headers = copilot_service.url + "complete?stream=1", copilot_service.headers("alice")
    async with (
        httpx.AsyncClient(timeout=60) as client,
        client.stream("POST", url, json=CODE, headers=headers) as reply,
    ):
        assert reply.status_code == 200
        chunks = [json.loads(line) async for line in reply.aiter_lines() if line.strip()]
    assert chunks[-1]["done"] and "error" not in chunks[-1]
    explained = await call(copilot_service, "POST", "explain?stream=0", "bob",
                           {"kind": "cell", "source": "print(len('abc'))"})  # fmt: skip
    assert explained.status_code == 200, explained.text
    assert explained.json()["text"].strip()


async def test_no_token_or_a_bad_one_is_401(copilot_service):
    reply = await complete_without_token(copilot_service)
    assert reply.status_code == 401
    assert "token" in reply.json()["error"]
    reply = await call(copilot_service, "POST", "complete", None, CODE,
                       Authorization="token not-a-real-token")  # fmt: skip
    assert reply.status_code == 401


async def complete_without_token(service) -> httpx.Response:
    return await call(service, "POST", "complete", None, CODE)


@pytest.mark.parametrize("who", ["carol", "alice-no-scope"])
async def test_a_token_without_the_service_scope_is_403(copilot_service, who):
    reply = await complete(copilot_service, who)
    assert reply.status_code == 403
    assert "access:services!service=copilot" in reply.json()["error"]


async def test_a_service_token_is_not_a_student(copilot_service):
    reply = await call(copilot_service, "GET", "status", None,
                       Authorization=f"token {copilot_service.hub.admin_token}")  # fmt: skip
    assert reply.status_code == 403


async def test_one_students_token_never_acts_for_another(copilot_service):
    reply = await call(
        copilot_service, "POST", "complete", "alice", CODE, **{"X-Copilot-User": "bob"}
    )
    assert reply.status_code == 403
    assert "belongs to 'alice'" in reply.json()["error"]
    assert (await call(copilot_service, "GET", "usage?user=bob", "alice")).status_code == 403
    assert (await call(copilot_service, "GET", "admin/usage", "alice")).status_code == 403
    assert (await call(copilot_service, "GET", "admin/policy", "bob")).status_code == 403
    # Staff may read a student's usage.
    assert (await call(copilot_service, "GET", "usage?user=bob", "prof")).status_code == 200
    assert "bob" not in copilot_service.app.ledger.report().get("users", {})


# --- quotas -------------------------------------------------------------------------------------


@pytest.mark.hub_service(requests_per_minute={"completion": 3}, burst_seconds=20)
async def test_rate_limit_is_429_with_retry_after(copilot_service):
    assert (await complete(copilot_service, "alice")).status_code == 200
    refused = await complete(copilot_service, "alice")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 20
    assert "per minute" in refused.json()["error"]
    assert (await complete(copilot_service, "bob")).status_code == 200  # bob has his own
    assert (await complete(copilot_service, "prof")).status_code == 200  # staff: exempt
    assert (await complete(copilot_service, "prof")).status_code == 200


@pytest.mark.hub_service(daily_token_quota=5)
async def test_daily_token_quota_is_429_until_midnight(copilot_service):
    first = await complete(copilot_service, "alice")
    assert first.status_code == 200  # under the quota when it started
    refused = await complete(copilot_service, "alice")
    assert refused.status_code == 429
    assert "quota" in refused.json()["error"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 24 * 3600
    usage = (await call(copilot_service, "GET", "usage", "alice")).json()
    assert usage["quota"]["tokens_left_today"] == 0
    assert usage["quota"]["tokens_used_today"] >= 5
    status = (await call(copilot_service, "GET", "status", "alice")).json()
    assert status["features"]["quota"]["tokens_left_today"] == 0


# --- course policy ------------------------------------------------------------------------------


async def test_an_exam_window_turns_completions_off_for_a_group(copilot_service, policy_clock):
    copilot_service.write_policy(example_policy())  # L1 exam 2025-06-16 09:00-12:00, Paris
    policy_clock.set("2025-06-16T08:59:00+02:00")
    assert (await complete(copilot_service, "alice")).status_code == 200

    policy_clock.set("2025-06-16T09:00:00+02:00")
    refused = await complete(copilot_service, "alice")
    assert refused.status_code == 403
    assert refused.json()["field"] == "completion"
    assert "Exam in progress (until 12:00)" in refused.json()["error"]
    status = (await call(copilot_service, "GET", "status", "bob")).json()
    assert status["features"]["completion"] == {
        "mode": "off",
        "reason": "Exam in progress (until 12:00)",
    }
    explained = await call(
        copilot_service, "POST", "explain", "bob", {"kind": "cell", "source": "x = 1"}
    )
    assert explained.status_code == 403
    assert (await complete(copilot_service, "prof")).status_code == 200  # staff: except_groups

    policy_clock.set("2025-06-16T12:00:00+02:00")
    assert (await complete(copilot_service, "alice")).status_code == 200
    status = (await call(copilot_service, "GET", "status", "alice")).json()
    assert status["features"]["completion"] == {"mode": "on"}
    assert status["features"]["explain_cell"]["mode"] == "hint"  # the course's other rule


async def test_staff_change_the_policy_without_a_restart(copilot_service):
    assert (await complete(copilot_service, "alice")).status_code == 200
    # 1. Edit the file: seen at the next request.
    copilot_service.write_policy({"rules": [{"groups": ["l1-python"], "features": {"completion": "off"},
                                             "reason": "Lab closed"}]})  # fmt: skip
    refused = await complete(copilot_service, "alice")
    assert refused.status_code == 403 and "Lab closed" in refused.json()["error"]
    # 2. A broken edit keeps the policy in force and says why.
    copilot_service.policy_path.write_text('{"rules": [{"group": ["l1-python"]}]}')
    described = (await call(copilot_service, "GET", "admin/policy", "prof")).json()
    assert described["error"] and described["policy"]["rules"][0]["reason"] == "Lab closed"
    assert (await complete(copilot_service, "alice")).status_code == 403
    # 3. The admin API (staff only), validated.
    bad = await call(
        copilot_service, "PUT", "admin/policy", "prof", {"default": {"completion": "hint"}}
    )
    assert bad.status_code == 400
    assert (await call(copilot_service, "PUT", "admin/policy", "alice", {})).status_code == 403
    reply = await call(
        copilot_service, "PUT", "admin/policy", "prof", {"default": {"completion": "on"}}
    )
    assert reply.status_code == 200, reply.text
    assert (await complete(copilot_service, "alice")).status_code == 200
    written = json.loads(copilot_service.policy_path.read_text())
    assert written["default"]["completion"] == "on"


# --- usage ---------------------------------------------------------------------------------------


async def test_usage_adds_up_per_student_and_course(copilot_service):
    for user in ("alice", "alice", "bob", "prof"):
        assert (await complete(copilot_service, user)).status_code == 200
    own = (await call(copilot_service, "GET", "usage", "alice")).json()
    assert own["user"] == "alice" and own["total"]["requests"] == 2
    assert "users" not in own  # a student sees only their own figures
    report = (await call(copilot_service, "GET", "admin/usage?by=user", "prof")).json()
    per_group = {}
    for row in report["rows"]:
        per_group[row["group"]] = per_group.get(row["group"], 0) + row["requests"]
    assert per_group == {"l1-python": 3, "staff": 1}
    assert sorted(r["requests"] for r in report["rows"]) == [1, 1, 2]  # pseudonyms
    sums = {k: sum(r[k] for r in report["rows"]) for k in ("prompt_tokens", "generated_tokens")}
    assert sums["prompt_tokens"] > 0 and sums["generated_tokens"] > 0
    assert all(r["wh"] > 0 and r["gco2e"] > 0 for r in report["rows"])
    in_memory = copilot_service.app.ledger.report()["total"]  # /metrics' counters agree
    assert in_memory["prompt_tokens"] == sums["prompt_tokens"]

    metrics = await call(copilot_service, "GET", "metrics", "prof")
    assert metrics.status_code == 200
    assert 'copilot_requests_total{feature="completion",outcome="ok"} 4.0' in metrics.text
    assert 'copilot_course_requests_total{course="l1-python"} 3.0' in metrics.text
    assert "alice" not in metrics.text  # no student names in monitoring
    assert (await call(copilot_service, "GET", "metrics", "alice")).status_code == 403


async def test_no_prompt_text_is_kept(copilot_service, caplog):
    secret = "the_students_private_variable_name = "
    assert (await complete(copilot_service, "alice", prefix=secret)).status_code == 200
    report = (await call(copilot_service, "GET", "admin/usage", "prof")).text
    assert secret not in report and secret not in caplog.text


async def test_health_needs_no_token(copilot_service):
    reply = await call(copilot_service, "GET", "health", None)
    assert reply.status_code == 200 and reply.json()["engine"] == "ready"


async def test_a_student_hanging_up_stops_the_engine(copilot_service, llama_server):
    """Browser -> user server -> service -> engine: closing the first connection stops
    generation at the last one (here: the service's client hangs up)."""
    before = llama_server.metrics().get("llamacpp:tokens_predicted_total", 0)
    counting = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12," * 3
    body = json.dumps(
        {"prefix": counting, "language": "python", "mode": "block", "max_tokens": 400}
    )
    host_port = copilot_service.url.split("/")[2]
    reader, writer = await asyncio.open_connection(*host_port.split(":"))
    writer.write(
        f"POST /services/copilot/complete?stream=1 HTTP/1.1\r\nHost: {host_port}\r\n"
        f"Authorization: token {copilot_service.hub.tokens['alice']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode()
    )
    await writer.drain()
    await reader.readuntil(b'"text"')  # generation has started
    writer.close()
    for _ in range(40):
        if await asyncio.to_thread(llama_server.busy_slots) == 0:
            break
        await asyncio.sleep(0.05)
    assert llama_server.busy_slots() == 0
    predicted = llama_server.metrics().get("llamacpp:tokens_predicted_total", 0) - before
    assert predicted < 300, predicted
    await asyncio.sleep(0.2)
    report = copilot_service.app.ledger.report("alice")
    assert report["total"]["cancelled"] == 1
