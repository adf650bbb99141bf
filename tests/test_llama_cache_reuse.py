"""KV cache reuse with a real model: moved cache entries give the completions a fresh
evaluation gives, and explanations do not evict the notebook's cache.

The backend runs in the test process here (no Jupyter server involved), so that the
same prompt can be evaluated with and without moved entries and compared; the last
test goes through the real child process.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from jupyter_copilot.engines.base import CancelToken, GenerationParams, GenerationStats
from jupyter_copilot.engines.llama_cpp import LlamaCppConfig, LlamaCppEngine

DATA = Path(__file__).parent / "data" / "kernel-notebooks"
HEADER = "<|repo_name|>nb\n<|file_sep|>nb.py\n<|fim_prefix|>"
GREEDY = {"max_tokens": 12, "temperature": 0.0, "top_p": 1.0, "top_k": 40,
          "repeat_penalty": 1.0, "stop": [], "seed": 0}


def _cells() -> list[str]:
    cells = []
    for path in sorted(DATA.glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] == "code" and source.strip():
                cells.append("# %%\n" + source.rstrip() + "\n")
    return cells


def _cases() -> list[tuple[str, str]]:
    """(earlier prompt, later prompt) pairs: the window of earlier cells slid by one or
    two cells, and the cursor moved to the next cell (as moving down a notebook)."""
    cells = _cells()
    assert len(cells) >= 12, "the kernel notebooks are the test data"
    cases = []
    for start in range(0, len(cells) - 7, 2):
        window = cells[start : start + 5]
        cursor = cells[start + 6].split("\n")
        current = "\n".join(cursor[:2])  # the marker and the cell's first line
        drop = 1 + start % 3 // 2  # one or two cells leave the window
        before = HEADER + "".join(window) + current
        after = HEADER + "".join(window[drop:]) + cells[start + 5] + current
        cases.append((before, after))
    return cases


@pytest.fixture(scope="module")
def backend(test_model_path):
    from jupyter_copilot.engines.worker_llama import LlamaBackend

    args = argparse.Namespace(model=test_model_path, n_ctx=2048, threads=2, n_batch=512,
                              verbose=False, cache_reuse=16)
    return LlamaBackend.load(args)


def _empty(backend) -> None:
    backend.llm._ctx.kv_cache_clear()
    backend.llm.n_tokens = 0


def _complete(backend, tokens: list[int]) -> tuple[str, dict]:
    reused, done = backend.prefill(tokens, lambda: False, 1, lambda _: None, 64)
    assert done
    text = "".join(piece for piece, _ in backend.generate(tokens, dict(GREEDY)))
    return text, {"reused": reused, **backend.last_prefill}


def _next_token_logits(backend, tokens: list[int]):
    """(tokens reused from the cache, the logits after `tokens`)."""
    import numpy as np

    reused, done = backend.prefill(tokens, lambda: False, 1, lambda _: None, 64)
    assert done
    backend.llm.eval(tokens[-1:])
    logits = np.ctypeslib.as_array(backend.llm._ctx.get_logits(), shape=(backend.llm.n_vocab(),))
    return reused, logits.copy()


@pytest.mark.model
def test_moved_cache_entries_give_the_logits_of_a_fresh_evaluation(backend):
    import numpy as np

    assert backend.cache_reuse_tokens == 16, "the test model (llama, RoPE) can shift"
    top1_same, checked = 0, 0
    for before, after in _cases()[:4]:
        after += "df"  # mid-line: the next token is a real choice, not a newline
        _empty(backend)
        _complete(backend, backend.tokenize(before))
        tokens = backend.tokenize(after)
        reused, shifted = _next_token_logits(backend, tokens)
        moved = backend.last_prefill["moved_tokens"]
        _empty(backend)  # the same prompt evaluated from scratch
        fresh_reused, fresh = _next_token_logits(backend, tokens)
        assert fresh_reused == 0
        assert moved >= 32 and reused > moved, "the window slid: its cells are moved"
        checked += 1
        # Moved entries attended to a different past (the dropped cells): close to a
        # fresh evaluation, not bit-identical. Measured on this data with the test
        # model: cosine >= 0.99994, total variation 0.04-0.08, same top 5, top 1
        # equal in 3 of 4 (the fourth a near tie).
        cosine = float(shifted @ fresh / np.linalg.norm(shifted) / np.linalg.norm(fresh))
        p, q = (np.exp(x - x.max()) for x in (shifted, fresh))
        total_variation = float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())
        assert cosine > 0.999
        assert total_variation < 0.15
        assert len(set(np.argsort(-shifted)[:5]) & set(np.argsort(-fresh)[:5])) >= 4
        top1_same += int(shifted.argmax() == fresh.argmax())
    assert checked == 4
    assert top1_same >= 3


@pytest.mark.model
def test_a_chat_does_not_evict_the_completion_cache(backend):
    backend.use_cache("complete")
    _empty(backend)
    before, _ = _cases()[0]
    tokens = backend.tokenize(before)
    _complete(backend, tokens)
    chat = backend.tokenize("Explain this code:\n" + before)
    assert backend.use_cache("chat") >= 0
    _, chat_info = _complete(backend, chat)
    assert chat_info["reused"] == 0
    backend.use_cache("complete")
    _, info = _complete(backend, tokens + backend.tokenize("x"))
    assert info["reused"] == len(tokens)
    # And the chat's own cache is kept for the next explanation.
    backend.use_cache("chat")
    _, again = _complete(backend, chat)
    assert again["reused"] == len(chat) - 1
    backend.use_cache("complete")


@pytest.mark.model
def test_a_conversation_after_the_notebook_and_the_completions_keep_each_other(backend):
    """The conversation lane starts from the completions' cache (a copy), a completion
    after it gets its own back, and the follow-up finds the whole conversation."""
    backend.use_cache("complete")
    _empty(backend)
    notebook, _ = _cases()[0]
    completion = backend.tokenize(notebook + "<|fim_suffix|><|fim_middle|>")
    _complete(backend, completion)
    document = backend.tokenize(notebook)
    explanation = document + backend.tokenize("\nExplain the last cell.\n")
    backend.use_cache("conversation", explanation)
    answer, info = _complete(backend, explanation)
    assert info["reused"] >= len(document) - 2  # the notebook, from the completions' cache
    backend.use_cache("complete", completion)  # the same completion asked again
    _, info = _complete(backend, completion)
    assert info["reused"] == len(completion) - 1  # its own cache back (not the chat's)
    follow_up = explanation + backend.tokenize(answer) + backend.tokenize("\nWhy?\n")
    backend.use_cache("conversation", follow_up)
    _, info = _complete(backend, follow_up)
    assert info["reused"] >= len(explanation) + 4  # the explanation and its answer
    # The cell edited since: the conversation starts from the completions' cache again.
    edited = backend.tokenize(notebook + "\nx = 1")
    backend.use_cache("complete", edited)
    _complete(backend, edited)
    other = edited + backend.tokenize("\nExplain the last cell.\n")
    backend.use_cache("conversation", other)
    _, info = _complete(backend, other)
    assert info["reused"] >= len(edited) - 2
    # After a chat of its own (a question without a cell), an explanation still starts
    # from the completions' parked cache, which holds more of it than its own.
    chat = backend.tokenize("A question with no cell.")
    backend.use_cache("chat", chat)
    _complete(backend, chat)
    backend.use_cache("conversation", other + backend.tokenize("More?"))
    _, info = _complete(backend, other + backend.tokenize("More?"))
    assert info["reused"] >= len(other) - 2
    backend.use_cache("complete")


@pytest.fixture
def engine(test_model_path, jp_asyncio_loop):
    eng = LlamaCppEngine(LlamaCppConfig(model_path=test_model_path, n_ctx=2048, threads=2,
                                        max_queue=2, cache_reuse_tokens=32))  # off by default

    async def up():
        await eng.start()
        for _ in range(1200):
            if eng.status().state == "ready":
                return
            assert eng.status().state != "error", eng.status().detail
            import asyncio

            await asyncio.sleep(0.1)
        raise AssertionError("engine did not become ready")

    jp_asyncio_loop.run_until_complete(up())
    yield eng
    jp_asyncio_loop.run_until_complete(eng.close())


async def _run(engine, prompt: str) -> GenerationStats:
    stats = GenerationStats()
    async for _ in engine.complete(prompt, GenerationParams(max_tokens=2), CancelToken(), stats):
        pass
    return stats


@pytest.mark.model
async def test_the_engine_keeps_the_notebook_cache_across_an_explanation(engine):
    before, after = _cases()[0]
    first = await _run(engine, before)
    chat = GenerationStats()
    messages = [{"role": "user", "content": "Explain this code:\n" + before}]
    async for _ in engine.chat(messages, GenerationParams(max_tokens=4), CancelToken(), chat):
        pass
    again = await _run(engine, before + "x")
    # Everything but the last few tokens (re-tokenized at the end) comes from the cache.
    assert again.cached_tokens >= first.prompt_tokens - 3
    # The window slid: the cells that stayed are moved, not evaluated again.
    slid = await _run(engine, after)
    common = len(HEADER)  # at least the header is shared; the moves add the cells
    assert slid.cached_tokens > common + 32
