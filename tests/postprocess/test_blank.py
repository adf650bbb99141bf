from jupyter_copilot.postprocess.base import FilterContext
from jupyter_copilot.postprocess.blank import drop_blank

CTX = FilterContext(prefix="x = 1\n", suffix="", mode="block")


def test_whitespace_only_is_no_suggestion():
    assert drop_blank("\n    \n", CTX, True).text == ""
    assert not drop_blank("\n   ", CTX, False).stop


def test_real_text_is_kept():
    assert drop_blank("\nprint(x)", CTX, True).text == "\nprint(x)"
