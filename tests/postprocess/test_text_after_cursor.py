from jupyter_copilot.postprocess.base import FilterContext
from jupyter_copilot.postprocess.text_after_cursor import single_line_before_suffix


def ctx(prefix, suffix, mode="line"):
    return FilterContext(prefix=prefix, suffix=suffix, mode=mode)


def test_text_after_cursor_keeps_one_line_even_in_block_mode():
    context = ctx("plt.plot(x, ", ")\nplt.show()", mode="block")
    step = single_line_before_suffix("y, label='data')\nplt.legend()", context, False)
    assert step.text == "y, label='data')"
    assert step.stop


def test_a_leading_newline_mid_line_gives_nothing():
    step = single_line_before_suffix("\nprint(x)", ctx("print(", ")"), False)
    assert step.text == ""
    assert step.stop


def test_no_text_after_cursor_leaves_the_text_alone():
    context = ctx("def f(x):\n    ", "\n\nf(2)", mode="block")
    raw = "y = x * 2\n    return y"
    assert single_line_before_suffix(raw, context, False).text == raw


def test_whitespace_after_cursor_does_not_count_as_text():
    raw = "1\nb = 2"
    assert single_line_before_suffix(raw, ctx("a = ", "   \n"), False).text == raw


def test_waits_while_the_line_is_not_finished():
    step = single_line_before_suffix('"hello', ctx("print(", ")"), False)
    assert step == single_line_before_suffix('"hello', ctx("print(", ")"), False)
    assert not step.stop
