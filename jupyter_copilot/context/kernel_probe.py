"""Runs INSIDE the student's kernel: a compact, safe summary of the live namespace.

This file is sent as text (never imported there: the kernel's environment need not
have jupyter-copilot) by the JupyterLab extension, as one ``user_expressions``
entry of a silent execute request (no history, no output, no execution count), and
by the executed replay benchmark. ``labextension/src/kernel/probeSource.ts`` is
generated from it (``python -m jupyter_copilot.context.kernel_probe --ts``; a test
checks that the two agree).

Safety: the summary must never run the student's code. So no ``repr``/``str``/
``len``/``getattr`` on arbitrary objects. Types are found with ``type()``, class
attributes are read through ``type``'s own descriptors (a metaclass cannot
intercept them), and only objects whose type IS a known class (not a subclass,
which could override a property) are opened: DataFrame, Series, ndarray, dict,
list, tuple, plain functions, plain classes, modules, instances of plain classes
(their ``__dict__`` through the base descriptor only). Everything else is named by
its type. Names, keys and column labels are shown only when they are plain str,
int, float or bool. The walk stops after a time box and a size box.

The expression evaluates to base64 of ASCII JSON (``repr`` of that is the string in
quotes, easy to parse on any client): ``{"v": 1, "entries": [{"name", "summary"}]}``.
"""

from __future__ import annotations

import base64 as _b64
import itertools as _itertools
import json as _json
import sys as _sys
import time as _time
import types as _types

VERSION = 1
MAX_ENTRIES = 48
MAX_ITEMS = 30  # columns, keys, attributes shown per object
MAX_SUMMARY_CHARS = 400
TIME_BOX_S = 0.05
SKIPPED = {"In", "Out", "exit", "quit", "get_ipython", "open"}

_type_dict = type.__dict__["__dict__"].__get__
_type_name = type.__dict__["__name__"].__get__
_PLAIN = (str, int, float, bool)


def _class_dict(cls):
    return _type_dict(cls)


_type_module = type.__dict__["__module__"].__get__


def _module_of(cls):
    module = _type_module(cls)
    return module if type(module) is str else ""


def _qualified(cls):
    module = _module_of(cls)
    name = _type_name(cls)
    return name if module in ("builtins", "__main__", "") else f"{module.split('.')[0]}.{name}"


def _known(module_name, attribute):
    """A class from an already imported library (never imports anything)."""
    module = _sys.modules.get(module_name)
    if type(module) is not _types.ModuleType:
        return None
    value = module.__dict__.get(attribute)
    return value if type(value) is type else None


def _label(value):
    """A key or column label as Python would spell it, for plain values only."""
    kind = type(value)
    if kind in _PLAIN or value is None:
        return kind.__repr__(value[:60] if kind is str else value)
    if kind is tuple and all(type(v) in _PLAIN for v in value[:4]):
        return "(" + ", ".join(_label(v) for v in value[:4]) + ")"
    return None


def _items(values, total, limit=MAX_ITEMS):
    """The first `limit` labels of an iterable of `total` values."""
    shown = []
    for value in _itertools.islice(values, limit):
        text = _label(value)
        shown.append(text if text is not None else "?")
    more = total - len(shown)
    return ", ".join(shown) + (f", ... (+{more})" if more > 0 else "")


def _dtype(dtype):
    kind = type(dtype)
    if _module_of(kind).split(".")[0] not in ("numpy", "pandas"):
        return "?"
    name = dtype.name if kind is not type else "?"
    return name if type(name) is str else "?"


def _dataframe(frame):
    rows, cols = frame.shape
    columns = list(frame.columns[:MAX_ITEMS])
    dtypes = list(frame.dtypes.iloc[:MAX_ITEMS])
    parts = []
    for column, dtype in zip(columns, dtypes):
        label = _label(column)
        parts.append(f"{label if label is not None else '?'} {_dtype(dtype)}")
    more = cols - len(parts)
    shown = ", ".join(parts) + (f", ... (+{more})" if more > 0 else "")
    return f"DataFrame {rows}x{cols}, columns: {shown}"


def _series(series):
    name = _label(series.name)
    index = series.index
    labels = ""
    if type(index) is _known("pandas", "Index") and len(index) <= MAX_ITEMS:
        labels = f", index: {_items(list(index), len(index))}"
    return f"Series {_dtype(series.dtype)}, {len(series)} rows" + (
        f", name {name}" if name is not None else "") + labels


def _dict(mapping):
    total = dict.__len__(mapping)
    summary = f"dict, {total} keys: {_items(dict.keys(mapping), total)}"
    nested = [(k, v) for k, v in _itertools.islice(dict.items(mapping), 8)
              if type(k) is str and type(v) is dict]
    for key, inner in nested[:3]:
        summary += f"; [{_label(key)}] keys: {_items(dict.keys(inner), dict.__len__(inner), 10)}"
    return summary


def _sequence(kind, values):
    total = kind.__len__(values)
    summary = f"{_type_name(kind)}, {total} items"
    for first in values:  # the builtin iterator of an exact list, tuple or set
        summary += f" of {_qualified(type(first))}"
        if type(first) is dict:
            summary += f", keys: {_items(dict.keys(first), dict.__len__(first))}"
        break
    return summary


def _parameters(function):
    code = function.__code__
    names = code.co_varnames
    positional = code.co_argcount
    keyword_only = code.co_kwonlyargcount
    defaults = function.__defaults__ or ()
    parts = []
    first_default = positional - len(defaults)
    for index, name in enumerate(names[:positional]):
        if index >= first_default:
            default = _label(defaults[index - first_default])
            parts.append(f"{name}={default if default is not None else '...'}")
        else:
            parts.append(name)
    cursor = positional + keyword_only
    if code.co_flags & 0x04:  # *args
        parts.append("*" + names[cursor])
        cursor += 1
    elif keyword_only:
        parts.append("*")
    keyword_defaults = function.__kwdefaults__
    if type(keyword_defaults) is not dict:
        keyword_defaults = {}
    for name in names[positional : positional + keyword_only]:
        if name in keyword_defaults:
            default = _label(dict.__getitem__(keyword_defaults, name))
            parts.append(f"{name}={default if default is not None else '...'}")
        else:
            parts.append(name)
    if code.co_flags & 0x08:  # **kwargs
        parts.append("**" + names[cursor])
    return ", ".join(parts)


def _class(cls):
    members = _class_dict(cls)
    init = members.get("__init__")
    signature = ""
    if type(init) is _types.FunctionType:
        signature = "(" + _parameters(init).partition(", ")[2] + ")"
    methods = [name for name, value in members.items()
               if type(name) is str and not name.startswith("_")
               and type(value) is _types.FunctionType]
    return f"class{signature}" + (f", methods: {', '.join(methods[:MAX_ITEMS])}" if methods else "")


def _instance_dict(value, cls):
    """The instance's __dict__, only through CPython's own slot (no property)."""
    for base in _type_dict(type)["__mro__"].__get__(cls):
        descriptor = _class_dict(base).get("__dict__")
        if descriptor is not None:
            if type(descriptor) is not _types.GetSetDescriptorType:
                return None
            found = descriptor.__get__(value, cls)
            return found if type(found) is dict else None
    return None


def _instance(value, cls):
    summary = f"{_qualified(cls)} instance"
    attributes = _instance_dict(value, cls)
    if attributes:
        names = [k for k in dict.keys(attributes) if type(k) is str and not k.startswith("_")]
        typed = [f"{k}: {_qualified(type(dict.__getitem__(attributes, k)))}"
                 for k in names[:MAX_ITEMS]]
        summary += ", attributes: " + ", ".join(typed)
    return summary


def summarize(value):
    """One line about `value`, or None to leave the name out."""
    kind = type(value)
    if kind is _types.ModuleType:
        name = value.__dict__.get("__name__")
        return f"module {name}" if type(name) is str else "module"
    if kind is _known("pandas", "DataFrame"):
        return _dataframe(value)
    if kind is _known("pandas", "Series"):
        return _series(value)
    if kind is _known("numpy", "ndarray"):
        return f"ndarray {_dtype(value.dtype)}, shape {tuple(value.shape)}"
    if kind is dict:
        return _dict(value)
    if kind in (list, tuple, set):
        return _sequence(kind, value)
    if kind in _PLAIN:
        return _type_name(kind) + (f", {str.__len__(value)} chars" if kind is str else "")
    if kind is _types.FunctionType:
        return f"function({_parameters(value)})"
    if kind is type:
        return _class(value)
    if type in _type_dict(type)["__mro__"].__get__(kind):  # a class with a metaclass
        return f"class ({_qualified(kind)})"
    if type(kind) is type and _module_of(kind) == "__main__":
        return _instance(value, kind)
    if kind in (_types.BuiltinFunctionType, _types.MethodType):
        return None
    return _qualified(kind)


def probe(namespace):
    """The summary of `namespace` (the kernel's user namespace), newest names first."""
    deadline = _time.perf_counter() + TIME_BOX_S
    entries = []
    if type(namespace) is not dict:
        return entries
    names = [n for n in dict.keys(namespace) if type(n) is str]
    for name in reversed(names):
        if len(entries) >= MAX_ENTRIES or _time.perf_counter() > deadline:
            break
        if name.startswith("_") or name in SKIPPED:
            continue
        try:
            summary = summarize(dict.__getitem__(namespace, name))
        except Exception:  # an odd object: name it by nothing rather than fail
            summary = None
        if summary:
            entries.append({"name": name[:80], "summary": summary[:MAX_SUMMARY_CHARS]})
    return entries


def encoded(namespace):
    payload = {"v": VERSION, "entries": probe(namespace)}
    return _b64.b64encode(_json.dumps(payload, ensure_ascii=True).encode()).decode()


# --- the text sent to a kernel ------------------------------------------------------

_RESULT = "__jupyter_copilot_probe__"


def probe_source() -> str:
    """This module's source: the code the kernel runs (in a fresh namespace of its own)."""
    from pathlib import Path

    return Path(__file__).read_text(encoding="utf-8")


def probe_expression(source: str | None = None) -> str:
    """A ``user_expressions`` entry: runs this module in its own globals (the student's
    namespace stays untouched) and evaluates to the base64 payload."""
    source = probe_source() if source is None else source
    # The expression is evaluated in the student's namespace, so it names nothing the
    # student could have redefined but `exec` (checked first: a student's own `exec`
    # means no summary, never a call to it).
    return (
        "(lambda __ns, __g: None if 'exec' in __ns else "
        "(exec(__g['__src'], __g), __g['encoded'](__ns))[1])"
        f"((lambda: 0).__globals__, {{'__name__': {_RESULT!r}, '__src': {source!r}}})"
    )


def decode_reply(text_plain: str) -> list[dict]:
    """The entries from the expression's ``text/plain`` result (a quoted base64 string)."""
    text = text_plain.strip().strip("'\"")
    if not text or text == "None":
        return []
    payload = _json.loads(_b64.b64decode(text))
    entries = payload.get("entries", []) if type(payload) is dict else []
    return [e for e in entries if type(e) is dict]


def typescript_module() -> str:
    """labextension/src/kernel/probeSource.ts (generated, do not edit)."""
    # Base64: no quote or escape for the TS side (or its formatter) to reinterpret.
    encoded_expression = _b64.b64encode(probe_expression().encode()).decode()
    return (
        "// Generated from jupyter_copilot/context/kernel_probe.py by\n"
        "// `python -m jupyter_copilot.context.kernel_probe --ts`: do not edit.\n"
        "// The `user_expressions` entry that summarizes the kernel's namespace, base64.\n"
        f"export const PROBE_EXPRESSION_BASE64 =\n  '{encoded_expression}';\n"
    )


if __name__ == "__main__" and _sys.argv[1:] == ["--ts"]:
    _sys.stdout.write(typescript_module())
