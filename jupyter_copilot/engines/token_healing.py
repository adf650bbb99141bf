"""The engine side of token healing (`context/healing.py`): a logits mask that makes
the first generated tokens spell a given text.

At each step, with `rest` the part of the text not generated yet, a token is allowed
if its bytes start with `rest` (it completes the text, and may go on: ``scatter``
for ``sca``) or are a start of `rest` (it spells part of it: ``sc``). Once the text
is spelled, nothing is masked. Pure over the vocabulary's byte pieces, so that it is
tested without a model.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np


class Vocabulary:
    """The byte piece of every token, indexed by first byte (a step looks only at the
    few thousand tokens that start with the right byte, not the whole vocabulary)."""

    def __init__(self, pieces: Sequence[bytes]):
        self.pieces = list(pieces)
        by_first: dict[int, list[int]] = defaultdict(list)
        controls: list[int] = []
        for token, piece in enumerate(self.pieces):
            if piece:  # control tokens have no text: never part of a healed word
                by_first[piece[0]].append(token)
            else:
                controls.append(token)
        # End of text, FIM markers...: what a generation refused to end at once
        # must not start with (`avoid_mask.py`).
        self.controls = np.array(controls, dtype=np.int64)
        self.by_first = {byte: np.array(ids, dtype=np.int64) for byte, ids in by_first.items()}

    def allowed(self, rest: bytes) -> np.ndarray:
        """The tokens allowed when `rest` is still to be spelled."""
        candidates = self.by_first.get(rest[0], np.array([], dtype=np.int64))
        pieces = self.pieces
        keep = [t for t in candidates.tolist() if pieces[t].startswith(rest) or rest.startswith(pieces[t])]
        return np.array(keep, dtype=np.int64)


class HealingMask:
    """A llama-cpp-python logits processor: ``(input_ids, scores) -> scores``.

    What follows the prompt in `input_ids` is what the model generated so far; the
    prompt's length is read at the first call (the first token sampled), so that a
    token the library adds in front of the prompt (a BOS) cannot shift it.
    """

    def __init__(self, vocabulary: Vocabulary, text: str):
        self.vocabulary = vocabulary
        self.text = text.encode("utf-8")
        self.prompt_tokens: int | None = None

    def rest(self, generated: Sequence[int]) -> bytes:
        """What is still to be spelled after `generated` (b'' once it is)."""
        spelled = b"".join(self.vocabulary.pieces[t] for t in generated)
        if len(spelled) >= len(self.text):
            return b""
        return self.text[len(spelled) :]

    def __call__(self, input_ids, scores):
        if self.prompt_tokens is None:
            self.prompt_tokens = len(input_ids)
        rest = self.rest(list(input_ids[self.prompt_tokens :]))
        if not rest:
            return scores
        allowed = self.vocabulary.allowed(rest)
        if not len(allowed):
            return scores  # nothing spells it (cannot happen with a byte-level vocabulary)
        masked = np.full_like(scores, -np.inf)
        masked[allowed] = scores[allowed]
        return masked
