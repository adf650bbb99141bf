from jupyter_copilot.postprocess.base import FilterContext
from jupyter_copilot.postprocess.block_dedent import stop_at_dedent


def ctx(prefix, suffix="", mode="block", language="python"):
    return FilterContext(prefix=prefix, suffix=suffix, mode=mode, language=language)


def test_stops_at_the_next_top_level_statement_after_a_body():
    raw = "total = sum(xs)\n    return total / len(xs)\n\nprint(mean([1, 2]))"
    step = stop_at_dedent(raw, ctx("def mean(xs):\n    "), False)
    assert step.text == "total = sum(xs)\n    return total / len(xs)\n\n"
    assert step.stop


def test_cursor_at_end_of_header_keeps_the_body_only():
    raw = "\n    return x ** 2\n\nsquare(3)"
    step = stop_at_dedent(raw, ctx("def square(x):"), True)
    assert step.text == "\n    return x ** 2\n\n"


def test_blank_line_under_unindented_header_expects_a_deeper_body():
    raw = "    return 1\nf()"
    assert stop_at_dedent(raw, ctx("def f():\n"), True).text == "    return 1\n"


def test_nested_blocks_inside_the_body_are_kept():
    raw = (
        "for row in rows:\n"
        "        if row.ok:\n"
        "            yield row\n"
        "        else:\n"
        "            skipped += 1\n"
        "    return skipped\n"
        "rows = load()"
    )
    step = stop_at_dedent(raw, ctx("def clean(rows):\n    skipped = 0\n    "), True)
    assert step.text.endswith("return skipped\n")


def test_lines_inside_brackets_and_strings_are_not_dedents():
    raw = (
        "query = '''\nSELECT *\nFROM t\n'''\n"
        "    frame = pd.read_sql(\nquery, conn)\n"
        "    return frame\n"
        "frame = load()"
    )
    step = stop_at_dedent(raw, ctx("def load():\n    "), True)
    assert step.text.endswith("return frame\n")


def test_top_level_completion_ends_with_the_block_it_opened():
    raw = "def g(y):\n    return y + 1\n\n\ndef h(z):\n    pass"
    step = stop_at_dedent(raw, ctx("import numpy as np\n"), False)
    assert step.text == "def g(y):\n    return y + 1\n\n\n"
    assert step.stop


def test_top_level_if_else_is_one_block():
    raw = "if x > 0:\n    sign = 1\nelse:\n    sign = -1\nprint(sign)"
    step = stop_at_dedent(raw, ctx("x = read()\n"), True)
    assert step.text == "if x > 0:\n    sign = 1\nelse:\n    sign = -1\n"


def test_decorator_and_multiline_header_at_top_level():
    raw = "@dataclass\nclass Point(\n    Base,\n):\n    x: float\n\nPoint(1)"
    step = stop_at_dedent(raw, ctx(""), True)
    assert step.text == "@dataclass\nclass Point(\n    Base,\n):\n    x: float\n\n"


def test_top_level_plain_statements_are_not_cut():
    raw = "df = pd.read_csv('a.csv')\ndf.head()"
    assert stop_at_dedent(raw, ctx("import pandas as pd\n"), True).text == raw


def test_holds_back_a_trailing_line_with_no_content_yet():
    step = stop_at_dedent("return x\n    ", ctx("def f(x):\n    "), False)
    assert step.text == "return x\n"
    assert not step.stop


def test_judges_a_line_as_soon_as_its_first_character_arrives():
    step = stop_at_dedent("return x\np", ctx("def f(x):\n    "), False)
    assert step.text == "return x\n"
    assert step.stop


def test_line_mode_is_left_alone():
    raw = "x\nprint(1)"
    assert stop_at_dedent(raw, ctx("def f(x):\n    return ", mode="line"), True).text == raw


def test_brace_language_header_keeps_its_closing_brace():
    raw = "\n  x * 2\n}\nsquare(3)"
    step = stop_at_dedent(raw, ctx("square <- function(x) {", language="r"), True)
    assert step.text == "\n  x * 2\n}\n"


def test_body_under_a_docstring_continues_past_a_nested_block():
    """Cursor at column 0 under a docstring: the model's 4-space first line continues
    the function body; the body's later statements must not be cut after the `if`."""
    prefix = 'def est_premier(n):\n    """Renvoie True si n est un nombre premier."""\n'
    raw = (
        "    if n <= 1:\n        return False\n"
        "    for i in range(2, int(n ** 0.5) + 1):\n        if n % i == 0:\n            return False\n"
        "    return True\n\nprint(est_premier(7))"
    )
    ctx = FilterContext(prefix=prefix, suffix="", mode="block")
    step = stop_at_dedent(raw, ctx, final=True)
    assert step.text.rstrip().endswith("    return True")
    assert "print(" not in step.text
    assert step.stop
