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


def test_unfinished_last_statement_of_a_block_is_dropped_at_final():
    raw = "model = fit(X, y)\n    params = {\n        'lr': 0.1,"
    step = balance_brackets(raw, ctx("def train(X, y):\n    ", mode="block"), True)
    assert step.text == "model = fit(X, y)"


def test_unfinished_first_statement_is_kept():
    raw = "fig, ax = plt.subplots(figsize=(8, 4),"
    assert balance_brackets(raw, ctx(""), True).text == raw
