import itertools

from jupyter_copilot.postprocess.base import FilterContext
from jupyter_copilot.postprocess.stop_tokens import cut_at_stop_tokens
from jupyter_copilot.prompts import FAMILIES

QWEN = FAMILIES["qwen2.5-coder"].stop + ("\n# %%",)


def ctx(stop_tokens=QWEN, prefix="df."):
    return FilterContext(prefix=prefix, suffix="", mode="line", stop_tokens=stop_tokens)


def test_cuts_at_end_of_text_and_asks_to_stop():
    step = cut_at_stop_tokens("head()<|endoftext|>print(1)", ctx(), False)
    assert step.text == "head()"
    assert step.stop


def test_the_next_cell_right_at_the_cursor_line_start_is_cut_too():
    # The cursor at the start of an empty line: the newline before it is the cell's.
    start = ctx(prefix='def f(n):\n    """Square."""\n')
    step = cut_at_stop_tokens("# %%\n\ndef g(n):", start, False)
    assert step.text == "" and step.stop
    # While it may still become the marker, nothing is shown; a comment is.
    assert cut_at_stop_tokens("# ", start, False).text == ""
    assert cut_at_stop_tokens("# square it", start, False).text == "# square it"
    # Indented, or after text on the line: not a cell marker.
    assert cut_at_stop_tokens("# %%", ctx(prefix="x = 1\n    "), True).text == "# %%"
    assert cut_at_stop_tokens("# %%", ctx(prefix="x = 1  "), True).text == "# %%"


def test_cuts_at_the_earliest_of_several_tokens():
    raw = "groupby('a')<|file_sep|>b.py\n<|endoftext|>"
    assert cut_at_stop_tokens(raw, ctx(), True).text == "groupby('a')"


def test_model_starting_the_next_cell_ends_the_completion():
    raw = "describe()\n\n# %%\nplt.show()"
    step = cut_at_stop_tokens(raw, ctx(), False)
    assert step.text == "describe()\n"
    assert step.stop


def test_holds_back_a_half_streamed_special_token():
    step = cut_at_stop_tokens("head()<|fim_", ctx(), False)
    assert step.text == "head()"
    assert not step.stop


def test_holds_back_a_bare_newline_that_may_start_a_cell_marker():
    assert cut_at_stop_tokens("head()\n", ctx(), False).text == "head()"
    assert cut_at_stop_tokens("head()\n#", ctx(), False).text == "head()"
    # As soon as it cannot be a marker any more, it is shown.
    assert cut_at_stop_tokens("head()\n# sort", ctx(), False).text == "head()\n# sort"


def test_at_final_a_dangling_less_than_sign_is_code():
    context = FilterContext(prefix="if a ", suffix="", mode="line", stop_tokens=QWEN)
    assert cut_at_stop_tokens("<", context, True).text == "<"
    assert cut_at_stop_tokens("<", context, False).text == ""
    assert cut_at_stop_tokens("b <|im", context, True).text == "b "


def test_no_stop_tokens_means_no_change():
    assert cut_at_stop_tokens("a<|endoftext|>", ctx(()), True).text == "a<|endoftext|>"


def test_prefix_stable_while_streaming():
    raw = "values.mean()<|endoftext|>junk"
    shown = [cut_at_stop_tokens(raw[:n], ctx(), False).text for n in range(len(raw) + 1)]
    for earlier, later in itertools.pairwise(shown):
        assert later.startswith(earlier)
    assert shown[-1] == "values.mean()"
