from jupyter_copilot.postprocess.base import FilterContext
from jupyter_copilot.postprocess.line_mode import first_line_only


def ctx(prefix, suffix="", mode="line"):
    return FilterContext(prefix=prefix, suffix=suffix, mode=mode)


def test_keeps_the_first_line_and_stops():
    step = first_line_only("read_csv('data.csv')\ndf.head()", ctx("df = pd."), False)
    # The newline that ends the line stays (it says the model ended the line);
    # strip_trailing_whitespace removes it last.
    assert step.text == "read_csv('data.csv')\n"
    assert step.stop


def test_leading_newline_then_the_next_line():
    # At the end of "import numpy as np" the model proposes the next import.
    step = first_line_only(
        "\nimport pandas as pd\nimport seaborn", ctx("import numpy as np"), False
    )
    assert step.text == "\nimport pandas as pd\n"
    assert step.stop


def test_only_newlines_so_far_is_not_a_reason_to_stop():
    step = first_line_only("\n\n", ctx("import numpy as np"), False)
    assert step.text == "\n\n"
    assert not step.stop


def test_partial_line_is_shown_while_streaming():
    step = first_line_only("groupby('cla", ctx("df."), False)
    assert step.text == "groupby('cla"
    assert not step.stop


def test_block_mode_is_left_alone():
    raw = "total = 0\n    for x in xs:"
    assert first_line_only(raw, ctx("def f(xs):\n    ", mode="block"), False).text == raw


def test_engines_stop_where_the_filter_cuts():
    """FirstLineStop (what engines ask while generating) says stop exactly at the
    piece where first_line_only first cuts, however the text is split into pieces."""
    from jupyter_copilot.postprocess.line_mode import FirstLineStop

    samples = ["\n\n  x = 1\ny", "np.zeros(3)\n", "   \n\t\n", "a\n", "\n\nimport pandas as pd\nimport", " \n b c \n"]
    for text in samples:
        for size in (1, 2, 3, 7):
            stop, so_far = FirstLineStop(), ""
            for start in range(0, len(text), size):
                piece = text[start : start + size]
                so_far += piece
                said = stop(piece)
                assert said == first_line_only(so_far, ctx(""), False).stop, (text, size, so_far)
