from jupyter_copilot.postprocess.base import FilterContext
from jupyter_copilot.postprocess.suffix_closers import stop_at_suffix_closer


def ctx(prefix, suffix):
    return FilterContext(prefix=prefix, suffix=suffix, mode="line")


def test_stops_before_closing_the_call_the_suffix_closes():
    context = ctx("df.groupby(", ")\ndf.head()")
    step = stop_at_suffix_closer("'species').mean()", context, False)
    assert step.text == "'species'"
    assert step.stop


def test_own_brackets_are_kept():
    context = ctx("print(", ")")
    step = stop_at_suffix_closer("len(words)", context, False)
    assert step.text == "len(words)"
    assert not step.stop
    assert stop_at_suffix_closer("len(words))", context, False).text == "len(words)"


def test_nested_brackets_closed_by_the_suffix():
    context = ctx("x = np.array([1, 2", "])")
    assert stop_at_suffix_closer(", 3])", context, False).text == ", 3"


def test_bracket_left_open_by_the_rest_of_the_line_may_be_closed():
    # The rest of the line ", axis=0" closes nothing: the completion may close "(".
    context = ctx("np.mean(x", ", axis=0")
    assert stop_at_suffix_closer(")", context, True).text == ")"


def test_closing_a_string_of_the_prefix_first():
    context = ctx('plt.xlabel("', '")')
    assert stop_at_suffix_closer('time (s)")', context, True).text == 'time (s)"'


def test_no_text_after_the_cursor():
    assert stop_at_suffix_closer("a)", ctx("f(", "\n)"), True).text == "a)"
