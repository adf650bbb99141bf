"""JSON from an untrusted client, with its work bounded before and while parsing.

`json.loads` alone is not enough on the campus path: a body nested 1,100 levels deep
raises RecursionError, an integer of 5,000 digits raises ValueError (both were 500s),
and a lone surrogate (``"\\ud800"``) parses into a str that cannot be encoded later
(a 502 deep in the engine). Here each of those is a 400 that names the field.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32  # our schemas nest 3 levels; anything deeper is an attack or a bug
MAX_NUMBER_CHARS = 32  # no field of ours needs more than a float's worth of digits


class BadJSON(ValueError):
    def __init__(self, message: str, field: str = "body") -> None:
        super().__init__(message)
        self.field = field


def _depth_exceeds(text: str, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than `limit` (one linear pass,
    before the recursive parser ever sees the text)."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _number(kind):
    def parse(text: str):
        if len(text) > MAX_NUMBER_CHARS:
            raise BadJSON(f"a number of {len(text)} characters is too long (at most {MAX_NUMBER_CHARS})")
        return kind(text)

    return parse


def _unencodable(value: Any, path: str = "") -> str | None:
    """The path of the first string that is not valid Unicode text (lone surrogates)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "body"
        return None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        where = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and _unencodable(key) is not None:
            return where
        found = _unencodable(item, where)
        if found is not None:
            return found
    return None


def loads(body: bytes) -> Any:
    """Parse `body`, or raise `BadJSON` (never RecursionError, never a huge number)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadJSON(f"request body is not UTF-8: {exc}") from None
    if _depth_exceeds(text, MAX_DEPTH):
        raise BadJSON(f"request body nests deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(text or "null", parse_int=_number(int), parse_float=_number(float),
                          parse_constant=_reject_constant)  # fmt: skip
    except BadJSON:
        raise
    except (ValueError, RecursionError) as exc:
        raise BadJSON(f"request body is not valid JSON: {exc}") from None
    where = _unencodable(data)
    if where is not None:
        raise BadJSON(f"{where}: not valid Unicode text (a lone surrogate?)", field=where)
    return data


def _reject_constant(name: str):
    raise BadJSON(f"{name} is not a JSON number")
