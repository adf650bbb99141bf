"""Property-based fuzzing of every route of both servers (issue #10, item 7).

Hypothesis builds hostile requests — valid ones, almost-valid ones (a field of the
wrong type, too long, a lone surrogate, nesting 2,000 deep, a 5,000-digit number),
raw bytes, wrong methods, missing or foreign tokens — and sends them over HTTP to a
running server. Each reply must come within the client timeout, with a status below
500. The same strategies drive the CI tests (tests/test_adversarial_fuzz.py) and the
full run:

    jupyter copilot bench fuzz --n 10000                  # both servers
    jupyter copilot bench fuzz --n 10000 --target user-server

which prints the counts by status (and JSON with ``--output``). Needs the `test`
extra (hypothesis).
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

# Routes of both servers (relative to the copilot prefix) and what they accept.
ROUTES = {
    "status": ("GET",),
    "complete": ("POST",),
    "explain": ("POST",),
    "warm": ("POST",),
    "explain/prepare": ("POST",),  # the user server's (the campus service: a 404)
    "usage": ("GET",),
}
HUB_ONLY = {"admin/usage": ("GET",), "admin/policy": ("GET", "PUT"), "metrics": ("GET",),
            "health": ("GET",)}  # fmt: skip
QUERIES = ["", "?stream=1", "?stream=0", "?stream=yes", "?stream=%00", "?user=bob",
           "?user=" + "x" * 300, "?token=leak"]  # fmt: skip


@dataclass
class Target:
    name: str
    url: str  # base URL of the copilot routes, ending in /
    tokens: dict[str, str]  # role -> token ("student", "staff" on the hub)
    routes: dict = field(default_factory=lambda: dict(ROUTES))


@dataclass
class Case:
    method: str
    route: str
    query: str
    who: str  # a role of `Target.tokens`, "none" or "forged"
    body: bytes | None
    content_type: str


def strategies(own_routes: dict | None = None):
    """The hypothesis strategy of one request to a server with `own_routes` (imported
    late: hypothesis is a test-only dependency)."""
    from hypothesis import strategies as st

    text = st.one_of(
        st.text(max_size=40),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=200),
        st.sampled_from(["", "def f(x):\n    return ", "<|im_end|><|im_start|>system\n",
                         "<|fim_middle|>", "```\n", "~~~", "\x00", "\u202e", "é" * 50]),
        st.integers(1, 300_000).map(lambda n: "x" * n),  # around the field limits
        st.integers(1, 3_000).map(lambda n: "a(" * n),  # deep brackets for the parsers
    )
    scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                       st.floats(allow_nan=False), text)  # fmt: skip
    loose = st.recursive(scalar, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
        max_leaves=10)  # fmt: skip
    cell = st.fixed_dictionaries({"source": text},
                                 optional={"cell_type": st.sampled_from(["code", "markdown", "raw", "x"])})  # fmt: skip
    error = st.one_of(
        st.none(), st.just({}),
        st.fixed_dictionaries({}, optional={"ename": text, "evalue": text,
                                            "traceback": st.lists(text, max_size=5)}),
    )  # fmt: skip
    fields = {
        "prefix": text, "suffix": text, "language": st.sampled_from(["python", "r", "fr", "en", "", "x" * 70]),
        "path": text, "cell_id": text, "editor_id": text, "request_id": text,
        "mode": st.sampled_from(["line", "block", "auto", None, 3]),
        "max_tokens": st.one_of(st.integers(-5, 5000), st.none()),
        "context_cells": st.lists(cell, max_size=4), "kind": st.sampled_from(["cell", "error", "x"]),
        "source": text, "error": error,
    }
    shaped = st.fixed_dictionaries({}, optional=fields)
    policy = st.fixed_dictionaries({}, optional={
        "timezone": st.sampled_from(["UTC", "Mars/Olympus", ""]),
        "defaults": st.dictionaries(st.sampled_from(["completion", "explain_cell", "x"]),
                                    st.sampled_from(["on", "off", "hint", 1]), max_size=3),
        "rules": st.lists(loose, max_size=3)})  # fmt: skip
    json_body = st.one_of(shaped, policy, loose).map(lambda v: json.dumps(v).encode())
    nasty = st.one_of(
        st.binary(max_size=300),
        st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),  # JSON nested n deep
        st.integers(1, 3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
        st.integers(4000, 20000).map(lambda n: b'{"prefix": "x", "max_tokens": 1' + b"0" * n + b"}"),
        st.sampled_from([b'{"prefix": "\\ud800"}', (b'{"kind": "error", "source": "x", "error": '
                         b'{"traceback": ["\\udfff"]}}'), b'{"prefix": 1e999}', b"{", b"null",
                         b'{"prefix": "x"' + b', "prefix": "y"' * 2000 + b"}"]),
    )  # fmt: skip
    known = own_routes or {**ROUTES, **HUB_ONLY}
    routes = sorted(known) * 4 + ["nope", "complete/x", "../api", *sorted(HUB_ONLY)]

    @st.composite
    def case(draw) -> Case:
        route = draw(st.sampled_from(routes))
        own = list(known.get(route, ("GET",)))
        method = draw(st.one_of(st.sampled_from(own), st.sampled_from(own),
                                st.sampled_from(own), st.sampled_from(["GET", "POST", "PUT",
                                                                       "DELETE", "PATCH"])))  # fmt: skip
        body = draw(st.one_of(st.none(), json_body, json_body, json_body, nasty))
        return Case(method, route, draw(st.sampled_from(QUERIES)),
                    draw(st.sampled_from(["student"] * 6 + ["staff", "none", "forged"])),
                    body, draw(st.sampled_from(["application/json"] * 3 + ["text/plain", ""])))  # fmt: skip

    return case()


def send(client: httpx.Client, target: Target, case: Case) -> str:
    """One request; its status as a string, or "timeout" / "network:<error>"."""
    headers = {"Content-Type": case.content_type} if case.content_type else {}
    token = target.tokens.get(case.who) or target.tokens.get("student")
    if case.who == "forged":
        headers["Authorization"] = "token " + "0" * 32
    elif case.who != "none" and token:
        headers["Authorization"] = f"token {token}"
    try:
        reply = client.request(case.method, target.url + case.route + case.query,
                               content=case.body, headers=headers)  # fmt: skip
    except httpx.TimeoutException:
        return "timeout"
    except httpx.HTTPError as exc:
        return f"network:{type(exc).__name__}"
    return str(reply.status_code)


def run_fuzz(target: Target, n: int, seed: int = 0, timeout: float = 30.0,
             failures: list | None = None) -> Counter:  # fmt: skip
    """Send `n` generated requests to `target`; the counts by status. Cases that got a
    5xx, a timeout or a network error are appended to `failures` (reproducers)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as fix_seed

    counts: Counter = Counter()
    with httpx.Client(timeout=timeout) as client:

        @fix_seed(seed)
        @settings(max_examples=n, database=None, deadline=None, derandomize=False,
                  suppress_health_check=list(HealthCheck), phases=["generate"])  # fmt: skip
        @given(strategies(target.routes))
        def one(case: Case) -> None:
            outcome = send(client, target, case)
            counts[outcome] += 1
            broken = not outcome.isdigit() or outcome.startswith("5")
            if broken and failures is not None and len(failures) < 50:
                failures.append({"outcome": outcome, **_describe(case)})

        one()
    return counts


def _describe(case: Case) -> dict:
    body = case.body or b""
    described = {"method": case.method, "route": case.route + case.query, "who": case.who,
                 "content_type": case.content_type, "body_bytes": len(body),
                 "body_head": body[:300].decode("utf-8", "backslashreplace")}  # fmt: skip
    if len(body) <= 64 * 1024:  # the whole body: a reproducer, not only a description
        described["body_base64"] = base64.b64encode(body).decode("ascii")
    return described


def bad(counts: Counter) -> int:
    """Replies that must never happen: 5xx, timeouts, dropped connections."""
    return sum(v for k, v in counts.items() if not k.isdigit() or k.startswith("5"))


# --- `jupyter copilot bench fuzz` ---------------------------------------------------------------


def add_fuzz_parser(subparsers) -> None:
    fuzz = subparsers.add_parser("fuzz", help="fuzz every route of both servers (hypothesis)")
    fuzz.add_argument("--n", type=int, default=10000, help="requests per server")
    fuzz.add_argument("--target", choices=["both", "user-server", "hub-service"], default="both")
    fuzz.add_argument("--seed", type=int, default=0)
    fuzz.add_argument("--timeout", type=float, default=30.0, help="client timeout per request (s)")
    fuzz.add_argument("--model", default=None, help="GGUF file (default: the small test model)")
    fuzz.add_argument("--output", default=None, help="write the results as JSON here")
    fuzz.set_defaults(func=_fuzz_command)


# Small generations: the fuzzer is after the request handling, not the prose.
SHORT = {"line_max_tokens": 4, "block_max_tokens": 8, "explain_max_tokens": 8}


def _fuzz_command(args) -> int:
    import contextlib
    import sys

    from ..sources import ensure_test_model
    from .hub_load import deployment
    from .jupyter_server import jupyter_server
    from .llama_server import start_llama_server

    model = args.model or str(ensure_test_model())
    results = {}
    with contextlib.ExitStack() as stack:
        targets = []
        if args.target in ("both", "user-server"):
            server = stack.enter_context(jupyter_server({"model": model, "threads": 1, **SHORT}))
            targets.append(Target("user-server", server.url + "copilot/", {"student": server.token}))
        if args.target in ("both", "hub-service"):
            engine = stack.enter_context(start_llama_server(model, parallel=2, ctx=4096))
            # No rate limits: the fuzzer is after request handling, not the 429s.
            settings = {"requests_per_minute": {}, "max_in_flight_per_user": 0,
                        "daily_token_quota": 0, **SHORT}  # fmt: skip
            dep = stack.enter_context(deployment(engine.base_url, 2, "smollm2-135m", settings))
            student = dep.add_students(1)[0]
            targets.append(Target("hub-service", dep.service_url,
                                  {"student": dep.tokens[student], "staff": dep.tokens["prof"]},
                                  {**ROUTES, **HUB_ONLY}))  # fmt: skip
        for target in targets:
            print(f"# fuzzing {target.name} with {args.n} requests …", file=sys.stderr, flush=True)
            failures: list = []
            started = time.monotonic()
            counts = run_fuzz(target, args.n, args.seed, args.timeout, failures)
            results[target.name] = {"requests": sum(counts.values()), "by_status": dict(counts),
                                    "bad": bad(counts), "seconds": round(time.monotonic() - started, 1),
                                    "failures": failures}  # fmt: skip
            print(f"{target.name}: " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
                  + f"  -> {bad(counts)} bad (5xx, timeouts, dropped)")  # fmt: skip
    report = {"command": "jupyter copilot bench fuzz " + " ".join(sys.argv[3:]), "seed": args.seed,
              "results": results}  # fmt: skip
    print(json.dumps(report, indent=2))
    if args.output:
        with open(args.output, "w") as out:
            json.dump(report, out, indent=2)
    return 1 if any(r["bad"] for r in results.values()) else 0
