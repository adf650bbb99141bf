"""What a cell defines and uses: tree-sitter for Python, a regex fallback otherwise.

Used to choose the earlier cells worth keeping when they do not all fit: the cells
defining the names that later code uses (imports first).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from ..byte_lru import ByteLRU

try:  # tree-sitter is a dependency, but the prompt must still build without it.
    import tree_sitter_python
    from tree_sitter import Language, Node, Parser

    _PARSER: Parser | None = Parser(Language(tree_sitter_python.language()))
except (ImportError, OSError, ValueError):  # pragma: no cover - broken installs only
    _PARSER = None

_MAGIC_LINE = re.compile(r"^[ \t]*[%!].*$", re.MULTILINE)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
# R ("x <- ...", "f <- function"), Julia/JS/Python-ish ("x = ...", "function f(").
_FALLBACK_DEFINITION = re.compile(
    r"^[ \t]*(?:(?:def|function|class|const|let|var)\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*(?:<-|=(?!=)|\()",
    re.MULTILINE,
)
_FALLBACK_IMPORT = re.compile(r"^[ \t]*(?:import|from|library|require|using)\b", re.MULTILINE)

_DEFINITION_TYPES = ("function_definition", "class_definition")
# Statements whose blocks still run at module level (their names are global).
_MODULE_LEVEL_BLOCKS = (
    "if_statement",
    "elif_clause",
    "else_clause",
    "try_statement",
    "except_clause",
    "finally_clause",
    "with_statement",
    "for_statement",
    "while_statement",
    "block",
)


@dataclass(frozen=True)
class CodeFacts:
    defines: frozenset[str]
    uses: frozenset[str]
    has_imports: bool
    # ``from x import *``: we cannot know which names it brings.
    has_star_import: bool = False


def is_python(language: str) -> bool:
    return language.lower() in ("python", "python3", "ipython", "py")


def parse_python(source: str) -> Node | None:
    """The syntax tree's root, with IPython magics (``%time``, ``!pip``) blanked out."""
    if _PARSER is None:
        return None
    blanked = _MAGIC_LINE.sub(lambda match: " " * len(match.group(0)), source)
    return _PARSER.parse(blanked.encode("utf-8")).root_node


# Facts of recently seen cells, keyed by a digest of the source (the source itself
# would keep every big cell alive) and bounded in bytes (see byte_lru.py).
_FACTS: ByteLRU[tuple[str, bytes], CodeFacts] = ByteLRU(max_bytes=4 * 1024 * 1024)


def code_facts(source: str, language: str = "python") -> CodeFacts:
    """Names a cell defines at module level and names it reads (cached per source)."""
    key = (language, hashlib.blake2b(source.encode("utf-8", "surrogatepass"), digest_size=16).digest())
    facts = _FACTS.get(key)
    if facts is None:
        facts = _code_facts(source, language)
        size = sum(len(name) + 60 for name in facts.defines) + sum(len(n) + 60 for n in facts.uses)
        _FACTS.put(key, facts, size)
    return facts


def _code_facts(source: str, language: str) -> CodeFacts:
    root = parse_python(source) if is_python(language) else None
    if root is None:
        return _fallback_facts(source)
    defines: set[str] = set()
    flags = {"imports": False, "star": False}
    _collect_definitions(root, defines, flags)
    return CodeFacts(
        frozenset(defines), frozenset(_used_names(root)), flags["imports"], flags["star"]
    )


def _fallback_facts(source: str) -> CodeFacts:
    defines = {match.group(1) for match in _FALLBACK_DEFINITION.finditer(source)}
    uses = set()
    for name in _IDENTIFIER.findall(source):
        uses.update((name, name.split(".")[0]))  # "df.head" uses "df" (R: "my.df" too)
    return CodeFacts(frozenset(defines), frozenset(uses), bool(_FALLBACK_IMPORT.search(source)))


def _text(node: Node) -> str:
    return node.text.decode("utf-8", "replace") if node.text else ""


def _collect_definitions(node: Node, defines: set[str], flags: dict[str, bool]) -> None:
    for child in node.named_children:
        kind = child.type
        if kind in _DEFINITION_TYPES:
            name = child.child_by_field_name("name")
            if name is not None:
                defines.add(_text(name))
        elif kind == "decorated_definition":
            definition = child.child_by_field_name("definition")
            name = definition.child_by_field_name("name") if definition else None
            if name is not None:
                defines.add(_text(name))
        elif kind in ("import_statement", "import_from_statement", "future_import_statement"):
            flags["imports"] = True
            _collect_imported(child, defines, flags)
        elif kind == "expression_statement":
            for statement in child.named_children:
                if statement.type == "assignment":
                    _collect_targets(statement.child_by_field_name("left"), defines)
        elif kind in _MODULE_LEVEL_BLOCKS:
            if kind == "for_statement":
                _collect_targets(child.child_by_field_name("left"), defines)
            _collect_definitions(child, defines, flags)


def _collect_imported(statement: Node, defines: set[str], flags: dict[str, bool]) -> None:
    module = statement.child_by_field_name("module_name")
    for child in statement.named_children:
        if child == module:
            continue
        if child.type == "wildcard_import":
            flags["star"] = True
        elif child.type == "aliased_import":
            alias = child.child_by_field_name("alias")
            if alias is not None:
                defines.add(_text(alias))
        elif child.type == "dotted_name":
            # "import os.path" binds "os"; "from a import b" binds "b".
            parts = _text(child).split(".")
            defines.add(parts[0] if statement.type == "import_statement" else parts[-1])


def _collect_targets(target: Node | None, defines: set[str]) -> None:
    if target is None:
        return
    if target.type == "identifier":
        defines.add(_text(target))
    elif target.type in ("pattern_list", "tuple_pattern", "list_pattern", "list_splat_pattern"):
        for child in target.named_children:
            _collect_targets(child, defines)
    # `df["x"] = ...` and `obj.attr = ...` modify a name, they do not define one.


def _used_names(root: Node) -> Iterator[str]:
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type == "identifier":
            parent = node.parent
            field = None
            if parent is not None and parent.type in ("attribute", "keyword_argument"):
                field = "attribute" if parent.type == "attribute" else "name"
                if parent.child_by_field_name(field) != node:
                    field = None
            if field is None:
                yield _text(node)
        stack.extend(node.children)


def docstring_only_body_indent(prefix: str) -> int | None:
    """Column of a ``def``/``class`` whose body, so far, is only its docstring.

    For ``def f(x):\\n    \\"\\"\\"Doc.\\"\\"\\"\\n    |``: the cursor sits where the body
    should start, so a block completion fits. None when that is not the case.
    """
    body_end = prefix.rstrip()
    if not body_end.endswith(("'", '"')):
        return None  # a docstring ends with its quote: no parse needed to say no
    root = parse_python(body_end)
    if root is None:
        return None
    last = len(body_end.encode("utf-8")) - 1
    node: Node | None = root.descendant_for_byte_range(last, last + 1)
    while node is not None and node.type != "expression_statement":
        node = node.parent
    if node is None or node.named_child_count != 1 or node.named_children[0].type != "string":
        return None
    block = node.parent
    definition = block.parent if block is not None and block.type == "block" else None
    if definition is None or definition.type not in _DEFINITION_TYPES:
        return None
    if block.named_child_count != 1 or definition.has_error:
        return None
    return definition.start_point[1]
