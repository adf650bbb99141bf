from jupyter_copilot.postprocess.base import FilterContext
from jupyter_copilot.postprocess.repeated_suffix import stop_at_repeated_suffix


def ctx(prefix, suffix, mode="block"):
    return FilterContext(prefix=prefix, suffix=suffix, mode=mode)


def test_cuts_where_the_model_rewrites_the_next_line():
    context = ctx("def area(r):\n    ", "\n    return result\n\nprint(area(2))")
    raw = "result = 3.14159 * r ** 2\n    return result\n\nprint(area(2))"
    step = stop_at_repeated_suffix(raw, context, False)
    assert step.text == "result = 3.14159 * r ** 2\n"
    assert step.stop


def test_reindented_copy_counts_as_a_copy():
    context = ctx("for i in range(3):\n    ", "\nplt.show()")
    step = stop_at_repeated_suffix("ax.plot(x, y[i])\n        plt.show()", context, True)
    assert step.text == "ax.plot(x, y[i])\n"


def test_blank_cursor_line_copying_the_next_line_gives_nothing():
    context = ctx("df = load()\n", "\ndf.describe()")
    step = stop_at_repeated_suffix("df.describe()\n", context, False)
    assert step.text == ""
    assert step.stop


def test_first_line_continues_the_cursor_line_and_is_not_compared():
    # "x = " + "df.describe()" is a new line of code even if the next line is the same call.
    context = ctx("x = ", "\ndf.describe()", mode="line")
    assert stop_at_repeated_suffix("df.describe()", context, True).text == "df.describe()"


def test_holds_back_a_partial_line_that_may_become_a_copy():
    context = ctx("model.fit(X, y)\n", "\nmodel.score(X_test, y_test)")
    assert stop_at_repeated_suffix("model.sc", context, False).text == ""
    # It diverged: shown again.
    assert stop_at_repeated_suffix("model.predict(", context, False).text == "model.predict("


def test_a_partial_copy_at_final_is_kept():
    context = ctx("model.fit(X, y)\n", "\nmodel.score(X_test, y_test)")
    assert stop_at_repeated_suffix("model.sc", context, True).text == "model.sc"


def test_closing_bracket_line_already_present():
    context = ctx("params = {\n    'lr': 0.1,\n    ", "\n}\nmodel = fit(params)")
    step = stop_at_repeated_suffix("'epochs': 10,\n}", context, True)
    assert step.text == "'epochs': 10,\n"


def test_nothing_below_the_cursor_means_nothing_to_repeat():
    raw = "x = 1\ny = 2"
    assert stop_at_repeated_suffix(raw, ctx("", ""), True).text == raw
