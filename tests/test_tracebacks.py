"""An error explanation shows the student's frames, not a library's internals
(tracebacks.py), on tracebacks a real kernel sent (tests/data/ipython_tracebacks.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupyter_copilot.explain import build_messages
from jupyter_copilot.schema import ExplainRequest
from jupyter_copilot.tracebacks import TAIL_CHARS, strip_ansi, student_traceback

CAPTURED = json.loads((Path(__file__).parent / "data" / "ipython_tracebacks.json").read_text())
ERRORS = {error["ename"]: error for error in CAPTURED["errors"]}


def test_a_pandas_key_error_keeps_the_students_line_and_where_pandas_raised():
    error = ERRORS["KeyError"]
    whole = strip_ansi("\n".join(error["traceback"]))
    shown = student_traceback(error["traceback"])
    assert shown == (
        "Cell In[1], line 3\n"
        "      1 import pandas as pd\n"
        "      2 df = pd.DataFrame({'a': [1, 2]})\n"
        "----> 3 df['nope']\n"
        "File pandas/core/frame.py:4330, in DataFrame.__getitem__(self, key)\n"
        "File pandas/core/indexes/base.py:3823, in Index.get_loc(self, key)"
    )
    # The chained cause (pandas' hash table) and the code around pandas' lines are gone.
    assert "hashtable" in whole and "hashtable" not in shown
    assert len(shown) < len(whole) / 5


@pytest.mark.parametrize("ename, frames", [
    ("ZeroDivisionError", ["Cell In[2], line 3", "Cell In[2], line 2, in f(x)"]),
    ("ValueError", ["Cell In[3], line 2"]),
    ("IndexError", ["Cell In[4], line 1"]),
])  # fmt: skip
def test_the_students_own_frames_are_kept_whole(ename, frames):
    shown = student_traceback(ERRORS[ename]["traceback"])
    assert [line for line in shown.splitlines() if line.startswith("Cell")] == frames
    assert "---->" in shown and "Traceback" not in shown and "\x1b" not in shown


def test_older_ipython_frames_count_as_the_students():
    old = ["---------------------------------------------------------------------------",
           "KeyError                                  Traceback (most recent call last)",
           "<ipython-input-3-8e6f1a8b2c1d> in <module>\n----> 1 df['prix']\n",
           "/usr/lib/python3/dist-packages/pandas/core/frame.py in __getitem__(self, key)\n"
           "   2902 \n-> 2903             indexer = self.columns.get_loc(key)\n",
           "KeyError: 'prix'"]  # fmt: skip
    assert student_traceback(old) == ("<ipython-input-3-8e6f1a8b2c1d> in <module>\n----> 1 df['prix']\n"
                                      "pandas/core/frame.py in __getitem__(self, key)")


def test_a_traceback_that_is_not_ipythons_keeps_its_end():
    plain = ["Traceback (most recent call last):\n  File \"<stdin>\", line 1, in <module>\n"
             "ZeroDivisionError: division by zero"]
    assert student_traceback(plain) == plain[0]
    huge = ["x" * 10_000 + "\nKeyError: 'k'"]
    assert student_traceback(huge).endswith("KeyError: 'k'") and len(student_traceback(huge)) == TAIL_CHARS


def test_a_deep_recursion_stays_bounded():
    frame = "Cell In[5], line 2, in f(n)\n      1 def f(n):\n----> 2     return f(n + 1)\n"
    shown = student_traceback(["RecursionError   Traceback", *[frame] * 400, "RecursionError: depth"])
    assert len(shown) <= TAIL_CHARS and shown.endswith("return f(n + 1)")


def test_the_error_prompt_shows_the_short_traceback():
    error = ERRORS["KeyError"]
    req = ExplainRequest(kind="error", source=error["code"], error={k: error[k] for k in ("ename", "evalue", "traceback")})
    content = build_messages(req, "on", "en", 1024)[1]["content"]
    assert "KeyError: 'nope'\nCell In[1], line 3" in content and "hashtable" not in content


@pytest.mark.timeout(20)
def test_a_traceback_made_to_be_slow_is_not():
    """The browser sends the traceback: lines of one long path, thousands of frames
    (the schema's bounds), read in linear time, the answer bounded."""
    frames = ["Cell In[1], line 1\n----> 1 f()\n",
              *(["File " + "/a" * 9_000 + ":1, in f()\n" + "x" * 1_000] * 900)]
    shown = student_traceback(frames)
    assert shown.startswith("Cell In[1], line 1") and len(shown) < 1_000
