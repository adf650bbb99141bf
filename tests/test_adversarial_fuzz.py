"""Property-based fuzzing of every route of both servers, on real processes (issue
#10, item 7): a real `jupyter server` with the extension and the real model, and the
campus service with a real JupyterHub and llama-server. Every reply comes within
the client timeout, with a status below 500, and the server's memory stays bounded.

The strategies are those of `jupyter copilot bench fuzz --n 10000` (the full run,
jupyter_copilot/bench/fuzz.py); CI runs a few hundred cases per server.
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from adversarial_tools import rss_bytes

pytest.importorskip("hypothesis")

from jupyter_copilot.bench.fuzz import HUB_ONLY, ROUTES, SHORT, Target, bad, run_fuzz

pytestmark = pytest.mark.model

CASES = int(os.environ.get("COPILOT_FUZZ_CASES", "500"))  # per server
REPORT = os.environ.get("COPILOT_FUZZ_REPORT")  # a folder for the failing cases, as JSON


def report(name: str, counts, failures: list) -> None:
    if REPORT:
        os.makedirs(REPORT, exist_ok=True)
        with open(os.path.join(REPORT, f"{name}.json"), "w") as out:
            json.dump({"by_status": dict(counts), "failures": failures}, out, indent=1)


UNLIMITED = {"requests_per_minute": {}, "max_in_flight_per_user": 0, "daily_token_quota": 0}


@pytest.fixture(scope="module")
def fuzzed_user_server(test_model_path):
    from jupyter_copilot.bench.jupyter_server import jupyter_server

    with jupyter_server({"model": test_model_path, "threads": 1, "n_ctx": 2048, **SHORT}) as srv:
        yield srv


def test_fuzzing_the_user_server_gives_no_5xx_and_no_hang(fuzzed_user_server):
    target = Target("user-server", fuzzed_user_server.url + "copilot/",
                    {"student": fuzzed_user_server.token})  # fmt: skip
    failures: list = []
    run_fuzz(target, 20, seed=1)  # the engine's first requests, before measuring memory
    before = rss_bytes(fuzzed_user_server.pid)
    counts = run_fuzz(target, CASES, seed=0, timeout=30, failures=failures)
    report("user-server", counts, failures)
    assert bad(counts) == 0, (dict(counts), failures[:5])
    assert sum(counts.values()) == CASES
    assert rss_bytes(fuzzed_user_server.pid) - before < 200 << 20, dict(counts)


@pytest.mark.hub_service(**UNLIMITED, **SHORT)
async def test_fuzzing_the_hub_service_gives_no_5xx_and_no_hang(copilot_service):
    hub = copilot_service.hub
    target = Target("hub-service", copilot_service.url,
                    {"student": hub.tokens["alice"], "staff": hub.tokens["prof"]},
                    {**ROUTES, **HUB_ONLY})  # fmt: skip
    failures: list = []
    # The service runs on this test's event loop: the blocking client runs in a thread.
    await asyncio.to_thread(run_fuzz, target, 20, 1)
    before = rss_bytes()
    counts = await asyncio.to_thread(run_fuzz, target, CASES, 0, 30, failures)
    report("hub-service", counts, failures)
    assert bad(counts) == 0, (dict(counts), failures[:5])
    assert rss_bytes() - before < 200 << 20, dict(counts)
