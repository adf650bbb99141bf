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
           ("/usr/lib/python3/dist-packages/pandas/core/frame.py in __getitem__(self, key)\n"
            "   2902 \n-> 2903             indexer = self.columns.get_loc(key)\n"),
           "KeyError: 'prix'"]  # fmt: skip
    assert student_traceback(old) == ("<ipython-input-3-8e6f1a8b2c1d> in <module>\n----> 1 df['prix']\n"
                                      "pandas/core/frame.py in __getitem__(self, key)")


def test_a_traceback_that_is_not_ipythons_keeps_its_end():
    plain = [("Traceback (most recent call last):\n  File \"<stdin>\", line 1, in <module>\n"
              "ZeroDivisionError: division by zero")]
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


@pytest.mark.timeout(5)
def test_a_traceback_made_to_be_slow_is_not():
    """The browser sends the traceback: long paths, long blank entries, thousands of
    entries (the schema's bounds): each entry judged by its first characters, the
    answer bounded."""
    frames = ["Cell In[1], line 1\n----> 1 f()\n",
              *(["File /srv/site-packages/" + "a/" * 9_000 + "x.py:1, in f()\n" + "x" * 1_000] * 600),
              *([" " * 19_999 + "x"] * 200), *(["/" + "b.py" * 4_999] * 200)]  # fmt: skip
    shown = student_traceback(frames)
    assert shown.startswith("Cell In[1], line 1") and len(shown) <= TAIL_CHARS


def test_a_module_of_the_students_own_is_shown_whole_a_librarys_by_its_location():
    entries = ["Cell In[2], line 2\n      1 from helpers import moyenne\n----> 2 moyenne([])\n",
               ("File ~/td3/helpers.py:3, in moyenne(notes)\n      2 def moyenne(notes):\n"
                "----> 3     return sum(notes) / len(notes)\n"),
               "File <frozen importlib._bootstrap>:1176, in _find_and_load(name)\n",
               ("~/anaconda3/lib/python3.9/site-packages/numpy/core/fromnumeric.py in mean(a)\n"
                "   3430 \n-> 3432     return _methods._mean(a)\n"),
               "ZeroDivisionError: division by zero"]  # fmt: skip
    assert student_traceback(entries).splitlines() == [
        "Cell In[2], line 2", "      1 from helpers import moyenne", "----> 2 moyenne([])",
        "File ~/td3/helpers.py:3, in moyenne(notes)", "      2 def moyenne(notes):",
        "----> 3     return sum(notes) / len(notes)",
        "File <frozen importlib._bootstrap>:1176, in _find_and_load(name)",
        "numpy/core/fromnumeric.py in mean(a)"]  # fmt: skip


def test_an_exceptions_message_is_cut():
    req = ExplainRequest(kind="error", source="raise ValueError(data)",
                         error={"ename": "ValueError", "evalue": "x" * 50_000, "traceback": []})
    assert len(build_messages(req, "on", "en", 1024)[1]["content"]) < 3_000
