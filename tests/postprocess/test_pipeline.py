"""The whole pipeline as the server drives it: streamed, then final."""

import itertools

import pytest

from jupyter_copilot.postprocess import PIPELINE, FilterContext, Step, run_pipeline
from jupyter_copilot.prompts import FAMILIES

STOP = FAMILIES["qwen2.5-coder"].stop + ("\n# %%",)


def ctx(prefix, suffix="", mode="block", **kw):
    return FilterContext(prefix=prefix, suffix=suffix, mode=mode, stop_tokens=STOP, **kw)


def stream(raw, context, chunk=1):
    """Feed `raw` as the server does; returns (texts shown while streaming, final step)."""
    shown = []
    for end in range(chunk, len(raw) + chunk, chunk):
        step = run_pipeline(raw[:end], context, final=False)
        shown.append(step.text)
        if step.stop:
            break
    return shown, run_pipeline(raw[:end], context, final=True)


EXAMPLES = [
    # (prefix, suffix, mode, raw model output, expected final text)
    (
        "import numpy as np\n\ndef mean(xs):\n    ",
        "\n\nprint(mean([1, 2, 3]))",
        "block",
        "return sum(xs) / len(xs)\n\nprint(mean([1, 2, 3]))<|endoftext|>",
        "return sum(xs) / len(xs)",
    ),
    (
        "df = pd.read_csv('iris.csv')\ndf.groupby(",
        ")",
        "line",
        "'species').mean())\nplt.show()",
        "'species'",
    ),
    (
        "print(",
        ")",
        "line",
        'f"accuracy: {acc:.2%}")<|endoftext|>',
        'f"accuracy: {acc:.2%}"',
    ),
    (
        "def fib(n):",
        "",
        "block",
        "\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\n\nfib(10)",
        "\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)",
    ),
    (
        "import matplotlib.pyplot as plt\n",
        "",
        "block",
        "fig, ax = plt.subplots()\nax.plot(x, y)\nplt.show()\n\n# %%\nprint('next cell')",
        "fig, ax = plt.subplots()\nax.plot(x, y)\nplt.show()",
    ),
    (
        "import numpy as np",
        "",
        "line",
        "\nimport pandas as pd\nimport seaborn as sns",
        "\nimport pandas as pd",
    ),
    (
        "x = ",
        "",
        "line",
        "   \n  ",
        "",
    ),
    (
        'def area(r):\n    """',
        "",
        "line",
        'Area of a disc of radius r (in m²)."""\n    return 3.14159 * r ** 2',
        'Area of a disc of radius r (in m²)."""',
    ),
    (
        "class Point:\n    def __init__(self, x, y):\n        ",
        "\n\n    def norm(self):\n        return (self.x ** 2 + self.y ** 2) ** 0.5",
        "block",
        "self.x = x\n        self.y = y\n\n    def norm(self):\n        return 0",
        "self.x = x\n        self.y = y",
    ),
    (
        "data = {\n    ",
        "",
        "block",
        "'name': ['Ada', 'Alan'],\n    'born': [1815, 1912],\n}\ndf = pd.DataFrame(data)\n",
        "'name': ['Ada', 'Alan'],\n    'born': [1815, 1912],\n}",
    ),
    (
        # A line the model ends on an opener starts a multi-line literal: kept whole.
        "def to_numbers(words):\n    ",
        "\n        'one': 1,\n        'two': 2,\n    }\n    return [value_map[w] for w in words]",
        "line",
        "value_map = {\n        'one': 1,",
        "value_map = {",
    ),
    (
        # The same opener cut by the token limit, not by the model: dropped.
        "x = ",
        "",
        "line",
        "np.array(",
        "np.array",
    ),
]


@pytest.mark.parametrize("prefix, suffix, mode, raw, expected", EXAMPLES)
@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_streamed_then_final(prefix, suffix, mode, raw, expected, chunk):
    _, final = stream(raw, ctx(prefix, suffix, mode), chunk)
    assert final.text == expected


@pytest.mark.parametrize("prefix, suffix, mode, raw, expected", EXAMPLES)
def test_the_shown_text_only_grows_while_streaming(prefix, suffix, mode, raw, expected):
    shown, _ = stream(raw, ctx(prefix, suffix, mode))
    for earlier, later in itertools.pairwise(shown):
        assert later.startswith(earlier), (earlier, later)


@pytest.mark.parametrize("prefix, suffix, mode, raw, expected", EXAMPLES)
def test_asks_to_stop_early_and_more_tokens_change_nothing(prefix, suffix, mode, raw, expected):
    context = ctx(prefix, suffix, mode)
    shown, final = stream(raw, context)
    if len(shown) < len(raw):  # stopped before the end of the raw output
        longer = run_pipeline(raw + "\nmore = 1\n", context, final=True)
        assert longer.text == final.text


def test_the_pipeline_is_the_documented_order():
    names = [step_filter.__name__ for step_filter in PIPELINE]
    assert names[0] == "cut_at_stop_tokens"
    assert names[-2:] == ["strip_trailing_whitespace", "drop_blank"]
    assert names.index("balance_brackets") < names.index("drop_suffix_overlap")


def test_a_stop_makes_later_filters_treat_the_text_as_final():
    # Text follows the cursor: the line is cut before the newline, and the trailing
    # "(" is then trimmed at once, not held until the end of generation.
    step = run_pipeline("np.zeros(\nshape", ctx("x = ", " + 1", "line"), final=False)
    assert step == Step("np.zeros", stop=True)
    # At the end of the line, the model ended it after the "(": a multi-line call.
    step = run_pipeline("np.zeros(\nshape", ctx("x = ", "", "line"), final=False)
    assert step == Step("np.zeros(", stop=True)


def test_max_lines_in_block_mode():
    raw = "".join(f"print({i})\n" for i in range(30))
    step = run_pipeline(raw, ctx("", "", "block", max_lines=4), final=False)
    assert step == Step("print(0)\nprint(1)\nprint(2)\nprint(3)", stop=True)
