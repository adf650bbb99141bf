"""Token healing: give the model back the start of the word the cursor is in.

A cursor inside a name (``plt.sca|``) or right after one ends the prompt on a token
the tokenizer would not have produced for the whole line (``sca`` where the text has
``scatter``): the model then continues from a boundary it rarely saw in training and
often starts another word. Token healing moves that fragment out of the prompt
(``plt.``) and makes the engine's first tokens spell it (``scatter`` is allowed,
``plot`` is not), so the model picks the natural token for the whole word; the
fragment is taken off the front of what it wrote before the post-processing sees it.

The fragment is the identifier characters before the cursor and the one space before
them, if any (BPE vocabularies glue a leading space to the word: `` sca``).
"""

from __future__ import annotations

# Longer fragments are complete names the model needs no help with; the bound also
# keeps the constrained prefix of the generation short.
MAX_FRAGMENT_CHARS = 24


def _is_identifier_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def healing_fragment(prefix: str) -> str:
    """The end of `prefix` that token healing gives back to the model ('' for none)."""
    start = len(prefix)
    while start > 0 and _is_identifier_char(prefix[start - 1]):
        start -= 1
    if start == len(prefix) or len(prefix) - start > MAX_FRAGMENT_CHARS:
        return ""
    if start > 0 and prefix[start - 1] == " " and prefix[:start].strip():
        start -= 1  # " sca": the space belongs to the word's token (not an indentation)
        if start > 0 and prefix[start - 1] in " \n":
            start += 1  # two spaces or an indentation: the space is not the word's
    return prefix[start:]


def strip_fragment(raw: str, fragment: str) -> str:
    """What the model wrote after the healed fragment (`raw` starts with it, as the
    engine's constraint makes it; '' while the fragment is not complete yet)."""
    if raw.startswith(fragment):
        return raw[len(fragment) :]
    return ""
