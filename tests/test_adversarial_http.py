"""Attacks on the HTTP layer of both servers (issue #10, item 1), on real servers over
real sockets: the Jupyter server with the extension (pytest-jupyter) and the campus
service with a real JupyterHub and llama-server (tests/conftest_hub.py).

- a 100 MB declared body, with or without a token, is refused (413) before any of it
  is read, and the server's memory does not grow;
- an unauthenticated upload is refused (401/403) before its body is read;
- a chunked body is cut off at the limit;
- bodies dribbled a byte at a time, and connections that never finish their headers,
  are closed after the body / idle timeouts instead of staying open;
- a client that stops reading a streamed reply has its request cancelled after the
  stream write timeout: it holds neither the engine nor the connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from dataclasses import dataclass

import pytest
from adversarial_tools import rss_bytes

# Short timeouts so that the tests are quick; the defaults are 15 s and 30 s.
LIMITS = {"body_timeout": 1.0, "idle_connection_timeout": 2.0}


@dataclass
class Target:
    name: str
    port: int
    prefix: str  # path of the copilot routes, ending in /
    auth: dict  # headers of an authenticated caller
    anonymous_status: int  # what a caller without credentials gets
    pid: int  # the server's process (for its memory)

    def head(self, route: str, headers: dict, method: str = "POST") -> bytes:
        lines = [f"{method} {self.prefix}{route} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{k}: {v}" for k, v in {"Connection": "close", **headers}.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.fixture(scope="module")
def user_server(test_model_path):
    """A real `jupyter server` process with the extension (its own HTTP server: the
    idle timeout is set on the ServerApp's listener)."""
    from jupyter_copilot.bench.jupyter_server import jupyter_server

    settings = {"model": test_model_path, "threads": 1, "n_ctx": 2048, **LIMITS}
    with jupyter_server(settings) as server:
        yield server


@pytest.fixture(params=["user-server", "hub-service"])
def target(request) -> Target:
    if request.param == "user-server":
        server = request.getfixturevalue("user_server")
        port = int(server.url.rsplit(":", 1)[1].strip("/"))
        return Target("user-server", port, "/copilot/",
                      {"Authorization": f"token {server.token}"}, 403, server.pid)  # fmt: skip
    service = request.getfixturevalue("copilot_service")
    return Target("hub-service", service.hub.service_port, "/services/copilot/",
                  service.headers("alice"), 401, os.getpid())  # fmt: skip


async def exchange(port: int, data: bytes, wait: float = 10.0) -> tuple[bytes, float]:
    """Send `data` and read until the server closes (or `wait` passes): (reply, seconds)."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        try:
            await writer.drain()
        except ConnectionError:  # refused before the whole body was sent: read the reply
            pass
        reply = b""
        deadline = started + wait
        while time.monotonic() < deadline:
            try:
                piece = await asyncio.wait_for(reader.read(65536), deadline - time.monotonic())
            except (asyncio.TimeoutError, ConnectionError):
                break
            if not piece:
                break
            reply += piece
        return reply, time.monotonic() - started
    finally:
        writer.close()


def status_of(reply: bytes) -> int | None:
    if not reply.startswith(b"HTTP/1.1 "):
        return None
    return int(reply.split(b" ", 2)[1])


def json_body(reply: bytes) -> dict:
    return json.loads(reply.split(b"\r\n\r\n", 1)[1] or b"null")


pytestmark = [pytest.mark.model, pytest.mark.hub_service(**LIMITS)]


@pytest.mark.parametrize("authenticated", [True, False])
async def test_a_100_mb_body_is_refused_before_it_is_read(target, authenticated):
    headers = {"Content-Type": "application/json", "Content-Length": str(100_000_000)}
    if authenticated:
        headers.update(target.auth)
    before = rss_bytes(target.pid)
    # Only the headers are sent: the reply must come without waiting for the body.
    reply, seconds = await exchange(target.port, target.head("complete", headers), wait=10)
    assert status_of(reply) == 413, reply[:300]
    assert json_body(reply)["field"] == "body"
    assert seconds < 5
    # Four 95 MB uploads in the issue took the service from 95 to 561 MB.
    payloads = [target.head("complete", headers) + b"x" * (8 << 20) for _ in range(4)]
    await asyncio.gather(*(exchange(target.port, p, wait=10) for p in payloads))
    assert rss_bytes(target.pid) - before < 64 << 20


async def test_unauthenticated_uploads_are_refused_and_never_kept(target):
    """Their body is read (up to the limit, within the body timeout) and thrown away,
    so that the client still gets its 401/403 instead of a reset connection."""
    body = json.dumps({"prefix": "x" * 400_000, "suffix": ""}).encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    before = rss_bytes(target.pid)
    replies = await asyncio.gather(*(exchange(target.port, target.head("complete", headers) + body)
                                     for _ in range(20)))  # fmt: skip
    assert [status_of(reply) for reply, _ in replies] == [target.anonymous_status] * 20
    assert rss_bytes(target.pid) - before < 32 << 20


async def test_a_chunked_body_is_cut_off_at_the_limit(target):
    headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked", **target.auth}
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(32)) + b"0\r\n\r\n"
    before = rss_bytes(target.pid)
    reply, _ = await exchange(target.port, target.head("complete", headers) + body, wait=20)
    assert status_of(reply) in (None, 400, 413), reply[:300]  # refused, never processed
    assert rss_bytes(target.pid) - before < 64 << 20


async def test_a_body_just_over_the_limit_is_413(target):
    headers = {"Content-Type": "application/json", **target.auth}
    body = json.dumps({"prefix": "x" * 600_000, "suffix": "", "language": "python"}).encode()
    headers["Content-Length"] = str(len(body))
    reply, _ = await exchange(target.port, target.head("complete", headers) + body, wait=20)
    assert status_of(reply) == 413, reply[:300]  # over 512 KiB: refused from its header


async def test_a_body_a_little_over_the_limit_is_read_away_and_answered_413(target):
    """Not a reset connection: JupyterHub's proxy turned those into 503s (the fuzzer's
    bodies of 0.5-1.2 MB). Up to `max_discarded_bytes` the body is thrown away, then 413."""
    headers = {"Content-Type": "application/json", **target.auth}
    body = json.dumps({"prefix": "x" * 1_500_000, "suffix": ""}).encode()
    headers["Content-Length"] = str(len(body))
    before = rss_bytes(target.pid)
    replies = await asyncio.gather(
        *(exchange(target.port, target.head("complete", headers) + body, wait=20) for _ in range(4))
    )
    for reply, _ in replies:
        assert status_of(reply) == 413, reply[:300]
        assert json_body(reply)["field"] == "body"
    assert rss_bytes(target.pid) - before < 32 << 20  # thrown away, never kept


async def test_a_route_without_authentication_bounds_its_body_too(target):
    """The health probe's `prepare` does nothing: its body limit must still apply (a
    600 kB GET /health was closed by tornado's server-wide limit: the proxy said 503)."""
    if target.name != "hub-service":
        pytest.skip("the campus service's own unauthenticated route")
    body = b"x" * 600_000
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    reply, _ = await exchange(target.port, target.head("health", headers, method="GET") + body)
    assert status_of(reply) == 413, reply[:300]


async def test_slowly_dribbled_bodies_are_closed_after_the_body_timeout(target):
    """100 clients each send the headers of a small body, then a byte a second."""
    headers = {"Content-Type": "application/json", "Content-Length": "2000", **target.auth}

    async def dribble() -> float:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
        try:
            writer.write(target.head("complete", headers))
            for _ in range(30):
                writer.write(b" ")
                await writer.drain()
                try:
                    if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                        break  # closed by the server
                except asyncio.TimeoutError:
                    continue
            return time.monotonic() - started
        except ConnectionError:
            return time.monotonic() - started
        finally:
            writer.close()

    durations = await asyncio.gather(*(dribble() for _ in range(100)))
    assert max(durations) < 15, sorted(durations)[-5:]  # body_timeout 1 s (+ a loaded machine)


async def test_connections_that_never_finish_their_headers_are_closed(target):
    async def slowloris() -> float:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
        try:
            writer.write(f"POST {target.prefix}complete HTTP/1.1\r\nHost: x\r\n".encode())
            for _ in range(30):
                writer.write(b"X-Slow: 1\r\n")
                await writer.drain()
                try:
                    if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                        break
                except asyncio.TimeoutError:
                    continue
            return time.monotonic() - started
        except ConnectionError:
            return time.monotonic() - started
        finally:
            writer.close()

    durations = await asyncio.gather(*(slowloris() for _ in range(50)))
    assert max(durations) < 15, sorted(durations)[-5:]  # idle timeout 2 s


async def test_the_server_still_answers_after_the_attacks(target):
    headers = {"Content-Type": "application/json", "Content-Length": str(1 << 30)}
    await asyncio.gather(*(exchange(target.port, target.head("complete", headers), 5)
                           for _ in range(20)))  # fmt: skip
    reply, _ = await exchange(target.port, target.head("status", target.auth, method="GET"), 10)
    assert status_of(reply) == 200, reply[:300]


def json_lines(data: bytes) -> list[dict]:
    """The whole JSON objects among the lines of a (chunked, perhaps cut) NDJSON body."""
    objects = []
    for line in data.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue  # a chunk-size line, or the line the cut went through
        if isinstance(value, dict):
            objects.append(value)
    return objects


# Twelve small functions and a question the test model answers at length (600 tokens,
# some 780 KB of NDJSON: each chunk repeats the text so far).
LONG_ANSWER = {
    "kind": "question",
    "source": "\n".join(f"def step_{n}(frame):\n    return frame.groupby('k').agg('mean') * {n}"
                        for n in range(12)),
    "question": "Explain every function of this cell one by one, in detail.",
    "editor_id": "stuck",
}  # fmt: skip


@pytest.mark.copilot(stream_write_timeout=1.0, explain_max_tokens=600)
async def test_a_client_that_stops_reading_is_cut_off_and_frees_the_engine(api, copilot_app):
    """A streamed answer to a client that never reads: once the socket buffers are
    full, a line waits `stream_write_timeout` (1 s here), the request is cancelled and
    the connection closed. The engine stops early and the editor's slot is free; the
    client finds a stream without its final chunk."""
    await api.wait_ready()
    body = json.dumps(LONG_ANSWER).encode()
    head = (f"POST {api.base_url}copilot/explain HTTP/1.1\r\nHost: 127.0.0.1:{api.port}\r\n"
            f"Authorization: {api.auth_header['Authorization']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    # Small segments and a small receive window: on loopback the server's send buffer
    # is sized from the segment size (about 1.7 MB with 64 KB segments, under 40 KB
    # with these), so that the answer fills it long before its end.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    sock.setblocking(False)
    editors = copilot_app.backend.explainer.editors
    try:
        await loop.sock_connect(sock, ("127.0.0.1", api.port))
        await loop.sock_sendall(sock, head + body)
        for _ in range(1200):  # the request starts (a loaded machine: seconds)
            if editors.busy("", "stuck"):
                break
            await asyncio.sleep(0.05)
        assert editors.busy("", "stuck"), "the request never started"
        # Never reading. The prompt alone takes seconds (minutes on a loaded machine);
        # the buffers are full some hundred tokens into the answer.
        started = time.monotonic()
        while editors.busy("", "stuck") and time.monotonic() - started < 400:
            await asyncio.sleep(0.2)
        assert not editors.busy("", "stuck"), "the stuck request still holds its editor"
        ask = copilot_app.usage.report()["features"]["ask"]
        assert ask["requests"] == 1 and ask["cancelled"] == 1
        assert ask["generated_tokens"] < 600  # the engine stopped early
        # What the client had not read: the stream up to the cut, then the server's close.
        received = b""
        while piece := await asyncio.wait_for(loop.sock_recv(sock, 65536), 30):
            received += piece
    finally:
        sock.close()
    assert status_of(received) == 200, received[:300]
    chunks = json_lines(received.split(b"\r\n\r\n", 1)[1])
    assert chunks and not any(chunk.get("done") for chunk in chunks)
