"""The engine side of a completion's second try (`context/second_try.py`): a logits
mask that keeps the model from answering what it answered the first time.

Two things are refused, only at the start of the generation:

- ending at once: the first token can be neither a control token (end of text, FIM
  markers: no text of their own) nor a newline (which leaves the cursor's line blank
  and is how the next cell's marker, a stop string, starts), so the model must write
  something on the line;
- writing `avoid` again (the line after the cursor, which the first answer repeated):
  while the text generated so far is still part of that line's indentation, no token
  may take it on into the line's first word. The model keeps the indentation and
  writes another statement;
- starting with one of `starts` (the next cell's marker, ``# %%``: at the start of
  a line it is a stop, which the first answer may have been): no token may make the
  text begin with it.

Once the generation is past that point nothing is masked. Pure over the vocabulary's
byte pieces (`token_healing.Vocabulary`), so that it is tested without a model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .token_healing import Vocabulary

NEWLINES = (ord("\n"), ord("\r"))
NONE = np.array([], dtype=np.int64)


class AvoidMask:
    """A llama-cpp-python logits processor: ``(input_ids, scores) -> scores``.

    What follows the prompt in `input_ids` is what the model generated so far; the
    prompt's length is read at the first call, as in `token_healing.HealingMask`.
    """

    def __init__(self, vocabulary: Vocabulary, avoid: str, starts: Sequence[str] = ()):
        self.vocabulary = vocabulary
        self.avoid = avoid.encode("utf-8")
        self.indent = len(self.avoid) - len(self.avoid.lstrip())
        self.starts = tuple(start.encode("utf-8") for start in starts if start)
        self.prompt_tokens: int | None = None

    def _into(self, spelled: bytes, text: bytes) -> list[int]:
        """The tokens that would make `spelled` begin with `text` (none once past it)."""
        if len(spelled) >= len(text) or not text.startswith(spelled):
            return []
        rest = text[len(spelled) :]
        pieces = self.vocabulary.pieces
        candidates = self.vocabulary.by_first.get(rest[0], NONE).tolist()
        return [int(token) for token in candidates if pieces[token].startswith(rest)]

    def banned(self, generated: Sequence[int]) -> np.ndarray:
        """The tokens refused after `generated` (empty once past the start)."""
        spelled = b"".join(self.vocabulary.pieces[t] for t in generated)
        banned: list[int] = []
        if not spelled:
            banned.extend(self.vocabulary.controls.tolist())
            for newline in NEWLINES:
                banned.extend(self.vocabulary.by_first.get(newline, NONE).tolist())
        if self.avoid.strip() and len(spelled) <= self.indent and self.avoid.startswith(spelled):
            rest = self.avoid[len(spelled) :]
            pieces = self.vocabulary.pieces
            word_at = self.indent - len(spelled)  # where the first word starts in `rest`
            for token in self.vocabulary.by_first.get(rest[0], NONE).tolist():
                piece = pieces[token]
                if len(piece) > word_at and (rest.startswith(piece) or piece.startswith(rest)):
                    banned.append(int(token))
        for start in self.starts:
            banned.extend(self._into(spelled, start))
        return np.array(banned, dtype=np.int64)

    def __call__(self, input_ids, scores):
        if self.prompt_tokens is None:
            self.prompt_tokens = len(input_ids)
        banned = self.banned(list(input_ids[self.prompt_tokens :]))
        if not len(banned):
            return scores
        masked = scores.copy()
        masked[banned] = -np.inf
        return masked
