from jupyter_copilot.postprocess.base import FilterContext
from jupyter_copilot.postprocess.brackets import balance_brackets


def ctx(prefix, suffix="", mode="line"):
    return FilterContext(prefix=prefix, suffix=suffix, mode=mode)


def test_drops_a_closer_that_closes_nothing():
    assert balance_brackets("df.head())", ctx("x = "), False).text == "df.head()"


def test_keeps_closers_of_brackets_opened_before_the_cursor():
    context = ctx("result = np.concatenate([a, ")
    assert balance_brackets("b])", context, False).text == "b])"


def test_drops_a_closer_of_the_wrong_kind():
    context = ctx("values = [len(w) for w in words")
    assert balance_brackets(")]", context, True).text == "]"


def test_brackets_in_strings_and_comments_do_not_count():
    raw = 'print("a) b")  # closes )'
    assert balance_brackets(raw, ctx(""), True).text == raw


def test_prefix_inside_a_string():
    # The cursor is inside "..." opened in the prefix: the ")" in the string is text.
    context = ctx('plt.title("Loss (train')
    assert balance_brackets(')")', context, True).text == ')")'


def test_trailing_unclosed_opener_is_trimmed_at_final():
    assert balance_brackets("np.array(", ctx("x = "), True).text == "np.array"
    assert balance_brackets("np.array(", ctx("x = "), False).text == "np.array("


def test_an_opener_that_ends_a_line_the_model_ended_is_kept():
    # The line cuts keep the newline that ended the line: a multi-line literal starts.
    assert balance_brackets("value_map = {\n", ctx("    "), True).text == "value_map = {"
    assert balance_brackets("plt.plot(\n    ", ctx(""), True).text == "plt.plot("


def test_an_opener_that_the_lines_below_close_is_kept():
    # The model ended at the end of the line (no newline: the cell goes on below).
    body = "\n        'one': 1,\n        'two': 2,\n    }\n    return value_map"
    assert balance_brackets("value_map = {", ctx("    ", body), True).text == "value_map = {"
    # Lines below that do not close it: cut as before.
    assert balance_brackets("np.array(", ctx("x = ", "\nprint(x)"), True).text == "np.array"
    # Text after the cursor on its line: its closer belongs to the line, not the opener.
    assert balance_brackets("np.array(", ctx("f(", ")\n)"), True).text == "np.array"


def test_a_first_line_after_blank_lines_is_the_first_statement():
    # At the end of a line, the model proposes the next one: leading blank lines aside,
    # it is the first statement, judged as such.
    assert balance_brackets("\nnp.array(", ctx("x = 1"), True).text == "\nnp.array"
    assert balance_brackets("\nrows = [\n", ctx("x = 1"), True).text == "\nrows = ["


def test_unfinished_last_statement_of_a_block_is_dropped_at_final():
    raw = "model = fit(X, y)\n    params = {\n        'lr': 0.1,"
    step = balance_brackets(raw, ctx("def train(X, y):\n    ", mode="block"), True)
    assert step.text == "model = fit(X, y)"


def test_unfinished_first_statement_is_kept():
    raw = "fig, ax = plt.subplots(figsize=(8, 4),"
    assert balance_brackets(raw, ctx(""), True).text == raw
