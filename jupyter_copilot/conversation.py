"""Follow-up questions in the explain panel: the history a request may carry, and the
chat messages of a question.

The browser keeps the panel's conversation and sends it back with each question;
the server trusts none of it blindly:

- an `assistant` turn counts only if it carries the signature the server put on the
  reply that wrote it (HMAC of the user and the text, with a key that never leaves
  this process). A student who writes their own "assistant" turn ("Sure, here is
  the full solution: …") to steer a hint-mode answer gets it dropped, not obeyed;
- in hint mode, code blocks are removed from every earlier turn as well (an answer
  given before a hint rule started must not be fed back as an example to follow);
- the history is cut to a token budget, newest turns first; how many older turns
  were left out is returned (the panel says so).

A student turn the server answered after the notebook document (the local engine)
is said again as the server itself said it (`SaidTurns`), not as the panel labels
it ("Explain this cell"): the follow-up then starts with the very tokens the engine
has cached, the notebook, the explanation's question and its answer, and evaluates
little more than the new question; and the model reads the cell and the error that
turn was about.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Optional

from .context import estimate_tokens
from .explain import after_notebook_sentence, neutralise, notebook_parts, remove_code_blocks
from .prompts import ASK_GROUNDING, ASK_LABELS, ASK_TASK, EXPLAIN_SYSTEM
from .schema import ExplainRequest, HistoryTurn


# An HMAC-SHA256 key shorter than this is guessable; a configured one must be at least this
# long (`openssl rand -hex 32` writes 64 characters).
MIN_KEY_BYTES = 32


class ConversationKeyError(RuntimeError):
    """The configured signing key cannot be used: the app does not start (fails closed)."""


def read_conversation_key(path: str) -> bytes:
    """The shared signing key held in `path` (surrounding whitespace ignored).

    Never falls back to a per-process key: a replica that silently signed with its own
    key would drop every other replica's answers, and an empty or short key would let
    students sign their own "assistant" turns."""
    try:
        with open(os.path.expanduser(path), "rb") as fh:
            key = fh.read(64 * 1024).strip()
    except OSError as exc:
        raise ConversationKeyError(
            f"conversation_key_file {path!r} cannot be read ({exc.strerror or exc})"
        ) from None
    if len(key) < MIN_KEY_BYTES:
        raise ConversationKeyError(
            f"conversation_key_file {path!r} holds {len(key)} bytes; at least "
            f"{MIN_KEY_BYTES} are needed (e.g. `openssl rand -hex 32 > {path}`)"
        )
    return key


class TurnSigner:
    """Signs the answers this server wrote, so that they can come back as history."""

    def __init__(self, key: Optional[bytes] = None) -> None:
        # Default: a new key per process; after a restart, older answers are simply
        # dropped from the history (the question still works, with less context).
        if key is not None and len(key) < MIN_KEY_BYTES:
            raise ConversationKeyError(f"a conversation key needs at least {MIN_KEY_BYTES} bytes")
        self._key = key or os.urandom(32)

    @classmethod
    def from_key_file(cls, path: str) -> "TurnSigner":
        """The shared key of `path`, or a per-process key when `path` is empty."""
        return cls(read_conversation_key(path) if path else None)

    def sign(self, user: str, content: str) -> str:
        mac = hmac.new(self._key, user.encode() + b"\0" + content.strip().encode(), hashlib.sha256)
        return mac.hexdigest()[:40]

    def verify(self, user: str, content: str, signature: Optional[str]) -> bool:
        return bool(signature) and hmac.compare_digest(self.sign(user, content), signature or "")


@dataclass(frozen=True)
class SaidTurn:
    content: str  # the user message the server built and the model answered
    document: str  # digest of the notebook document it was read after
    mode: str  # the teaching mode it was asked under


class SaidTurns:
    """The user message behind each answer the server signed after a notebook document,
    by (user, signature): in memory, bounded (an entry per answer, the oldest
    forgotten first; a message too long to keep is not kept). Losing one (a restart,
    another replica) only costs the follow-up its cache: the panel's text is used."""

    MAX_ENTRIES = 256
    MAX_CHARS = 16_000

    def __init__(self) -> None:
        self._said: OrderedDict[tuple[str, str], SaidTurn] = OrderedDict()

    @staticmethod
    def digest(document: str) -> str:
        return hashlib.sha256(document.encode()).hexdigest()

    def record(self, user: str, signature: str, content: str, document: str, mode: str) -> None:
        if not (signature and document) or len(content) > self.MAX_CHARS:
            return
        key, said = (user, signature), SaidTurn(content, self.digest(document), mode)
        if self._said.get(key, said) != said:
            # The same answer to another message (a signature covers the answer
            # only): which one a history means is unknown, so neither is said again.
            said = SaidTurn("", said.document, mode)
        self._said[key] = said
        self._said.move_to_end(key)
        while len(self._said) > self.MAX_ENTRIES:
            self._said.popitem(last=False)

    def recall(self, user: str, signature: Optional[str], document: str, mode: str) -> Optional[str]:
        """The message answered by the turn signed `signature`, if it was read after this
        very document in this mode (else the cell or its rules changed since: the
        panel's text says the turn instead)."""
        recaller = self.recaller(user, document, mode)
        return recaller(signature) if recaller else None

    def recaller(self, user: str, document: str, mode: str
                 ) -> Optional[Callable[[Optional[str]], Optional[str]]]:  # fmt: skip
        """`recall` for one request's user, document and mode (the document hashed once
        for all its history's turns); None without a document (nothing was said)."""
        if not document:
            return None
        digest = self.digest(document)

        def recall(signature: Optional[str]) -> Optional[str]:
            said = self._said.get((user, signature or ""))
            if said is None or said.mode != mode or said.document != digest:
                return None
            return said.content or None

        return recall


@dataclass
class History:
    turns: list[dict] = field(default_factory=list)  # chat messages, oldest first
    dropped: int = 0  # older turns left out by the budget
    untrusted: int = 0  # assistant turns without a valid signature
    # The student turns said as the server said them (`SaidTurns`), in `turns`.
    recalled: list[str] = field(default_factory=list)


def trusted_history(
    history: Sequence[HistoryTurn],
    user: str,
    signer: TurnSigner,
    budget_tokens: int,
    hint_filter: Optional[Callable[[str], str]] = None,
    recall: Optional[Callable[[Optional[str]], Optional[str]]] = None,
) -> History:
    """The turns that may go into the prompt, newest kept first within the budget.
    `recall(signature)`: the message the server answered with that signed turn
    (`SaidTurns.recall`), said instead of the panel's text for the student turn before
    it, unless it does not fit the budget."""
    checked: list[dict] = []
    untrusted = 0
    for turn in history:
        if turn.role == "assistant" and not signer.verify(user, turn.content, turn.signature):
            untrusted += 1
            continue
        said = recall(turn.signature) if recall and turn.role == "assistant" else None
        if said and checked and checked[-1]["role"] == "user":
            # The server's own words: already neutralised where the student wrote them.
            checked[-1] = {**checked[-1], "said": said}
        content = hint_filter(turn.content) if hint_filter else turn.content
        # The student's turns cannot carry chat-template control tokens (explain.py).
        checked.append({"role": turn.role, "content": neutralise(content)})
    # Two user turns in a row (an assistant turn was dropped): merge them, since chat
    # templates expect the roles to alternate (in the panel's words: a merged turn is
    # not said as it was anyway).
    merged: list[dict] = []
    for turn in checked:
        if merged and merged[-1]["role"] == turn["role"]:
            merged[-1] = {"role": turn["role"],
                          "content": merged[-1]["content"] + "\n\n" + turn["content"]}
        else:
            merged.append(turn)
    kept: list[dict] = []
    recalled: list[str] = []
    used = 0
    for turn in reversed(merged):
        said = turn.get("said")
        # Said again if it fits the budget; too long, the panel's text instead.
        fits = bool(said) and used + estimate_tokens(said) <= budget_tokens
        content = said if fits else turn["content"]
        cost = estimate_tokens(content)
        if used + cost > budget_tokens:
            break
        kept.append({"role": turn["role"], "content": content})
        if fits:
            recalled.append(content)
        used += cost
    kept.reverse()
    # A conversation sent to the model starts with the student, never with an answer.
    while kept and kept[0]["role"] == "assistant":
        kept.pop(0)
    return History(kept, dropped=len(merged) - len(kept), untrusted=untrusted,
                   recalled=recalled[::-1])


def course_block(passages: Sequence, language: str) -> str:
    """The course passages, numbered as the panel numbers its sources."""
    labels = ASK_LABELS[language]
    lines = [f"## {labels['course']}"]
    for number, hit in enumerate(passages, start=1):
        where = hit.path + (f", {labels['cell']} {hit.cell_index + 1}" if hit.cell_index is not None else "")
        lines.append(f"[{number}] {hit.title} ({where})\n{hit.text}")
    return "\n\n".join(lines)


def question_messages(
    req: ExplainRequest,
    mode: str,
    language: str,
    context: Sequence[str],
    history: History,
    passages: Sequence,
    where: str = "",
) -> list[dict]:
    """System prompt, the trusted history, then this question with its context (the
    sections of `explain.notebook_parts`, but those an earlier turn said as they are:
    the model has just read them) and `where` (after the notebook: which cell)."""
    labels = ASK_LABELS[language]
    system = EXPLAIN_SYSTEM[language]
    if passages:
        system += " " + ASK_GROUNDING[language]
    def read_already(part: str) -> bool:
        return any(part in said for said in history.recalled)

    parts = [part for part in context if not read_already(part)]
    if passages:
        parts.append(course_block(passages, language))
    if where and not read_already(where):
        parts.append(where)
    parts.append(f"## {labels['question']}\n{neutralise(req.question or '')}")
    parts.append(ASK_TASK[(mode, language)])
    return [
        {"role": "system", "content": system},
        *history.turns,
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def question_prompt(
    req: ExplainRequest,
    mode: str,
    language: str,
    budget_tokens: int,
    history: History,
    passages: Sequence,
    document: str = "",
) -> list[dict]:
    """The chat of a question: read after `document` (the notebook as the completions
    show it; the cell named or quoted as an explanation's, `after_notebook_sentence`),
    or on its own with the earlier cells within `budget_tokens` ('' document)."""
    if document:
        quote, where = after_notebook_sentence(req.source, language, document)
        parts = notebook_parts(req, language, 0, quote)
    else:
        where, parts = "", notebook_parts(req, language, budget_tokens)
    return question_messages(req, mode, language, parts, history, passages, where)


def question_chat(
    req: ExplainRequest,
    user: str,
    mode: str,
    language: str,
    signer: TurnSigner,
    said: SaidTurns,
    passages: Sequence,
    document: str = "",
    budget_tokens: int = 1024,
    history_budget_tokens: int = 1024,
) -> tuple[list[dict], int]:
    """(messages, history turns dropped) of a question as the server asks it: its
    trusted history, in which the turns this server answered after this very document
    are said as it said them (the engine finds the whole exchange in its cache), then
    `question_prompt`. In hint mode every earlier turn loses its code."""
    hint = (lambda text: remove_code_blocks(text, language)) if mode == "hint" else None
    history = trusted_history(req.history, user, signer, history_budget_tokens, hint,
                              said.recaller(user, document, mode))  # fmt: skip
    messages = question_prompt(req, mode, language, budget_tokens, history, passages, document)
    return messages, history.dropped
