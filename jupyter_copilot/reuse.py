"""Typed-through reuse: the student types what the ghost text shows; serve the rest.

When the last suggestion for an editor was ``np.zeros(3)`` and the student types
``n``, the model would most likely say ``p.zeros(3)`` again (greedy decoding, the
same context); asking it costs a prompt evaluation and a few tokens of decoding
(~0.5-1 s on two CPU cores), answering from memory costs nothing. So the service
remembers each editor's last complete suggestion and, while what was typed since
is a prefix of it (and nothing else changed: suffix, context, language, mode),
answers with the remaining text without calling the engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from .byte_lru import ByteLRU
from .schema import CompleteRequest

# About 8 MB of students' text at most, whatever they send (see byte_lru.py).
MAX_MEMORY_BYTES = 8 * 1024 * 1024


def request_key(req: CompleteRequest, mode: str) -> int:
    """Everything about a request but the prefix (what typing changes)."""
    cells = tuple((cell.cell_type, cell.source) for cell in req.context_cells)
    # A cell run since changes what the kernel holds: the old suggestion may be stale.
    names = tuple((entry.name, entry.summary) for entry in req.kernel_namespace)
    return hash((req.suffix, req.language, req.path, cells, mode, req.max_tokens, req.max_lines, names))


@dataclass(frozen=True)
class _Shown:
    key: int
    prefix: str
    text: str


class SuggestionMemory:
    """The last complete suggestion of each editor (an LRU bounded in bytes)."""

    def __init__(self, max_editors: int = 256, max_bytes: int = MAX_MEMORY_BYTES) -> None:
        self.max_editors = max_editors
        self._shown: ByteLRU[tuple[str, str], _Shown] = ByteLRU(max_bytes, max_editors)

    @property
    def bytes(self) -> int:
        return self._shown.bytes

    def remember(self, editor: tuple[str, str], key: int, prefix: str, text: str) -> None:
        if not text.strip():
            self._shown.pop(editor)
            return
        size = len(prefix) + len(text) + len(editor[0]) + len(editor[1])
        self._shown.put(editor, _Shown(key, prefix, text), size)

    def continuation(self, editor: tuple[str, str], key: int, prefix: str) -> str | None:
        """The rest of the last suggestion after what was typed since, or None."""
        shown = self._shown.get(editor)
        if shown is None or shown.key != key or not prefix.startswith(shown.prefix):
            return None
        typed = prefix[len(shown.prefix) :]
        if not shown.text.startswith(typed):
            return None
        rest = shown.text[len(typed) :]
        return rest if rest.strip() else None
