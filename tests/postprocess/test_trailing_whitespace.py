from jupyter_copilot.postprocess.base import FilterContext
from jupyter_copilot.postprocess.trailing_whitespace import strip_trailing_whitespace

CTX = FilterContext(prefix="def f(x):\n    ", suffix="", mode="block")


def test_strips_trailing_newlines_and_indentation():
    assert strip_trailing_whitespace("return x\n\n    ", CTX, True).text == "return x"


def test_keeps_leading_and_inner_whitespace():
    raw = "\n    y = x  # twice\n    return y"
    assert strip_trailing_whitespace(raw + "  \n", CTX, False).text == raw
