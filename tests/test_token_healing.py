"""Token healing: the fragment given back to the model, the engine's logits mask
(pure, over a toy vocabulary), and the mask on a real model (SmolLM2-135M) in the
child's backend and through the completion service's prompt."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from jupyter_copilot.context.healing import MAX_FRAGMENT_CHARS, healing_fragment, strip_fragment
from jupyter_copilot.context.prompt import build_completion_prompt
from jupyter_copilot.engines.token_healing import HealingMask, Vocabulary
from jupyter_copilot.prompts import FAMILIES
from jupyter_copilot.schema import CompleteRequest
from conftest import backend_generate


def test_fragment_is_the_name_at_the_cursor_with_its_leading_space():
    assert healing_fragment("plt.sca") == "sca"  # after "." the word starts bare
    assert healing_fragment("x = np") == " np"  # the space belongs to the token " np"
    assert healing_fragment("import nump") == " nump"
    assert healing_fragment("    total") == "total"  # indentation is not the word's space
    assert healing_fragment("a =  b") == "b"  # nor is one of two spaces
    assert healing_fragment("print(") == ""  # not in a name: nothing to heal
    assert healing_fragment("x = 1 ") == ""
    assert healing_fragment("") == ""
    assert healing_fragment("x" * (MAX_FRAGMENT_CHARS + 1)) == ""  # a long, complete name


def test_strip_fragment_keeps_what_follows_the_fragment():
    assert strip_fragment("scatter(x, y)", "sca") == "tter(x, y)"
    assert strip_fragment("sc", "sca") == ""  # not spelled yet: nothing to show
    assert strip_fragment("anything", "") == "anything"


PIECES = [b"", b"s", b"sc", b"sca", b"scatter", b"plot", b"tter", b"(", b" sca", b"c"]


def test_mask_allows_only_tokens_that_spell_the_fragment():
    vocab = Vocabulary(PIECES)
    mask = HealingMask(vocab, "sca")
    scores = np.arange(len(PIECES), dtype=np.float32)
    first = mask(np.array([7, 7]), scores.copy())  # the prompt: 2 tokens
    allowed = {PIECES[t] for t in np.flatnonzero(np.isfinite(first))}
    assert allowed == {b"s", b"sc", b"sca", b"scatter"}  # not "plot", " sca" nor control
    assert first[4] == scores[4]  # allowed tokens keep their score
    # After "s", "ca" is left: only "c" spells a start of it (no "ca" token here).
    after_s = mask(np.array([7, 7, 1]), scores.copy())
    assert {PIECES[t] for t in np.flatnonzero(np.isfinite(after_s))} == {b"c"}
    # Once spelled, the model is free.
    done = mask(np.array([7, 7, 4]), scores.copy())
    assert np.array_equal(done, scores)


def _notebook_request(prefix: str) -> CompleteRequest:
    return CompleteRequest(prefix=prefix, suffix="", language="python", path="nb.ipynb",
                           mode="line", context_cells=[])


def test_prompt_leaves_the_fragment_to_the_generation():
    fam = FAMILIES["qwen2.5-coder"]
    healed = build_completion_prompt(_notebook_request("import numpy as np\nx = np.ze"), fam,
                                     heal=True)
    plain = build_completion_prompt(_notebook_request("import numpy as np\nx = np.ze"), fam)
    assert healed.heal == "ze" and plain.heal == ""
    assert "x = np.<|fim_suffix|>" in healed.text
    assert "x = np.ze<|fim_suffix|>" in plain.text
    at_line_start = build_completion_prompt(_notebook_request("x = 1\n"), fam, heal=True)
    assert at_line_start.heal == ""


def _generate(small_backend, prompt: str, heal: str) -> str:
    return backend_generate(small_backend, prompt, heal=heal)


def test_real_model_output_starts_with_the_healed_fragment(small_backend):
    prompt = "import matplotlib.pyplot as plt\nxs = [1, 2, 3]\nplt."
    free = _generate(small_backend, prompt, heal="")
    # A fragment the free continuation does not start with: the mask must force it.
    fragment = "hist" if not free.startswith("hist") else "scatter"
    healed = _generate(small_backend, prompt, heal=fragment)
    assert healed.startswith(fragment), (free, healed)
    assert len(healed) > len(fragment)  # the model goes on after it
    # No fragment: the mask is not installed and the output is the free one.
    assert _generate(small_backend, prompt, heal="") == free


class RecordingEngine:
    """The real child engine, recording the prompt and the raw text it returned."""

    heals_tokens = True

    def __init__(self, engine):
        self.engine, self.prompts, self.raw, self.heals = engine, [], "", []

    def status(self):
        return self.engine.status()

    async def complete(self, prompt, params, cancel, stats=None):
        self.prompts.append(prompt)
        self.heals.append(params.heal)
        async for piece in self.engine.complete(prompt, params, cancel, stats):
            self.raw += piece
            yield piece


@pytest.mark.model
def test_service_shows_what_follows_the_healed_fragment(test_model_path, jp_asyncio_loop):
    from jupyter_copilot.engines.llama_cpp import LlamaCppConfig, LlamaCppEngine
    from jupyter_copilot.policy import Policy
    from jupyter_copilot.prompts import family
    from jupyter_copilot.schema import ModelCard
    from jupyter_copilot.service import CompletionService, CompletionSettings
    from jupyter_copilot.usage import UsageLedger

    async def run(heal: bool):
        engine = LlamaCppEngine(LlamaCppConfig(model_path=test_model_path, n_ctx=1024, threads=2))
        await engine.start()
        while engine.status().state != "ready":
            assert engine.status().state != "error", engine.status().detail
            await asyncio.sleep(0.1)
        recording = RecordingEngine(engine)
        settings = CompletionSettings(reuse_suggestions=False, token_healing=heal)
        card = ModelCard(id="m", name="m", family="qwen2.5-coder")
        service = CompletionService(recording, family("qwen2.5-coder"), card, settings,
                                    Policy(), UsageLedger())
        req = CompleteRequest(prefix="import matplotlib.pyplot as plt\nplt.sca", suffix="",
                              path="nb.ipynb", mode="line")
        try:
            chunks = [chunk async for chunk in service.complete(req, "student")]
        finally:
            await engine.close()
        return recording, chunks[-1].text

    healed, shown = jp_asyncio_loop.run_until_complete(run(heal=True))
    assert healed.heals == ["sca"] and "plt.<|fim_suffix|>" in healed.prompts[0]
    assert healed.raw.startswith("sca")
    # What the student sees continues after "sca": the fragment is not shown twice.
    assert shown and ("sca" + shown).strip() == healed.raw.split("\n")[0].strip()
    plain, _ = jp_asyncio_loop.run_until_complete(run(heal=False))
    assert plain.heals == [""] and "plt.sca<|fim_suffix|>" in plain.prompts[0]
