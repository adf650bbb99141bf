"""What of a kernel's traceback an error explanation shows the model (issue 14, item 5).

IPython sends a traceback as a list of entries: a rule, the exception's header, one
entry per frame, the exception's line and, for a chained exception, the chain's
sentence and the same again. A pandas `KeyError` is ~2 400 characters (~700 tokens,
tests/data/ipython_tracebacks.json): pandas' internals, and the cause chained under
the exception, which the model reads before its first words. What an explanation for
a beginner needs is the student's own frames (`Cell In[3], line 2` and its lines) and
where the library gave up. So:

- the last exception of a chain only (the student's frame is in it);
- the frames of the student's cells and modules whole;
- a library's frames as their one-line location, the last `LIBRARY_FRAMES` of them,
  a path inside `site-packages` from the package on;
- not the header nor the exception's line: the prompt states `ename: evalue` itself.

A traceback that is not IPython's (another kernel's, a plain Python one) keeps its
end, as before: the failing line and the exception are there.
"""

from __future__ import annotations

import re

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# The sentences IPython puts between the exceptions of a chain.
CHAIN = re.compile(r"^\s*(The above exception was the direct cause of the following exception"
                   r"|During handling of the above exception, another exception occurred)")  # fmt: skip
# A frame of the student's cells: IPython 8.5+ ("Cell In[3], line 2"), 8.0-8.4
# ("Input In [3], in <cell line: 2>()"), 7 and older ("<ipython-input-3-…> in <module>").
CELL_FRAME = re.compile(r"^(Cell In ?\[\d*\]|Input In ?\[\d*\]|<ipython-input-)")
# A frame of a file: "File /path/x.py:12, in f(x)" (8+) or "~/path/x.py in f(x)" (7).
FILE_FRAME = re.compile(r"^(File \S|\S+\.py[xi]? in )")
# ... of a library (installed packages, the standard library, compiled or frozen
# modules), rather than a module of the student's own, which is shown whole.
LIBRARY_PATH = re.compile(r"[/\\](?:site|dist)-packages[/\\]|[/\\]lib[/\\]python\d|[/\\]Lib[/\\]"
                          r"|\.p(?:yx|xi)\b|^File <")  # fmt: skip
SITE_PACKAGES = re.compile(r"\S*[/\\](?:site|dist)-packages[/\\]")
LIBRARY_FRAMES = 2
# An entry is judged by its first characters; a location is cut before the path
# patterns run; a frame shown whole is cut too: the text comes from the browser.
HEAD_CHARS = 400
LOCATION_CHARS = 300
FRAME_CHARS = 8000
# Where no frame is recognised: the end of the text (the failing line, the exception).
TAIL_CHARS = 4000


def strip_ansi(text: str) -> str:
    """Tracebacks from IPython are coloured with ANSI codes; the model needs plain text."""
    return ANSI_ESCAPE.sub("", text)


def student_traceback(entries: list[str]) -> str:
    """The part of a traceback (its entries, as the kernel sent them) an explanation
    shows: the student's frames and where the library raised (module docstring)."""
    heads = [strip_ansi(entry[:HEAD_CHARS]) for entry in entries]
    last_chain = max((i for i, head in enumerate(heads) if CHAIN.match(head)), default=-1)
    frames = [i for i in range(last_chain + 1, len(entries))
              if CELL_FRAME.match(heads[i]) or FILE_FRAME.match(heads[i])]  # fmt: skip
    if not any(CELL_FRAME.match(heads[i]) for i in frames):
        return strip_ansi("\n".join(entries)[-2 * TAIL_CHARS :])[-TAIL_CHARS:]
    library = [i for i in frames if not CELL_FRAME.match(heads[i]) and LIBRARY_PATH.search(_location(heads[i]))]
    dropped = set(library[:-LIBRARY_FRAMES])
    kept = [SITE_PACKAGES.sub("", _location(heads[i])) if i in library
            else strip_ansi(entries[i][:FRAME_CHARS]).strip("\n")
            for i in frames if i not in dropped]  # fmt: skip
    # Bounded still: a deep recursion in the student's own function repeats its frame.
    return "\n".join(kept)[-TAIL_CHARS:]


def _location(head: str) -> str:
    """A frame's first line, cut (the path patterns backtrack on a long line)."""
    return head.split("\n", 1)[0][:LOCATION_CHARS]
