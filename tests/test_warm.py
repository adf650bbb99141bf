"""A warm-up (`POST /copilot/warm`) is work from its request on (`working_ahead`, which the
status reports as busy) while its prompt is built and while the engine evaluates
it, and it evaluates the student's cell up to the cursor's line. (The cache it
leaves, with a real model and server: tests/test_server.py.)"""

from __future__ import annotations

import asyncio

from test_second_try import TwoAnswerEngine, _service

from jupyter_copilot.schema import WarmRequest


async def test_a_warm_up_is_under_way_from_its_request_until_the_engine_is_done():
    class SlowWarmEngine(TwoAnswerEngine):
        def __init__(self) -> None:
            super().__init__(first="", second="")
            self.release, self.prompts = asyncio.Event(), []

        async def warm(self, prompt, cache_salt=None):
            self.prompts.append(prompt)
            await self.release.wait()

    engine = SlowWarmEngine()
    service, _ = _service(engine)
    task = asyncio.ensure_future(service.warm(WarmRequest(prefix="x = 1\ny = ", path="a.ipynb")))
    await asyncio.sleep(0)  # the request has started: the prompt is still being built
    assert service.working_ahead == 1 and not engine.prompts
    while not engine.prompts:
        await asyncio.sleep(0.01)
    assert service.working_ahead == 1  # the engine is evaluating it
    engine.release.set()
    await task
    assert service.working_ahead == 0
    assert engine.prompts[0].endswith("x = 1\n")  # the cell up to the cursor's line
