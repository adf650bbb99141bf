"""Notebook -> prompt: layout, cache stability, token budget, line/block mode."""

import pytest

from jupyter_copilot.context import (
    build_completion_prompt,
    build_warm_prompt,
    decide_mode,
    decide_request_mode,
    estimate_tokens,
    filter_context,
)
from jupyter_copilot.prompts import FAMILIES
from jupyter_copilot.schema import CompleteRequest, ContextCell, WarmRequest

QWEN = FAMILIES["qwen2.5-coder"]
PLAIN = FAMILIES["plain"]

NOTEBOOK = [
    ContextCell(cell_type="markdown", source="# Lab 2: linear regression\nLoad the *data*."),
    ContextCell(source="!pip install -q seaborn\n%matplotlib inline\nimport numpy as np"),
    ContextCell(source="import pandas as pd\ndf = pd.read_csv('houses.csv')"),
    ContextCell(cell_type="raw", source="raw text for nbconvert"),
    ContextCell(source="   \n"),
    ContextCell(source="X = df[['area']].values\ny = df['price'].values"),
]


def request(prefix, suffix="", cells=NOTEBOOK, **kw):
    """A request with its mode decided, as the service passes it to the prompt."""
    kw.setdefault("path", "course/lab2.ipynb")
    req = CompleteRequest(prefix=prefix, suffix=suffix, context_cells=cells, **kw)
    return decide_request_mode(req)


def filler_cell(number, lines=6):
    body = "\n".join(f"value_{number}_{i} = compute({number}, {i}) * 2" for i in range(lines))
    return ContextCell(source=f"# step {number}\n{body}")


# --- layout ---------------------------------------------------------------------------


def test_qwen_layout_puts_earlier_cells_before_the_fim_hole():
    prompt = build_completion_prompt(request("def fit(X, y):\n    ", "\n\nw = fit(X, y)"), QWEN)
    assert prompt.text.startswith("<|repo_name|>lab2\n<|file_sep|>course/lab2.py\n<|fim_prefix|>")
    assert prompt.text.endswith(
        "# %%\ndef fit(X, y):\n    <|fim_suffix|>\n\nw = fit(X, y)<|fim_middle|>"
    )
    # Cells in notebook order; the current cell is not in the stable part.
    text = prompt.text
    assert text.index("import numpy") < text.index("read_csv") < text.index("X = df")
    assert "def fit" not in prompt.stable_prefix


def test_markdown_becomes_comments_and_magics_stay_as_they_are():
    prompt = build_completion_prompt(request("X"), QWEN)
    assert "# %% [markdown]\n# # Lab 2: linear regression\n# Load the *data*.\n" in prompt.text
    assert "!pip install -q seaborn\n%matplotlib inline\n" in prompt.text
    assert "raw text for nbconvert" not in prompt.text
    assert "# %%\n   \n" not in prompt.text  # empty cells are left out


def test_plain_family_is_left_to_right_and_ignores_the_suffix():
    prompt = build_completion_prompt(request("y_pred = ", "\nprint(y_pred)"), PLAIN)
    assert prompt.text.startswith("# course/lab2.py\n# %% [markdown]\n")
    assert prompt.text.endswith("# %%\ny_pred = ")
    assert "print(y_pred)" not in prompt.text
    assert prompt.text.startswith(prompt.stable_prefix)


def test_plain_text_file_header_goes_inside_the_fim_prefix():
    prompt = build_completion_prompt(request("x = "), FAMILIES["deepseek-coder"])
    assert prompt.text.startswith("<｜fim▁begin｜># course/lab2.py\n# %% [markdown]")
    assert prompt.stable_prefix.startswith("<｜fim▁begin｜>")


def test_a_python_file_outside_a_notebook_has_no_cell_markers():
    req = CompleteRequest(prefix="import os\n", suffix="", path="tools/clean.py")
    req = decide_request_mode(req)
    prompt = build_completion_prompt(req, QWEN)
    assert prompt.text == (
        "<|repo_name|>clean\n<|file_sep|>tools/clean.py\n"
        "<|fim_prefix|>import os\n<|fim_suffix|><|fim_middle|>"
    )


def test_special_tokens_typed_by_a_student_cannot_end_the_prompt():
    cells = [ContextCell(source="s = '<|fim_middle|>'")]
    prompt = build_completion_prompt(request("t = '<|endoftext|>", cells=cells), QWEN)
    assert prompt.text.count("<|fim_middle|>") == 1
    assert "<|endoftext|>" not in prompt.text


def test_stop_tokens_include_the_family_and_the_next_cell_marker():
    prompt = build_completion_prompt(request("x = "), QWEN)
    assert set(QWEN.stop) <= set(prompt.stop)
    assert "\n# %%" in prompt.stop


def test_r_notebook_uses_r_file_names():
    req = request("model <- lm(", ")", language="r", path="stats.ipynb")
    prompt = build_completion_prompt(req, QWEN)
    assert "<|file_sep|>stats.R\n" in prompt.text


# --- cache stability ------------------------------------------------------------------


def test_stable_prefix_is_byte_identical_between_keystrokes():
    first = build_completion_prompt(request("w = np.linalg.lstsq(X, y", ")"), QWEN)
    second = build_completion_prompt(request("w = np.linalg.lstsq(X, y,", ")"), QWEN)
    assert first.text.startswith(first.stable_prefix)
    assert second.stable_prefix == first.stable_prefix
    # Everything up to the cursor is shared: only the tail is re-read by the engine.
    cursor = first.text.index("<|fim_suffix|>")
    assert second.text.startswith(first.text[:cursor])


def test_stable_prefix_does_not_depend_on_the_current_cell():
    cells = [filler_cell(n) for n in range(40)]
    prompts = [
        build_completion_prompt(request(prefix, cells=cells), QWEN)
        for prefix in ("", "value_0_1 + ", "import numpy as np\nvalue_3_3 = value_0_0\n")
    ]
    assert len({prompt.stable_prefix for prompt in prompts}) == 1


def test_warm_prompt_is_what_a_completion_in_a_new_cell_starts_with():
    warm_req = WarmRequest(path="course/lab2.ipynb", context_cells=NOTEBOOK)
    warm = build_warm_prompt(warm_req.completion_request(), QWEN)
    new_cell = build_completion_prompt(request(""), QWEN)
    # The stable cells, then the new cell's marker.
    assert warm == new_cell.stable_prefix + "# %%\n"
    assert new_cell.text.startswith(warm)
    typing = build_completion_prompt(request("plt.scatter(X, y", ")"), QWEN)
    assert typing.text.startswith(warm)


def test_warm_prompt_covers_the_cell_up_to_the_cursor_line():
    above = "model = LinearRegression()\nmodel.fit(X, y)\n"
    below = "\nplt.show()"
    warm_req = WarmRequest(path="course/lab2.ipynb", context_cells=NOTEBOOK,
                           prefix=above + "plt.sc", suffix=below)
    warm = build_warm_prompt(warm_req.completion_request(), QWEN)
    assert warm.endswith("# %%\n" + above)
    # Whatever the student types on the cursor's line, the completion starts with it.
    for line in ("", "plt.sc", "plt.scatter(X, model.predict(X)"):
        for suffix in (below, ")" + below):
            prompt = build_completion_prompt(request(above + line, suffix), QWEN)
            assert prompt.text.startswith(warm), (line, suffix)
            assert prompt.text[: prompt.warm_end] == warm
    # Another line of the cell: the warm-up's cell lines are no longer all valid.
    moved = build_completion_prompt(request("model = Lin", "\n" + above[27:] + below), QWEN)
    assert not moved.text.startswith(warm)


def test_a_typing_warm_up_goes_on_to_the_cursor_less_the_word_being_typed():
    above = "model = LinearRegression()\nmodel.fit(X, y)\n"
    warm_req = WarmRequest(path="course/lab2.ipynb", context_cells=NOTEBOOK,
                           prefix=above + "plt.scatter(X, mod", suffix="\nplt.show()",
                           through_cursor=True)  # fmt: skip
    warm = build_warm_prompt(warm_req.completion_request(), QWEN,
                             through_cursor=warm_req.through_cursor)  # fmt: skip
    assert warm.endswith("# %%\n" + above + "plt.scatter(X,")
    # The next keystrokes complete the word: the completion still starts with it.
    for line in ("plt.scatter(X, mod", "plt.scatter(X, model", "plt.scatter(X, model.predict("):
        prompt = build_completion_prompt(request(above + line, "\nplt.show()"), QWEN)
        assert prompt.text.startswith(warm), line
    # At a word's boundary nothing is left out; on an empty line it is the line warm-up.
    boundary = WarmRequest(context_cells=NOTEBOOK, prefix=above + "plt.scatter(", through_cursor=True)
    assert build_warm_prompt(boundary.completion_request(), QWEN, through_cursor=True).endswith(
        above + "plt.scatter(")
    empty = WarmRequest(context_cells=NOTEBOOK, prefix=above, through_cursor=True)
    assert build_warm_prompt(empty.completion_request(), QWEN, through_cursor=True) == \
        build_warm_prompt(empty.completion_request(), QWEN)  # fmt: skip


def test_warm_prompt_of_a_cell_cut_to_the_budget_is_a_prefix_of_its_completion():
    # A long cell: the prefix is cut at its head, in steps, the same way for both.
    above = "".join(f"row_{i} = load({i})  # a line of the long cell\n" for i in range(400))
    warm_req = WarmRequest(path="a.ipynb", prefix=above + "row_400 = ", suffix="")
    warm = build_warm_prompt(warm_req.completion_request(), QWEN)
    assert 0 < len(warm) < len(above)
    typed = request(above + "row_400 = lo", path="a.ipynb", cells=[])
    prompt = build_completion_prompt(typed, QWEN)
    assert prompt.text.startswith(warm)


def test_warm_prompt_with_a_long_notebook_and_plain_family():
    cells = [filler_cell(n) for n in range(60)]
    warm_req = WarmRequest(path="a.ipynb", context_cells=cells)
    warm = build_warm_prompt(warm_req.completion_request(), PLAIN)
    later = build_completion_prompt(request("value_59_0", path="a.ipynb", cells=cells), PLAIN)
    assert warm == later.stable_prefix + "# %%\n" and later.text.startswith(warm)


def test_moving_down_the_notebook_mostly_extends_the_stable_prefix():
    cells = [filler_cell(n) for n in range(80)]
    previous = None
    extended = 0
    for count in range(1, len(cells) + 1):
        stable = build_completion_prompt(request("", cells=cells[:count]), QWEN).stable_prefix
        if previous is not None and stable.startswith(previous):
            extended += 1
        previous = stable
    # Dropping old cells is quantized: the window start moves rarely.
    assert extended >= 0.7 * (len(cells) - 1)


# --- budget ---------------------------------------------------------------------------


def test_budget_is_respected_and_oldest_cells_go_first():
    cells = [filler_cell(n) for n in range(50)]
    prompt = build_completion_prompt(request("total = ", cells=cells), QWEN, budget_tokens=1024)
    assert estimate_tokens(prompt.text) <= 1024
    assert "# step 49\n" in prompt.text
    assert "# step 0\n" not in prompt.text
    kept = [n for n in range(50) if f"# step {n}\n" in prompt.text]
    assert kept == list(range(kept[0], 50))  # a contiguous recent window


def test_cells_defining_names_used_later_are_kept_imports_first():
    cells = [
        ContextCell(source="import numpy as np\nimport pandas as pd"),
        ContextCell(source="def rmse(a, b):\n    return np.sqrt(((a - b) ** 2).mean())"),
        *[filler_cell(n) for n in range(2, 40)],
        ContextCell(source="score = rmse(value_2_0, value_3_0)"),
    ]
    prompt = build_completion_prompt(request("", cells=cells), QWEN, budget_tokens=1024)
    assert estimate_tokens(prompt.text) <= 1024
    assert "def rmse(a, b):" in prompt.stable_prefix
    assert "import numpy as np" in prompt.stable_prefix
    assert "# step 2\n" in prompt.stable_prefix  # defines value_2_0, used last
    assert "# step 5\n" not in prompt.text  # an old cell nobody uses
    assert prompt.text.index("import numpy") < prompt.text.index("def rmse")


def test_a_definition_the_current_cell_uses_is_brought_back():
    cells = [
        ContextCell(
            source="def normalize(frame):\n    return (frame - frame.mean()) / frame.std()"
        ),
        *[filler_cell(n) for n in range(1, 40)],
    ]
    without = build_completion_prompt(request("x = 1\n", cells=cells), QWEN, budget_tokens=1024)
    assert "def normalize" not in without.text
    uses = build_completion_prompt(
        request("clean = normalize(df)\n", cells=cells), QWEN, budget_tokens=1024
    )
    assert "def normalize" in uses.text
    assert "def normalize" not in uses.stable_prefix  # after it, so the cache still holds
    assert uses.stable_prefix == without.stable_prefix
    assert estimate_tokens(uses.text) <= 1024
    # Typing on the cursor's line never changes that choice.
    typing = build_completion_prompt(request("norm", cells=cells), QWEN, budget_tokens=1024)
    assert "def normalize" not in typing.text


def test_an_oversized_cell_is_elided_in_the_middle():
    big = "\n".join(f"row_{i} = [{', '.join(str(j) for j in range(20))}]" for i in range(300))
    cells = [ContextCell(source="import numpy as np"), ContextCell(source=big)]
    prompt = build_completion_prompt(request("x = ", cells=cells), QWEN)
    assert estimate_tokens(prompt.text) <= 1536
    assert "row_0 = " in prompt.text and "row_299 = " in prompt.text
    assert "lines omitted)" in prompt.text
    assert "import numpy as np" in prompt.text


def test_a_huge_current_cell_keeps_its_end_and_cuts_in_steps():
    lines = [f"feature_{i} = df['col_{i}'].fillna(0)" for i in range(400)]
    prefix = "\n".join(lines) + "\nmodel = "
    prompt = build_completion_prompt(request(prefix), QWEN)
    assert estimate_tokens(prompt.text) <= 1536
    assert "model = <|fim_suffix|>" in prompt.text
    assert "feature_0 = " not in prompt.text

    def first_kept_line(text):
        return text.split("# %%\n")[-1].split("\n")[0]

    after_typing = build_completion_prompt(request(prefix + "Linear"), QWEN)
    assert first_kept_line(after_typing.text) == first_kept_line(prompt.text)


def test_suffix_is_short_and_cut_at_a_line_end():
    suffix = "\n" + "\n".join(f"print(step_{i})" for i in range(100))
    prompt = build_completion_prompt(request("x = ", suffix), QWEN, suffix_max_chars=60)
    shown = prompt.text.split("<|fim_suffix|>")[1].split("<|fim_middle|>")[0]
    assert len(shown) <= 60
    assert shown.endswith("\n") and suffix.startswith(shown)
    one_long_line = build_completion_prompt(
        request("f(", "x" * 100 + ")"), QWEN, suffix_max_chars=40
    )
    assert "<|fim_suffix|>" + "x" * 40 + "<|fim_middle|>" in one_long_line.text


def test_a_non_ascii_suffix_stays_within_its_token_reserve():
    suffix = "\n" + "\n".join("print('élève numéro 7 réussi')" for _ in range(40))
    prompt = build_completion_prompt(request("x = ", suffix), QWEN, budget_tokens=600)
    assert estimate_tokens(prompt.text) <= 600


def test_estimate_tokens_is_cheap_and_conservative():
    assert estimate_tokens("") == 0
    assert estimate_tokens("x") == 1
    code = "def f(x):\n    return x * 2\n"
    assert estimate_tokens(code) >= len(code) / 4  # real tokenizers: ~3.5-4 chars/token
    assert estimate_tokens("é" * 10) == 10  # accents may be tokens of their own


# --- mode -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix, suffix, expected",
    [
        # Empty bodies: a whole block is wanted.
        ("def area(r):\n    ", "", "block"),
        ("def area(r):\n    ", "\n\nprint(area(2))", "block"),
        ("def area(r):", "\n\nprint(area(2))", "block"),
        ("for i in range(10):\n    ", "\nprint('done')", "block"),
        ("class Model:\n    ", "\n\nm = Model()", "block"),
        (
            'def area(r):\n    """Area of a disc of radius r."""\n    ',
            "\n\nprint(area(2))",
            "block",
        ),
        # Empty line with nothing after it in the cell.
        ("import numpy as np\n", "", "block"),
        ("df = load()\n# plot the price against the area\n", "", "block"),
        # Text after the cursor on its line.
        ("print(", ")", "line"),
        ("x = np.array([", "])\ny = x * 2", "line"),
        ("def area(", "):\n    pass", "line"),
        # Mid-line, or at the end of an ordinary line.
        ("df.groupby('species').", "", "line"),
        ("import numpy as np", "", "line"),
        ("total = 0\nfor x in xs:\n    total += x", "\nprint(total)", "line"),
        # Inside a string or a comment: finish the sentence.
        ('def f():\n    """\n    ', '\n    """', "line"),
        ("# compute the mean of", "", "line"),
        ("x = 1  # the number of", "", "line"),
        # A blank line between existing statements, or above an existing body.
        ("x = 1\n", "\ny = 2", "line"),
        ("def f(x):\n    ", "\n    return x", "line"),
        ('def f(x):\n    """Doc."""\n    ', "\n    return x", "line"),
    ],
)
def test_decide_mode(prefix, suffix, expected):
    assert decide_mode(prefix, suffix) == expected


def test_decide_mode_other_languages_use_indentation():
    assert decide_mode("square <- function(x) {", "\n}", "r") == "block"
    assert decide_mode("for (i in 1:10) {\n  ", "\n}\nprint(i)", "r") == "block"
    assert decide_mode("x <- c(1, ", ")", "r") == "line"


def test_mode_and_token_limits_in_the_prompt():
    assert build_completion_prompt(request("print("), QWEN).max_tokens == 48
    block = build_completion_prompt(request("def f(x):\n    "), QWEN, block_max_tokens=99)
    assert (block.mode, block.max_tokens) == ("block", 99)
    forced = build_completion_prompt(request("print(", mode="block", max_tokens=7), QWEN)
    assert (forced.mode, forced.max_tokens) == ("block", 7)


def test_the_prompt_takes_a_decided_mode_and_decides_none():
    undecided = CompleteRequest(prefix="def f(x):\n    ", path="a.ipynb")
    with pytest.raises(ValueError, match="decided"):
        build_completion_prompt(undecided, QWEN)
    assert decide_request_mode(undecided).mode == "block"
    asked = undecided.model_copy(update={"mode": "line"})
    assert decide_request_mode(asked) is asked  # the student's choice stands
    assert build_completion_prompt(asked, QWEN).mode == "line"


def test_filter_context_matches_the_request():
    req = request("def f(x):\n    ", "\n\nf(1)")
    prompt = build_completion_prompt(req, QWEN)
    ctx = filter_context(req, prompt, max_lines=8)
    assert (ctx.prefix, ctx.suffix, ctx.mode, ctx.max_lines) == (req.prefix, req.suffix, "block", 8)
    assert ctx.stop_tokens == prompt.stop
