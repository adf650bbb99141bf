from jupyter_copilot.postprocess.scan import INHERITED, CodeScanner, scan_state


def test_state_at_the_cursor():
    state = scan_state("df = pd.DataFrame({'a': [1, 2")
    assert [char for char, _ in state.brackets] == ["(", "{", "["]
    assert state.quote == ""
    assert state.inside_expression


def test_strings_comments_and_triple_quotes():
    assert scan_state('x = "(" # )').in_comment
    assert scan_state('doc = """\nsee (').quote == '"""'
    assert scan_state("s = 'it\\'s (").quote == "'"
    assert scan_state("s = 'one line\nx = (").quote == ""


def test_backslash_continuation():
    assert scan_state("total = a + \\\n").continued
    assert not scan_state("total = a + \\\n    b\n").continued


def test_resumes_from_a_prefix_state():
    scanner = CodeScanner(scan_state("print(len("))
    events = [(event.kind, event.opener_index) for event in scanner.feed("x)) )")]
    assert events == [("close", INHERITED), ("close", INHERITED), ("unmatched", INHERITED)]


def test_newlines_inside_strings_are_reported():
    scanner = CodeScanner()
    kinds = [event.kind for event in scanner.feed('s = """a\nb"""\n')]
    assert kinds.count("newline") == 2


def test_resuming_a_deep_prefix_does_not_copy_its_brackets():
    """The filters start a scanner on every token: starting one must not cost the depth
    of the prefix (a prefix of thousands of `a(` made each token cost 12 ms)."""
    deep = scan_state("a(" * 5000)
    scanner = CodeScanner(deep)
    assert scanner._inherited is deep.brackets  # shared, not copied
    events = [event.kind for event in scanner.feed("[x]))")]
    assert events == ["open", "close", "close", "close"]
    state = scanner.state
    assert len(state.brackets) == 4998 and all(pos == INHERITED for _, pos in state.brackets)
    scanner = CodeScanner(scan_state("f(["))
    assert [e.kind for e in scanner.feed(")")] == ["unmatched"]  # the innermost is "["
