"""Reproducers of the failures the fuzzer found (tests/test_adversarial_fuzz.py), one
test each, on a real `jupyter server` process with the extension and the real model.
Their fixes belong to the parse bounds and the bounded prompt building (issue #10,
item 1); these tests keep them fixed. Each request must get a 4xx (or a 2xx) quickly,
never a 5xx or a hang."""

from __future__ import annotations

import time

import httpx
import pytest

from jupyter_copilot.bench.fuzz import SHORT

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def server(test_model_path):
    from jupyter_copilot.bench.jupyter_server import jupyter_server

    with jupyter_server({"model": test_model_path, "threads": 1, "n_ctx": 2048, **SHORT}) as srv:
        # The model loads in the background: the requests below are about what the
        # server does with them, not about a 503 while it loads.
        headers = {"Authorization": f"token {srv.token}"}
        for _ in range(240):
            if httpx.get(srv.url + "copilot/status", headers=headers).json()["state"] == "ready":
                break
            time.sleep(0.5)
        yield srv


def post(server, route: str, body: bytes, timeout: float = 20.0) -> httpx.Response:
    return httpx.post(server.url + "copilot/" + route, content=body, timeout=timeout,
                      headers={"Authorization": f"token {server.token}",
                               "Content-Type": "application/json"})  # fmt: skip


@pytest.mark.parametrize("route", ["complete", "warm", "explain", "explain/prepare"])
def test_an_integer_of_5000_digits_is_a_400(server, route):
    reply = post(server, route, b'{"prefix": "x", "max_tokens": 1' + b"0" * 5000 + b"}")
    assert reply.status_code == 400, reply.text


@pytest.mark.parametrize("route", ["complete", "explain", "explain/prepare"])
def test_json_nested_2000_deep_is_a_400(server, route):
    reply = post(server, route, b'{"prefix": ' + b"[" * 2000 + b"]" * 2000 + b"}")
    assert reply.status_code == 400, reply.text


def test_a_lone_surrogate_in_a_traceback_line_is_a_400(server):
    body = (b'{"kind": "error", "source": "1/0", "error": {"ename": "E", "evalue": "x", '
            b'"traceback": ["\\udfff"]}}')  # fmt: skip
    reply = post(server, "explain?stream=0", body)
    assert reply.status_code == 400, reply.text


@pytest.mark.parametrize("repeat", [1500, 2900])
def test_a_prefix_of_nested_brackets_is_answered_quickly(server, repeat):
    """`a(` repeated thousands of times: the prompt building or the post-processing
    took over 30 s per request (the fuzzer's timeouts)."""
    body = ('{"prefix": "' + "a(" * repeat + '", "suffix": "", "language": "python"}').encode()
    # No tight timing here (timings are the benchmarks' job): the prompt is bounded by
    # the context window, and its evaluation (~20 s for 2,000 tokens on one thread of
    # a loaded 2-core CI box) ends with an answer, never a hang or a 5xx.
    reply = post(server, "complete", body, timeout=240)
    assert reply.status_code < 500, reply.text
    if reply.status_code == 200:
        assert reply.json()["timing"]["prompt_tokens"] <= 2048  # the server's n_ctx


def test_a_warm_up_cell_over_the_source_limit_is_a_413_naming_the_field(server):
    from jupyter_copilot.schema import MAX_SOURCE_CHARS

    for field in ("prefix", "suffix"):
        body = f'{{"{field}": "{"x" * (MAX_SOURCE_CHARS + 1)}"}}'.encode()
        reply = post(server, "warm", body)
        assert reply.status_code == 413, reply.text
        assert reply.json()["field"] == field and reply.json()["code"] == "too_large"


def test_a_warm_up_of_a_pathological_cell_is_bounded_and_the_server_answers(server):
    """The warm-up's cell goes through the completion's bounds and prompt building:
    thousands of nested brackets are accepted (202) and the next request answers."""
    cell = "a(" * 2900
    body = ('{"prefix": "' + cell + '", "suffix": "' + ")" * 2900 + '"}').encode()
    assert post(server, "warm", body).status_code == 202
    reply = post(server, "complete", b'{"prefix": "x = ", "mode": "line"}', timeout=240)
    assert reply.status_code == 200, reply.text
