"""The server extension against a real jupyter_server and a real llama.cpp model
(SmolLM2-135M Q4_1) in its child process. No fake engine here."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal

import pytest
from conftest import post_then_hang_up
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

pytestmark = pytest.mark.model

FUNCTION_PREFIX = 'def add(a, b):\n    """Return the sum of a and b."""\n    return '


async def test_status_reports_model_card_and_path(api, test_model_path):
    status = await api.wait_ready()
    assert status["state"] == "ready"
    card = status["model"]
    assert card["path"] == test_model_path
    assert card["family"] == "plain"
    assert card["licence"]
    assert card["engine"] == "llama_cpp"
    assert status["features"]["completion"]["mode"] == "on"
    # A CPU engine with its own prompt cache: the frontend warms it while typing.
    assert status["features"]["warm_while_typing"] is True


async def test_complete_returns_text_model_and_timing(api):
    await api.wait_ready()
    reply = await api.post("complete", {"prefix": FUNCTION_PREFIX, "suffix": "", "language": "python"})
    assert reply.code == 200, reply.body
    data = json.loads(reply.body)
    assert data["model"]
    assert data["mode"] == "line"
    assert "\n" not in data["text"]  # line mode: one line at most
    timing = data["timing"]
    assert timing["prompt_tokens"] > 0
    assert timing["total_ms"] > 0


async def test_stream_sends_growing_text_then_done(api):
    await api.wait_ready()
    chunks = await api.stream(
        "complete?stream=1",
        {"prefix": "# a list of the first ten square numbers\nsquares = [", "mode": "line",
         "request_id": "r1"},
    )
    assert chunks, "no chunk received"
    assert chunks[-1]["done"] is True
    assert all(c["id"] == "r1" for c in chunks)
    texts = [c["text"] for c in chunks]
    # Each chunk carries the whole text so far (what JupyterLab's inline completer wants).
    for earlier, later in zip(texts, texts[1:-1]):
        assert later.startswith(earlier) or len(later) >= len(earlier) - 1
    assert chunks[-1]["timing"]["generated_tokens"] >= 1


async def test_warm_prefills_the_cache(api):
    await api.wait_ready()
    cells = [{"cell_type": "code", "source": "import math\n\ndef area(r):\n    return math.pi * r ** 2\n"}]
    reply = await api.post("warm", {"path": "course/td1.ipynb", "context_cells": cells})
    assert reply.code == 202
    await asyncio.sleep(1.0)
    reply = await api.post(
        "complete",
        {"prefix": "print(area(", "path": "course/td1.ipynb", "context_cells": cells, "mode": "line"},
    )
    data = json.loads(reply.body)
    assert data["timing"]["cached_tokens"] > 0, data["timing"]


async def test_warm_with_the_current_cell_leaves_only_the_cursor_line(api):
    """The frontend also sends the cell around the cursor: the warm-up evaluates its
    lines above the cursor's line, and the first completion there evaluates only the
    line being typed."""
    await api.wait_ready()
    cells = [{"cell_type": "code", "source": "import math\n"}]
    above = "".join(f"value_{i} = math.sqrt({i})\n" for i in range(30))
    body = {"path": "course/td2.ipynb", "context_cells": cells}
    await api.warm({**body, "prefix": above + "total = ", "suffix": "\nprint(total)"})
    reply = await api.post("complete", {**body, "prefix": above + "total = val",
                                        "suffix": "\nprint(total)", "mode": "line"})
    timing = json.loads(reply.body)["timing"]
    assert timing["prompt_tokens"] > 300, timing
    assert timing["prompt_tokens"] - timing["cached_tokens"] <= 12, timing


async def test_a_typing_warm_up_leaves_only_the_word_being_typed(api):
    """While the student types (`through_cursor`), the warm-up goes on along the line:
    the completion asked at the pause evaluates the word being typed and the prompt's
    tail, not the line (here ~40 tokens long)."""
    await api.wait_ready()
    cells = [{"cell_type": "code", "source": "import math\n"}]
    above = "".join(f"value_{i} = math.sqrt({i})\n" for i in range(10))
    line = "total = " + " + ".join(f"value_{i} * {i}" for i in range(8)) + " + val"
    body = {"path": "course/td3.ipynb", "context_cells": cells, "suffix": ""}
    await api.warm({**body, "prefix": above})  # entering the cell
    await api.warm({**body, "prefix": above + line, "through_cursor": True})  # typing
    reply = await api.post("complete", {**body, "prefix": above + line + "ue", "mode": "line"})
    timing = json.loads(reply.body)["timing"]
    assert timing["prompt_tokens"] - timing["cached_tokens"] <= 8, timing


# A cell long enough that evaluating its prompt takes seconds on a cold cache: a
# window in which to cancel, kill or supersede a request, whatever the model writes.
LONG_CELL = "".join(f"value_{i} = compute({i}, {i * 7 % 13})\n" for i in range(60)) + "total = "


async def test_newer_request_for_same_editor_cancels_older_on_server(api, copilot_app):
    await api.wait_ready()
    body = {"prefix": LONG_CELL, "mode": "line", "editor_id": "nb.ipynb#cell-1"}
    first = asyncio.ensure_future(api.stream("complete?stream=1", {**body, "request_id": "old"}))
    await asyncio.sleep(0.5)
    second = await api.stream("complete?stream=1", {**body, "request_id": "new"})
    old = await first
    assert old[-1]["done"] and old[-1]["error"] == "cancelled: superseded by a newer request", old[-1]
    assert second[-1]["done"] and not second[-1].get("error")
    # The old request stopped inside prompt evaluation, and what it had evaluated
    # stayed in the KV cache: the new request (same text) reused it.
    assert second[-1]["timing"]["cached_tokens"] > 0
    usage = copilot_app.usage.report()["total"]
    assert usage["requests"] == 2 and usage["cancelled"] == 1


# A short answer: the request after Enter waits at most 10 s for the ahead one, and a
# slow 2-core machine took 9.7 s to write 160 tokens after this long cell.
@pytest.mark.copilot(block_max_tokens=32)
async def test_the_request_after_an_accept_is_answered_by_the_one_asked_ahead(api, copilot_app):
    """The frontend asks ahead once a suggestion is accepted at a line end; the
    request made after Enter waits for that answer instead of cancelling it."""
    await api.wait_ready()
    accepted = LONG_CELL + "value_60\n"
    body = {"suffix": "", "editor_id": "nb.ipynb#cell-2", "path": "nb.ipynb"}
    ahead = asyncio.ensure_future(api.post("complete", {**body, "prefix": accepted, "ahead": True}))
    await asyncio.sleep(0.3)  # the ahead request is being evaluated (a long prompt)
    after_enter = json.loads((await api.post("complete", {**body, "prefix": accepted})).body)
    asked = json.loads((await ahead).body)
    assert asked["text"].strip(), asked  # (the test model writes something here)
    assert after_enter["timing"]["reused"] and after_enter["text"] == asked["text"]
    assert not asked.get("error"), asked  # waited for, not superseded
    # Typing on through it: still answered from memory.
    typed = asked["text"][:2]
    again = json.loads((await api.post("complete", {**body, "prefix": accepted + typed})).body)
    assert again["timing"]["reused"], again
    assert asked["text"].startswith(typed + again["text"].partition("\n")[0])
    usage = copilot_app.usage.report()["total"]
    assert usage["cancelled"] == 0


async def test_the_pause_is_answered_by_the_suggestion_asked_while_typing(api, copilot_app):
    """While the student types a line, the frontend asks ahead at the cursor; the
    request of the pause, while that one is still being written, follows it (its text
    streamed) and is answered from it; two characters later, typed as it says, too;
    and, asked at the end of the line, it wrote the next line, which answers the
    request after Enter: the model wrote one suggestion."""
    await api.wait_ready()
    typing = LONG_CELL[: -len("total = ")] + "value_60 = comp"
    body = {"suffix": "", "editor_id": "nb.ipynb#cell-3", "path": "nb.ipynb"}
    ahead = asyncio.ensure_future(api.post("complete", {**body, "prefix": typing, "ahead": True}))
    await asyncio.sleep(0.3)  # the ahead request is being evaluated (a long prompt)
    paused = await api.stream("complete?stream=1", {**body, "prefix": typing})
    asked = json.loads((await ahead).body)
    line, newline, next_line = asked["text"].partition("\n")
    assert len(line.strip()) >= 3 and not asked.get("error"), asked
    final = paused[-1]
    assert final["timing"]["reused"] and final["text"] == line, final
    assert all(line.startswith(chunk["text"]) for chunk in paused)
    again = json.loads((await api.post("complete", {**body, "prefix": typing + line[:2]})).body)
    assert again["timing"]["reused"] and again["text"] == line[2:], again
    assert newline and next_line.strip(), asked  # (the test model writes one here)
    after_enter = {**body, "prefix": typing + line + "\n"}
    served = json.loads((await api.post("complete", after_enter)).body)
    assert served["timing"]["reused"] and served["text"] == next_line, served
    usage = copilot_app.usage.report()["total"]
    assert usage["cancelled"] == 0 and usage["prompt_tokens"] == asked["timing"]["prompt_tokens"]


async def test_closing_the_connection_stops_generation(api, copilot_app):
    await api.wait_ready()
    body = {"prefix": LONG_CELL, "mode": "line", "request_id": "gone"}
    await post_then_hang_up(api, "complete?stream=1", body, after=0.5)
    assert copilot_app.engine_instance.status().busy
    for _ in range(300):  # the child stops within one 64-token chunk of prompt evaluation
        if copilot_app.usage.report()["total"]["requests"] >= 1:
            break
        await asyncio.sleep(0.1)
    report = copilot_app.usage.report()["total"]
    assert report["cancelled"] == 1
    assert report["generated_tokens"] == 0  # stopped during prompt evaluation
    assert not copilot_app.engine_instance.status().busy


# -- bad input -----------------------------------------------------------------------

@pytest.mark.parametrize(
    "body, field",
    [
        ("{not json", "body"),
        ("[1, 2]", "body"),
        (json.dumps({"suffix": "x"}), "prefix"),
        (json.dumps({"prefix": 5}), "prefix"),
        (json.dumps({"prefix": "x", "mode": "paragraph"}), "mode"),
        (json.dumps({"prefix": "x", "context_cells": [{"cell_type": "code"}]}), "context_cells.0.source"),
        (json.dumps({"prefix": "x", "max_tokens": -3}), "max_tokens"),
    ],
)
async def test_bad_input_is_400_naming_the_field(api, body, field):
    reply = await api.post("complete", body, raw=True)
    assert reply.code == 400
    data = json.loads(reply.body)
    assert data["field"] == field
    assert data["status"] == 400
    assert data["error"]


async def test_oversized_input_is_413(api):
    reply = await api.post("complete", {"prefix": "x = 1\n" * 200_000})
    assert reply.code == 413
    assert "limit" in json.loads(reply.body)["error"]


async def test_field_too_long_is_413(api):
    reply = await api.post("complete", {"prefix": "x" * 100_001})
    assert reply.code == 413
    assert json.loads(reply.body)["field"] == "prefix"


async def test_unknown_route_is_json_404(api):
    reply = await api.get("nope")
    assert reply.code == 404
    assert "nope" in json.loads(reply.body)["error"]


@pytest.mark.parametrize("method, route", [("GET", "status"), ("POST", "complete"), ("POST", "warm"),
                                           ("POST", "explain"), ("POST", "explain/prepare"),
                                           ("GET", "usage")])
async def test_every_route_requires_authentication(api, method, route):
    body = json.dumps({"prefix": "x"}) if method == "POST" else None
    with pytest.raises(HTTPClientError) as err:
        await AsyncHTTPClient().fetch(api.url(route), method=method, body=body)
    assert err.value.code in (401, 403)


@pytest.mark.copilot(completion_mode="off")
async def test_policy_off_refuses_completion(api, copilot_config):
    await api.wait_ready()
    reply = await api.post("complete", {"prefix": "x = "})
    assert reply.code == 403
    status = json.loads((await api.get("status")).body)
    assert status["features"]["completion"]["mode"] == "off"


# -- crash and restart -------------------------------------------------------------------

async def test_sigkill_mid_stream_errors_then_engine_restarts(api, copilot_app, jp_serverapp):
    await api.wait_ready()
    pid = copilot_app.engine_instance.pid
    assert pid and pid != os.getpid(), "the model must run in a child process"
    stream = asyncio.ensure_future(api.stream("complete?stream=1", {"prefix": LONG_CELL, "mode": "line"}))
    await asyncio.sleep(0.5)
    assert copilot_app.engine_instance.status().busy
    os.kill(pid, signal.SIGKILL)
    # A refusal before any byte is sent is a proper HTTP error; once streaming, the
    # last chunk carries it. Either way the request ends, with a clear message.
    try:
        chunks = await stream
        assert chunks[-1]["done"] is True
        message = chunks[-1]["error"]
    except AssertionError as exc:
        message = str(exc)
        assert "HTTP 502" in message
    assert "engine stopped unexpectedly" in message
    # While it restarts: 503 with Retry-After.
    reply = await api.post("complete", {"prefix": "x = "})
    if reply.code == 503:
        assert reply.headers["Retry-After"]
    status = await api.wait_ready(timeout=60)
    assert status["features"]["restarts"] == 1
    assert copilot_app.engine_instance.pid not in (None, pid)
    reply = await api.post("complete", {"prefix": FUNCTION_PREFIX})
    assert reply.code == 200
    assert jp_serverapp.web_app  # the Jupyter server is still serving


async def test_503_with_retry_after_while_loading(api, copilot_app):
    await api.wait_ready()
    os.kill(copilot_app.engine_instance.pid, signal.SIGKILL)
    await asyncio.sleep(0.1)
    reply = await api.post("complete", {"prefix": "x = "})
    assert reply.code == 503
    assert int(reply.headers["Retry-After"]) > 0
    assert "loading" in json.loads(reply.body)["error"]


@pytest.mark.copilot(model="/nonexistent/dir/missing.gguf")
async def test_missing_model_reports_error_state(api, copilot_config, tmp_path):
    status = json.loads((await api.get("status")).body)
    assert status["state"] == "error"
    assert "missing.gguf" in status["detail"]
    reply = await api.post("complete", {"prefix": "x = "})
    assert reply.code == 503


# -- privacy -------------------------------------------------------------------------------

async def test_prompt_text_is_not_logged_by_default(api, caplog):
    caplog.set_level(logging.DEBUG)
    await api.wait_ready()
    secret = "student_secret_variable_4242"
    reply = await api.post("complete", {"prefix": f"{secret} = 1\nprint(", "mode": "line"})
    assert reply.code == 200
    assert secret not in caplog.text


@pytest.mark.copilot(log_prompts=True)
async def test_prompt_logging_is_an_admin_opt_in(api, copilot_config, caplog):
    caplog.set_level(logging.INFO)
    await api.wait_ready()
    await api.post("complete", {"prefix": "opted_in_marker = 1\n", "mode": "line"})
    assert "opted_in_marker" in caplog.text


async def test_my_usage_on_a_single_user_server_counts_my_requests(api):
    """GET /copilot/usage is the student's own usage: every request to their server,
    even when each request authenticates with a token alone (jupyter_server then makes
    up an anonymous user per request)."""
    await api.wait_ready()
    for prefix in ("def add(a, b):\n    return ", "total = 0\nfor x in xs:\n    total"):
        await api.post("complete", {"prefix": prefix, "mode": "line"})
    reply = await api.get("usage")
    assert reply.code == 200
    mine = json.loads(reply.body)
    assert mine["total"]["requests"] >= 2 and "completion" in mine["features"]
    assert "users" not in mine
