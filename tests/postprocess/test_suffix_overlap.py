from jupyter_copilot.postprocess.base import FilterContext
from jupyter_copilot.postprocess.suffix_overlap import drop_suffix_overlap


def ctx(prefix, suffix):
    return FilterContext(prefix=prefix, suffix=suffix, mode="line")


def test_drops_the_closing_paren_that_is_already_there():
    assert drop_suffix_overlap('"hello")', ctx("print(", ")"), True).text == '"hello"'


def test_keeps_a_paren_that_closes_a_call_of_the_completion():
    assert drop_suffix_overlap("len(words)", ctx("print(", ")"), True).text == "len(words)"


def test_nested_closers():
    context = ctx("x = np.array([1, 2", "])\nprint(x)")
    assert drop_suffix_overlap(", 3])", context, True).text == ", 3"


def test_whole_rest_of_line_repeated():
    context = ctx("total = sum(", ") + bonus")
    assert drop_suffix_overlap("scores) + bonus", context, True).text == "scores"


def test_quote_and_paren_closing_a_string_of_the_prefix():
    context = ctx('plt.xlabel("', '")')
    assert drop_suffix_overlap('time (s)")', context, True).text == "time (s)"


def test_colon_already_typed():
    context = ctx("for i in ", ":")
    assert drop_suffix_overlap("range(10):", context, True).text == "range(10)"


def test_ordinary_text_is_not_taken_for_an_overlap_at_final():
    # "x" + "s)": the 's' is a coincidence, not a copy of the suffix.
    context = ctx("print(item", "s)")
    assert drop_suffix_overlap("_names", context, True).text == "_names"


def test_partial_overlap_is_held_back_while_streaming():
    context = ctx("total = sum(", ") + bonus")
    assert drop_suffix_overlap("scores) +", context, False).text == "scores"


def test_nothing_after_cursor():
    assert drop_suffix_overlap("df.head()", ctx("x = ", "\nprint(x)"), True).text == "df.head()"
