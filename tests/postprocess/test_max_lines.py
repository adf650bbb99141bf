from jupyter_copilot.postprocess.base import FilterContext
from jupyter_copilot.postprocess.max_lines import limit_lines


def ctx(max_lines):
    return FilterContext(prefix="", suffix="", mode="block", max_lines=max_lines)


def test_cuts_after_max_lines_and_stops():
    raw = "\n".join(f"print({i})" for i in range(20))
    step = limit_lines(raw, ctx(3), False)
    assert step.text == "print(0)\nprint(1)\nprint(2)\n"  # the last line is complete
    assert step.stop


def test_exactly_max_lines_is_kept_whole():
    raw = "a = 1\nb = 2\nc = 3"
    step = limit_lines(raw, ctx(3), True)
    assert step.text == raw
    assert not step.stop


def test_a_leading_newline_counts_as_the_cursor_line():
    step = limit_lines("\n    return x\n\nprint(1)", ctx(2), False)
    assert step.text == "\n    return x\n"
