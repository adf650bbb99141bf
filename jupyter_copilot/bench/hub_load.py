"""Load test of the campus deployment, all on loopback:

- llama.cpp's llama-server with parallel slots and a small model,
- a real JupyterHub (DummyAuthenticator, the local process spawner, the
  configurable-http-proxy from npm), with the copilot service as a hub-managed service
  started by the Hub from ``jupyter copilot hub-service``,
- N students (real users of the Hub, in a course group, each with their own token
  carrying ``access:services!service=copilot``) typing in a notebook cell.

A simulated student types words at ~4-5 characters per second and pauses between
them; after 250 ms of pause (the editor's debounce) a streamed completion request goes
through the proxy to the service, and the next keystroke cancels it if it has not
finished (the connection is closed, as JupyterLab's inline completer does). After a
429 it sends nothing until its Retry-After has passed, as the JupyterLab provider
(labextension/src/provider.ts). A student
does not run a real Jupyter server (200 of them cannot fit on a small machine): the
requests are those its server would relay, with the same token and body.

Reported per N: requests, completed, cancelled by typing, 429s, errors, latency of
completed requests (p50/p95, to the first chunk and to the end) and throughput.

    python -m jupyter_copilot.bench.hub_load --students 10 50 200 --duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx

from .llama_server import default_cache_root, free_port, start_llama_server

SERVICE = "copilot"
ACCESS_SCOPE = f"access:services!service={SERVICE}"
DEBOUNCE = 0.25  # the JupyterLab provider's debouncerDelay (labextension/src/provider.ts)

# What students type: short programs of an introductory course.
PROGRAMS = [
    (
        "def mean(values):\n    total = 0\n    for v in values:\n        total += v\n"
        "    return total / len(values)\n"
    ),
    "import math\n\ndef distance(p, q):\n    return math.sqrt((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2)\n",
    "words = text.split()\ncounts = {}\nfor word in words:\n    counts[word] = counts.get(word, 0) + 1\n",
    (
        "def is_prime(n):\n    if n < 2:\n        return False\n    for d in range(2, int(n ** 0.5) + 1):\n"
        "        if n % d == 0:\n            return False\n    return True\n"
    ),
]
CONTEXT = [
    {"cell_type": "markdown", "source": "# TP 3: lists and dictionaries"},
    {"cell_type": "code", "source": "import numpy as np\nimport pandas as pd\n"},
    {
        "cell_type": "code",
        "source": "data = pd.read_csv('grades.csv')\nvalues = data['grade'].tolist()\n",
    },
]

HUB_CONFIG = """
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {proxy_port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{folder}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{folder}/cookie_secret"
c.ConfigurableHTTPProxy.command = ["{chp}"]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.auth_token = "{proxy_token}"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.Spawner.server_token_scopes = [
    "users:activity!user", "access:servers!server", "{access_scope}",
]
c.JupyterHub.services = [
    {{
        "name": "{service}",
        "url": "http://127.0.0.1:{service_port}",
        "command": {service_command},
        "environment": {{"HOME": "{home}"}},
    }},
    {{"name": "loadtest-admin", "api_token": "{admin_token}"}},
]
c.JupyterHub.load_groups = {{"course": {{"users": []}}, "staff": {{"users": ["prof"]}}}}
c.JupyterHub.load_roles = [
    {{"name": "copilot-users", "scopes": ["{access_scope}"], "groups": ["course", "staff"]}},
    {{"name": "loadtest-admin", "scopes": ["admin:users", "admin:groups", "tokens"],
      "services": ["loadtest-admin"]}},
]
"""


def serve_instant_engine(port: int) -> None:
    """An OpenAI-compatible stand-in that streams 8 fixed tokens at once, for measuring
    the service path alone (proxy, HubAuth, policy, prompt, filters): not a model, and
    never used by the tests. `--engine instant`."""
    from tornado import ioloop, web

    class Models(web.RequestHandler):
        def get(self) -> None:
            self.finish({"object": "list", "data": [{"id": "instant", "owned_by": "bench"}]})

    class Completions(web.RequestHandler):
        async def post(self) -> None:
            self.set_header("Content-Type", "text/event-stream")
            for piece in ("a", " +", " b", "\n", "x", "y", "z", "w"):
                self.write(f"data: {json.dumps({'choices': [{'text': piece, 'index': 0}]})}\n\n")
            usage = {"prompt_tokens": 100, "completion_tokens": 8}
            self.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n")

    app = web.Application([(r"/v1/models", Models), (r"/v1/completions", Completions)])
    app.listen(port, "127.0.0.1")
    ioloop.IOLoop.current().start()


@contextlib.contextmanager
def instant_engine():
    port = free_port()
    code = f"from jupyter_copilot.bench.hub_load import serve_instant_engine; serve_instant_engine({port})"
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        _wait(lambda: _get(f"http://127.0.0.1:{port}/v1/models"), process, Path(os.devnull), 30)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait()


def ensure_chp(cache_dir: Path | None = None) -> Path:
    """configurable-http-proxy (JupyterHub's proxy), installed once with npm."""
    found = shutil.which("configurable-http-proxy")
    if found:
        return Path(found)
    folder = cache_dir or default_cache_root() / "chp"
    binary = folder / "node_modules" / ".bin" / "configurable-http-proxy"
    if not binary.exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(folder),
                "configurable-http-proxy",
            ],
            check=True,
        )
    return binary


# --- the deployment ---------------------------------------------------------------------------


@dataclass
class Deployment:
    proxy_url: str
    api_url: str
    admin_token: str
    folder: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def api(self, method: str, path: str, body=None):
        request = urllib.request.Request(
            self.api_url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Authorization": f"token {self.admin_token}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=60) as reply:
            return json.loads(reply.read() or b"null")

    def add_students(self, count: int) -> list[str]:
        names = [f"student{i:03d}" for i in range(count)]
        missing = [n for n in names if n not in self.tokens]
        if missing:
            self.api("POST", "/users", {"usernames": missing})
            self.api("POST", "/groups/course/users", {"users": missing})
            for name in missing:
                body = {"scopes": [ACCESS_SCOPE], "note": "load test", "expires_in": 86400}
                self.tokens[name] = self.api("POST", f"/users/{name}/tokens", body)["token"]
        return names

    @property
    def service_url(self) -> str:
        return f"{self.proxy_url}/services/{SERVICE}/"


@contextlib.contextmanager
def deployment(engine_url: str, parallel: int, model: str,
               settings: dict | None = None) -> Deployment:  # fmt: skip
    """JupyterHub with the copilot service; `settings`: more CopilotHubService traits."""
    folder = Path(tempfile.mkdtemp(prefix="copilot-load-"))
    proxy_port, hub_port, service_port = free_port(), free_port(), free_port()
    admin_token = secrets.token_hex(16)
    max_in_flight = (settings or {}).get("engine_max_in_flight", 4 * parallel)
    command = [
        sys.executable,
        "-m",
        "jupyter_copilot.cli",
        "hub-service",
        f"--CopilotHubService.engine_url={engine_url}",
        f"--CopilotHubService.model={model}",
        f"--CopilotHubService.engine_max_in_flight={max_in_flight}",
        f"--CopilotHubService.engine_slots={parallel}",  # admission: the engine's real slots
        f"--CopilotHubService.state_file={folder}/copilot-state.json",
        "--CopilotHubService.energy_watts=35",  # 2 CPU cores, not a GPU node
    ]
    if settings:
        lines = [f"c.CopilotHubService.{name} = {value!r}" for name, value in settings.items()]
        (folder / "copilot_config.py").write_text("\n".join(lines) + "\n")
        command.append(f"--CopilotHubService.config_file={folder}/copilot_config.py")
    (folder / "jupyterhub_config.py").write_text(
        HUB_CONFIG.format(
            proxy_port=proxy_port,
            hub_port=hub_port,
            folder=folder,
            chp=ensure_chp(),
            proxy_api_port=free_port(),
            proxy_token=secrets.token_hex(16),
            access_scope=ACCESS_SCOPE,
            service=SERVICE,
            service_port=service_port,
            service_command=json.dumps(command),
            home=os.path.expanduser("~"),
            admin_token=admin_token,
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    log = open(folder / "jupyterhub.log", "wb")  # noqa: SIM115 - closed below
    hub = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", "jupyterhub_config.py"],
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    dep = Deployment(
        f"http://127.0.0.1:{proxy_port}",
        f"http://127.0.0.1:{hub_port}/hub/api",
        admin_token,
        folder,
    )
    try:
        _wait(lambda: dep.api("GET", "/users/prof"), hub, folder / "jupyterhub.log")
        dep.tokens["prof"] = dep.api("POST", "/users/prof/tokens", {"scopes": [ACCESS_SCOPE]})[
            "token"
        ]
        _wait(lambda: _get(dep.service_url + "health"), hub, folder / "jupyterhub.log")
        yield dep
    finally:
        hub.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            hub.wait(20)
        if hub.poll() is None:
            hub.kill()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def _get(url: str, token: str | None = None) -> dict:
    headers = {"Authorization": f"token {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as reply:
        return json.loads(reply.read())


def _wait(probe, process: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyterhub exited: {log.read_text()[-3000:]}")
        try:
            probe()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"not up after {timeout:.0f} s: {log.read_text()[-3000:]}")


# --- students -----------------------------------------------------------------------------------


@dataclass
class Tally:
    outcomes: Counter = field(default_factory=Counter)
    latency: list[float] = field(default_factory=list)  # completed: request -> last chunk
    first: list[float] = field(default_factory=list)  # request -> first chunk with text
    served: Counter = field(default_factory=Counter)  # completed requests per student
    held_back: int = 0  # pauses with no request: a 429's Retry-After had not passed


async def student(
    name: str,
    token: str,
    url: str,
    client: httpx.AsyncClient,
    stop_at: float,
    rng: random.Random,
    tally: Tally,
    notebook: str | None = None,
) -> None:
    """One student typing; `notebook`: the assignment's file name, the same for the
    whole class (None: a notebook of the student's own name)."""
    headers = {"Authorization": f"token {token}"}
    cell = 0
    paused_until = 0.0  # as the JupyterLab provider: no request before a 429's Retry-After
    while time.monotonic() < stop_at:
        program = rng.choice(PROGRAMS)
        typed = ""
        cell += 1
        for word in _words(program):
            for char in word:
                typed += char
                await asyncio.sleep(rng.uniform(0.12, 0.3))  # ~4-5 characters per second
            pause = rng.expovariate(1 / 1.2)  # think between words, 1.2 s on average
            if pause < DEBOUNCE:
                await asyncio.sleep(pause)
                continue
            await asyncio.sleep(DEBOUNCE)
            if time.monotonic() < paused_until:
                tally.held_back += 1
                await asyncio.sleep(pause - DEBOUNCE)
                continue
            body = {
                "prefix": typed,
                "suffix": "",
                "language": "python",
                "path": notebook or f"{name}.ipynb",
                "cell_id": f"c{cell}",
                "editor_id": f"{name}-c{cell}",
                "context_cells": CONTEXT,
            }
            request = asyncio.ensure_future(_complete(client, url, headers, body, tally, name))
            done, _ = await asyncio.wait({request}, timeout=pause - DEBOUNCE)
            if not done:  # the student typed on: the editor drops the request
                request.cancel()
                tally.outcomes["cancelled_by_typing"] += 1
                with contextlib.suppress(asyncio.CancelledError):
                    await request
            elif request.result():
                paused_until = time.monotonic() + request.result()
            if time.monotonic() >= stop_at:
                return


def _words(program: str):
    word = ""
    for char in program:
        word += char
        if char in " \n(.,:":
            yield word
            word = ""
    if word:
        yield word


async def _complete(client, url, headers, body, tally: Tally, name: str = "") -> float | None:
    """One streamed request; returns the Retry-After of a 429 (else None)."""
    started = time.perf_counter()
    first = None
    try:
        async with client.stream(
            "POST", url + "complete?stream=1", json=body, headers=headers
        ) as reply:
            if reply.status_code != 200:
                await reply.aread()
                tally.outcomes[str(reply.status_code)] += 1
                if reply.status_code == 429:
                    with contextlib.suppress(TypeError, ValueError):
                        return float(reply.headers.get("Retry-After"))
                return None
            last = None
            async for line in reply.aiter_lines():
                if not line.strip():
                    continue
                last = json.loads(line)
                if first is None and last.get("text"):
                    first = time.perf_counter() - started
        stop = (last or {}).get("stop_reason")
        if last is None or stop == "error":
            tally.outcomes["error_in_stream"] += 1
        elif stop == "cancelled":
            tally.outcomes["cancelled_by_server"] += 1  # superseded on the server side
        else:
            tally.outcomes["ok"] += 1
            tally.served[name] += 1
            tally.latency.append(time.perf_counter() - started)
            if first is not None:
                tally.first.append(first)
    except httpx.HTTPError as exc:
        tally.outcomes[f"network:{type(exc).__name__}"] += 1
    return None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def run_level(
    dep: Deployment, count: int, duration: float, ramp: float, seed: int,
    notebook: str | None = None,
) -> dict:  # fmt: skip
    names = await asyncio.to_thread(dep.add_students, count)
    before = await asyncio.to_thread(_get, dep.service_url + "admin/usage", dep.tokens["prof"])
    tally = Tally()
    limits = httpx.Limits(max_connections=count * 3 + 10, max_keepalive_connections=count + 10)
    async with httpx.AsyncClient(timeout=httpx.Timeout(60, connect=10), limits=limits) as client:
        started = time.monotonic()
        stop_at = started + ramp + duration

        async def later(i: int, name: str) -> None:
            await asyncio.sleep(ramp * i / count)  # students arrive over the ramp
            await student(
                name,
                dep.tokens[name],
                dep.service_url,
                client,
                stop_at,
                random.Random(seed * 100_003 + i),
                tally,
                notebook,
            )

        await asyncio.gather(*(later(i, name) for i, name in enumerate(names)))
        elapsed = time.monotonic() - started
    load_after = os.getloadavg()[0]  # other work on the machine skews the figures: say so
    after = await asyncio.to_thread(_get, dep.service_url + "admin/usage", dep.tokens["prof"])
    generated = after["total"]["generated_tokens"] - before["total"]["generated_tokens"]
    requests = sum(tally.outcomes.values())
    return {
        "students": count,
        "seconds": round(elapsed, 1),
        "requests": requests,
        "outcomes": dict(tally.outcomes),
        "completed": tally.outcomes["ok"],
        "rate_limited_429": tally.outcomes["429"],
        "errors": sum(
            v
            for k, v in tally.outcomes.items()
            if k not in ("ok", "429", "cancelled_by_typing", "cancelled_by_server")
        ),
        "latency_p50_s": _round(_percentile(tally.latency, 50)),
        "latency_p95_s": _round(_percentile(tally.latency, 95)),
        "first_chunk_p50_s": _round(_percentile(tally.first, 50)),
        "first_chunk_p95_s": _round(_percentile(tally.first, 95)),
        "completed_per_s": round(tally.outcomes["ok"] / elapsed, 2),
        # Fairness: how many students got at least one completion, and how evenly.
        "students_served": len(tally.served),
        "pauses_held_back_by_retry_after": tally.held_back,
        "completed_per_served_student_max": max(tally.served.values(), default=0),
        "generated_tokens_per_s": round(generated / elapsed, 1),
        "load_average_1min_at_end": round(load_after, 2),
        "service_outcomes": _service_outcomes(before, after),
    }


def _service_outcomes(before: dict, after: dict) -> dict:
    """What the service counted (engine-side view of the same run)."""
    keys = ("requests", "cancelled", "errors", "prompt_tokens", "cached_tokens", "generated_tokens")
    return {k: after["total"][k] - before["total"][k] for k in keys}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def markdown_table(results: list[dict]) -> str:
    head = (
        "| students | requests | completed | cancelled by typing | 429 | errors | p50 s | p95 s "
        "| first chunk p50 / p95 s | completed/s | tokens/s |"
    )
    rows = [head, "|" + "---|" * 11]
    for r in results:
        cancelled = r["outcomes"].get("cancelled_by_typing", 0)
        rows.append(
            f"| {r['students']} | {r['requests']} | {r['completed']} | {cancelled} | "
            f"{r['rate_limited_429']} | {r['errors']} | {r['latency_p50_s']} | {r['latency_p95_s']} | "
            f"{r['first_chunk_p50_s']} / {r['first_chunk_p95_s']} | {r['completed_per_s']} | "
            f"{r['generated_tokens_per_s']} |"
        )
    return "\n".join(rows)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.set_defaults(command_prefix="python -m jupyter_copilot.bench.hub_load")
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    return run(args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--students", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds per level, after the ramp"
    )
    parser.add_argument(
        "--ramp", type=float, default=10.0, help="seconds over which students arrive"
    )
    parser.add_argument("--parallel", type=int, default=4,
                        help="requests on the engine at once (the service's engine_slots)")  # fmt: skip
    parser.add_argument(
        "--prompt-caches",
        type=int,
        default=16,
        help="seats (the llama-server this starts): it keeps this many prompt caches (its "
        "--parallel), one per student at a time, and the service routes each student to "
        "theirs (engine_prompt_caches); 0: no seats, llama-server --parallel = --parallel",
    )
    parser.add_argument("--threads", type=int, default=None, help="llama-server threads")
    parser.add_argument(
        "--engine-cpus",
        default=None,
        help="pin llama-server to these CPUs (e.g. 1 or 2-3) and everything else (hub, "
        "proxy, service, simulated students) to the others: on a small machine the "
        "simulated students' CPU would otherwise starve the engine they measure",
    )
    parser.add_argument("--model", default=None, help="GGUF file (default: the small test model)")
    parser.add_argument(
        "--engine",
        choices=["llama-server", "instant"],
        default="llama-server",
        help="instant: a stand-in answering at once, to measure the service path alone",
    )
    parser.add_argument(
        "--engine-url",
        default=None,
        help="an engine already running (e.g. vLLM on a GPU node: http://gpu:8000/v1) "
        "instead of starting llama-server; --model-id must name its prompt format",
    )
    parser.add_argument("--model-id", default="smollm2-135m", help="catalogue id (prompt format)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--same-notebook",
        action="store_true",
        help="every student works in the same assignment notebook (tp3.ipynb), as in a "
        "lab session; default: a notebook named after each student (no prompt shares "
        "even its first line with a classmate's: the engine's prefix cache helps least)",
    )
    parser.add_argument("--output", default=None, help="write the results as JSON here")


def add_load_parser(subparsers) -> None:
    """`jupyter copilot bench load`: the same as `python -m jupyter_copilot.bench.hub_load`."""
    load = subparsers.add_parser("load", help="campus load test: JupyterHub, service, llama-server")
    add_arguments(load)
    # Its argv (jupyter_copilot.cli.main) starts with "bench load".
    load.set_defaults(func=run, command_prefix="jupyter copilot")


def parse_cpus(text: str) -> frozenset[int]:
    """`1`, `2-3` or `0,2` → a set of CPUs, leaving at least one for the rest."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    if not cpus or not (os.sched_getaffinity(0) - cpus):
        raise SystemExit(f"--engine-cpus {text}: leave at least one CPU for the rest")
    return frozenset(cpus)


def run(args) -> int:
    if args.model is None:
        from ..sources import ensure_test_model

        args.model = str(ensure_test_model())
    results = []
    caches = getattr(args, "prompt_caches", 0)
    engine_parallel = max(args.parallel, caches)
    settings: dict = {}  # more service settings
    engine_cpus = parse_cpus(args.engine_cpus) if getattr(args, "engine_cpus", None) else None
    # What reproduces this run, recorded with its results.
    command = " ".join([args.command_prefix, *map(shlex.quote, args.argv)])
    with contextlib.ExitStack() as stack:
        if args.engine_url:
            engine_url, engine = args.engine_url, f"existing engine at {args.engine_url}"
        elif args.engine == "instant":
            engine_url, engine = stack.enter_context(instant_engine()), "instant stand-in"
        else:
            server = stack.enter_context(
                start_llama_server(
                    args.model,
                    parallel=engine_parallel,
                    ctx=1024 * engine_parallel * 2,
                    threads=args.threads,
                    cpus=engine_cpus,
                )
            )
            if engine_cpus:  # the hub and everything it starts inherit this
                os.sched_setaffinity(0, os.sched_getaffinity(0) - engine_cpus)
            engine_url = server.base_url
            engine = f"llama-server (llama-cpp-python 0.3.36 sources), --parallel {engine_parallel}"
            if caches:
                engine += f" (prompt caches as seats, {args.parallel} requests at once)"
            # 0 turns seats off (the service's default, -1, would find llama-server's
            # slots); the cap on requests in flight, waiting included, scales with them.
            settings = {"engine_prompt_caches": caches, "engine_max_in_flight": 4 * engine_parallel}
            if engine_cpus:
                engine += f", pinned to CPUs {sorted(engine_cpus)} (the rest on the others)"
        dep = stack.enter_context(deployment(engine_url, args.parallel, args.model_id, settings))
        for count in args.students:
            print(f"# {count} students for {args.duration:.0f} s …", file=sys.stderr, flush=True)
            notebook = "tp3.ipynb" if args.same_notebook else None
            result = asyncio.run(
                run_level(dep, count, args.duration, args.ramp, args.seed, notebook)
            )
            print(json.dumps(result), file=sys.stderr, flush=True)
            results.append(result)
    report = {
        "command": command,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "engine": engine,
        "model": args.model_id
        if args.engine_url
        else None
        if args.engine == "instant"
        else args.model,
        "results": results,
    }
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2))
    print(markdown_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
