"""What of a kernel's traceback an error explanation shows the model (issue 14, item 5).

IPython sends a traceback as a list of entries: a rule, the exception's header, one
entry per frame, the exception's line and, for a chained exception, the chain's
sentence and the same again. A pandas `KeyError` is ~2 400 characters (~700 tokens,
tests/data/ipython_tracebacks.json): pandas' internals, and the cause chained under
the exception, which the model reads before its first words. What an explanation for
a beginner needs is the student's own frames (`Cell In[3], line 2` and its lines) and
where the library gave up. So:

- the last exception of a chain only (the student's frame is in it);
- the frames of the student's cells whole;
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
# A frame of the student's code: IPython 8.5+ ("Cell In[3], line 2"), 8.0-8.4
# ("Input In [3], in <cell line: 2>()"), 7 and older ("<ipython-input-3-…> in <module>").
STUDENT_FRAME = re.compile(r"^(Cell In ?\[\d*\]|Input In ?\[\d*\]|<ipython-input-)")
# A library's frame: "File /path/x.py:12, in f(x)" (8+) or "/path/x.py in f(x)" (7).
LIBRARY_FRAME = re.compile(r"^(File \S|/\S+\.py[xi]? in )")
SITE_PACKAGES = re.compile(r"\S*[/\\](?:site|dist)-packages[/\\]")
LIBRARY_FRAMES = 2
LOCATION_CHARS = 300
# Where no frame is recognised: the end of the text (the failing line, the exception).
TAIL_CHARS = 4000


def strip_ansi(text: str) -> str:
    """Tracebacks from IPython are coloured with ANSI codes; the model needs plain text."""
    return ANSI_ESCAPE.sub("", text)


def student_traceback(entries: list[str]) -> str:
    """The part of a traceback (its entries, as the kernel sent them) an explanation
    shows: the student's frames and where the library raised (module docstring)."""
    plain = [strip_ansi(entry) for entry in entries]
    last_chain = max((i for i, entry in enumerate(plain) if CHAIN.match(entry)), default=-1)
    frames = [entry.strip("\n") for entry in plain[last_chain + 1 :]
              if STUDENT_FRAME.match(entry) or LIBRARY_FRAME.match(entry)]  # fmt: skip
    if not any(STUDENT_FRAME.match(frame) for frame in frames):
        return "\n".join(plain)[-TAIL_CHARS:]
    library = [i for i, frame in enumerate(frames) if not STUDENT_FRAME.match(frame)]
    dropped = set(library[:-LIBRARY_FRAMES])
    kept = [frame if i not in library else _location(frame)
            for i, frame in enumerate(frames) if i not in dropped]  # fmt: skip
    # Bounded still: a deep recursion in the student's own function repeats its frame.
    return "\n".join(kept)[-TAIL_CHARS:]


def _location(frame: str) -> str:
    """A library frame's first line, its path from the package on. Cut first: the
    text comes from the browser, and the path pattern backtracks on a long line."""
    return SITE_PACKAGES.sub("", frame.split("\n", 1)[0][:LOCATION_CHARS])
