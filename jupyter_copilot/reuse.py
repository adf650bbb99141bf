"""Typed-through reuse: the student types what the ghost text shows; serve the rest.

When the last suggestion for an editor was ``np.zeros(3)`` and the student types
``n``, the model would most likely say ``p.zeros(3)`` again (greedy decoding, the
same context); asking it costs a prompt evaluation and a few tokens of decoding
(~0.5-1 s on two CPU cores), answering from memory costs nothing. So the service
remembers each editor's last complete suggestion and, while what was typed since
is a prefix of it (and nothing else changed: suffix, context, language, settings),
answers with the remaining text without calling the engine.

A suggestion asked *ahead* (issue 14, item 4: after a suggestion is accepted, the
frontend asks for the next line before the student starts it; while the student
types, it asks for the suggestion at the cursor) is remembered the same way;
`AheadSuggestions` lets the request that comes next follow it while it is still
being written, showing its text as it comes, instead of cancelling it and asking the
model again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from .byte_lru import ByteLRU
from .engines.base import CancelToken
from .postprocess.line_mode import first_line_end
from .schema import CompleteRequest

# About 8 MB of students' text at most, whatever they send (see byte_lru.py).
MAX_MEMORY_BYTES = 8 * 1024 * 1024


def request_key(req: CompleteRequest) -> int:
    """Everything the client sent but the prefix (what typing changes). The mode the
    server decides is not in it: typing the first character of a block suggestion
    makes the next request a line one, which the block's first line answers
    (`SuggestionMemory.continuation`). The mode the client asked for is."""
    cells = tuple((cell.cell_type, cell.source) for cell in req.context_cells)
    # A cell run since changes what the kernel holds: the old suggestion may be stale.
    names = tuple((entry.name, entry.summary) for entry in req.kernel_namespace)
    return hash((req.suffix, req.language, req.path, cells, req.mode, req.max_tokens, req.max_lines, names))


@dataclass(frozen=True)
class _Shown:
    key: int
    prefix: str
    text: str
    mode: str


class SuggestionMemory:
    """The last complete suggestion of each editor (an LRU bounded in bytes)."""

    def __init__(self, max_editors: int = 256, max_bytes: int = MAX_MEMORY_BYTES) -> None:
        self.max_editors = max_editors
        self._shown: ByteLRU[tuple[str, str], _Shown] = ByteLRU(max_bytes, max_editors)

    @property
    def bytes(self) -> int:
        return self._shown.bytes

    def remember(
        self, editor: tuple[str, str], key: int, prefix: str, text: str, mode: str = "line"
    ) -> None:
        if not text.strip():
            self._shown.pop(editor)
            return
        size = len(prefix) + len(text) + len(editor[0]) + len(editor[1])
        self._shown.put(editor, _Shown(key, prefix, text, mode), size)

    def continuation(
        self, editor: tuple[str, str], key: int, prefix: str, mode: str = "line"
    ) -> str | None:
        """The rest of the last suggestion after what was typed since, or None.

        A block suggestion answers a line request with the rest of the line being
        typed (what line mode would show); a line suggestion does not answer a block
        request (the student would get one line where a body was expected)."""
        shown = self._shown.get(editor)
        if shown is None or shown.key != key or (mode == "block" and shown.mode != "block"):
            return None
        rest = typed_through(shown.prefix, shown.text, prefix)
        if rest is None:
            return None
        rest = as_requested(rest, shown.mode, mode)
        return rest if rest.strip() else None


def typed_through(asked_at: str, text: str, prefix: str) -> str | None:
    """The rest of `text`, a suggestion asked at `asked_at`, once the student typed
    on to `prefix`; None if what they typed since is not where it starts."""
    if not prefix.startswith(asked_at):
        return None
    typed = prefix[len(asked_at) :]
    return text[len(typed) :] if text.startswith(typed) else None


def as_requested(rest: str, shown_mode: str, mode: str) -> str:
    """What of a suggestion's rest a request in `mode` shows: a line request gets what
    line mode would show of a block, up to the end of its first line with content
    (`postprocess.line_mode.first_line_end`: at the end of a finished line, the next
    line, below the cursor)."""
    if mode != "line" or shown_mode != "block":
        return rest
    line = _complete_first_line(rest)
    return rest if line is None else line


def _complete_first_line(text: str) -> str | None:
    """`text` up to the end of its first line with content, once that line is complete."""
    end = first_line_end(text)
    return None if end is None else text[:end]


@dataclass
class _Pending:
    """A suggestion asked ahead, while it is being written."""

    key: int
    prefix: str
    cancel: CancelToken
    mode: str = "line"  # the mode the server decided for it
    text: str = ""  # what it shows so far (the filters' text, growing)
    done: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def show(self, text: str) -> None:
        self.text = text
        self.changed.set()

    def agrees_with(self, typed: str) -> bool:
        """Whether what it shows so far may still start with `typed`."""
        n = min(len(self.text), len(typed))
        return self.text[:n] == typed[:n]


def _settled_line(pending: _Pending, prefix: str, mode: str) -> str | None:
    """For a line request at `prefix`: what line mode shows of `pending`'s rest after
    what was typed (`as_requested`), once that line is complete, `pending` having
    begun the line after it (one asked ahead at a line end writes the next line too:
    `context.mode.ahead_through_next_line`). None while that is not known, or for a
    block request."""
    if mode != "line":
        return None
    rest = typed_through(pending.prefix, pending.text, prefix)
    return None if rest is None else _complete_first_line(rest)


class AheadSuggestions:
    """Suggestions asked ahead, per editor, while they are in flight.

    A request of the same editor whose prefix extends the one asked ahead (the
    student pressed Enter and typed on, or typed on past where the suggestion was
    asked while typing) follows it rather than cancelling it: it is what the
    typed-through memory will answer with, and its text is shown as it comes. It
    stops following as soon as the text so far contradicts what was typed (and
    cancels it: nobody will see it), when its own request is cancelled, or when the
    suggestion writes nothing new for `max_wait_s`."""

    def __init__(self, max_wait_s: float = 10.0) -> None:
        self.max_wait_s = max_wait_s
        self._pending: dict[tuple[str, str], _Pending] = {}

    def start(self, editor: tuple[str, str], key: int, prefix: str, cancel: CancelToken,
              mode: str = "line") -> _Pending:  # fmt: skip
        pending = _Pending(key, prefix, cancel, mode)
        self._pending[editor] = pending
        return pending

    def finish(self, editor: tuple[str, str], pending: _Pending) -> None:
        pending.done = True
        pending.changed.set()
        if self._pending.get(editor) is pending:
            del self._pending[editor]

    def in_flight(self, editor: tuple[str, str]) -> bool:
        return editor in self._pending

    def settled(self, editor: tuple[str, str], key: int, prefix: str, mode: str) -> str | None:
        """A line request's answer that the editor's suggestion still being written
        already holds (`_settled_line`), or None."""
        pending = self._pending.get(editor)
        if pending is None or pending.key != key:
            return None
        return _settled_line(pending, prefix, mode)

    async def follow(self, editor: tuple[str, str], key: int, prefix: str, cancel: CancelToken,
                     mode: str = "line") -> AsyncIterator[str]:  # fmt: skip
        """While the editor's ahead suggestion may answer this request, its rest after
        what was typed, each time it grows (as a request in `mode` shows it). One that
        cannot answer it (the student moved on, typed something else, or asks for a
        block where a line was asked ahead) is cancelled: nobody will see it. So is
        one that wrote nothing new for `max_wait_s` (stuck). A line request stops
        following once its line is written (`settled` then answers it)."""
        pending = self._pending.get(editor)
        if pending is None:
            return
        typed = prefix[len(pending.prefix) :]
        if (pending.key != key or not prefix.startswith(pending.prefix)
                or (mode == "block" and pending.mode != "block")):  # fmt: skip
            pending.cancel.cancel("the student typed something else")
            return
        shown = ""
        while not pending.done and not cancel.cancelled:
            if not pending.agrees_with(typed):
                pending.cancel.cancel("the student typed something else")
                return
            rest = as_requested(pending.text[len(typed) :], pending.mode, mode)
            if rest.strip() and rest != shown:
                shown = rest
                yield rest
            if _settled_line(pending, prefix, mode) is not None:
                return  # its line is written: the answer (the rest goes on, for later)
            pending.changed.clear()
            changed = asyncio.ensure_future(pending.changed.wait())
            stopped = asyncio.ensure_future(cancel.wait())
            try:
                done, _ = await asyncio.wait((changed, stopped), timeout=self.max_wait_s,
                                             return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            finally:
                changed.cancel()
                stopped.cancel()
            if not done:  # nothing new for max_wait_s
                pending.cancel.cancel("no progress")
                return
