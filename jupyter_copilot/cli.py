"""`jupyter copilot …` (the `jupyter-copilot` console script): one subcommand per registry entry.

Adding a command: write ``add_parser(subparsers)`` in your module (create the parser
with ``subparsers.add_parser(name, help=...)`` and ``set_defaults(func=handler)``, where
``handler(args) -> int | None``), then list it in `COMMANDS`. Keep heavy imports inside
the handler: every command's parser is built on each invocation. Raise
:class:`CommandError` (or a :class:`~jupyter_copilot.sources.ModelError`) for expected
failures: they are printed as one line and exit with status 1, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence

# name -> "module:function" adding that subcommand's parser; imported when the CLI starts.
COMMANDS: dict[str, str] = {
    "models": "jupyter_copilot.cli:add_models_parser",
    "bench": "jupyter_copilot.bench.cli:add_parser",
    "hub-service": "jupyter_copilot.hub:add_parser",
}


class CommandError(Exception):
    """An expected failure: printed as `jupyter-copilot: error: <message>`, exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter copilot",
        description="A local, frugal, open coding assistant for JupyterLab.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for target in COMMANDS.values():
        module, _, function = target.partition(":")
        getattr(importlib.import_module(module), function)(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .sources import ModelError

    parser = build_parser()
    # A command may take settings it does not declare (`hub-service` passes
    # --CopilotHubService.<trait>=<value> to traitlets): it sets `extra_args=True`.
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "extra_args", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra_args = extra
    # What was asked, for the benchmarks' records (tests call main() with a list).
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except (CommandError, ModelError) as exc:
        print(f"jupyter-copilot: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("jupyter-copilot: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `jupyter copilot models --json | head` closed our stdout: not worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


# --- jupyter copilot models ------------------------------------------------------------


def add_models_parser(subparsers) -> None:
    models = subparsers.add_parser(
        "models",
        help="list, download and check models",
        description="List, download and check models. Files go to $JUPYTER_COPILOT_MODELS_DIR "
        "or, by default, the user's data directory.",
    )
    _add_json_flag(models)
    models.set_defaults(func=_models_list)
    actions = models.add_subparsers(dest="action", metavar="ACTION")

    listing = actions.add_parser("list", help="the catalogue and what is installed (default)")
    _add_json_flag(listing)
    listing.set_defaults(func=_models_list)

    pull = actions.add_parser("pull", help="download and verify a model (default: the default)")
    pull.add_argument("model", nargs="?", help="catalogue id or hf:owner/repo/file.gguf")
    pull.add_argument("--no-progress", action="store_true", help="no progress bar")
    pull.set_defaults(func=_models_pull)

    path = actions.add_parser("path", help="print where a model's file is (or will be)")
    path.add_argument("model", nargs="?", help="catalogue id, path or hf:… (default: the default)")
    path.set_defaults(func=_models_path)

    verify = actions.add_parser("verify", help="re-hash a downloaded model and check its sha256")
    verify.add_argument("model", nargs="?", help="catalogue id or path (default: the default)")
    verify.set_defaults(func=_models_verify)


def _add_json_flag(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: `models --json` and `models list --json` both work, neither hides the other.
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )


def _model_arg(args) -> str:
    from .models import DEFAULT_MODEL_ID

    return args.model or DEFAULT_MODEL_ID


def _models_list(args) -> int:
    from . import models, sources

    rows = []
    for spec in models.CATALOGUE:
        path = sources.models_dir() / spec.filename
        rows.append((spec, path, sources.state(spec, path)))
    if getattr(args, "json", False):
        out = []
        for spec, path, state in rows:
            card = spec.to_card(path).model_dump()
            card.update(
                default=spec.id == models.DEFAULT_MODEL_ID,
                installed=state != "missing",
                state=state,
                sources=[source.describe() for source in spec.sources],
            )
            out.append(card)
        print(json.dumps(out, indent=2))
        return 0
    header = ("ID", "PARAMS", "QUANT", "SIZE", "LICENCE", "OPEN W/C/D", "INSTALLED")
    table = [header]
    for spec, _path, state in rows:
        marker = "*" if spec.id == models.DEFAULT_MODEL_ID else " "
        table.append((
            f"{marker}{spec.id}",
            spec.parameters or "?",
            spec.quantization or "?",
            _human_size(spec.size_bytes),
            spec.licence or "?",
            "/".join(_yes_no(flag) for flag in (spec.open_weights, spec.open_code, spec.open_data)),
            _STATE_LABELS[state],
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    print(f"\n* default model. Directory: {sources.models_dir()}")
    print("OPEN W/C/D: weights / training code / training data published.")
    return 0


_STATE_LABELS = {
    "missing": "-",
    "verified": "yes",
    "unchecked": "yes (not yet verified)",
    "corrupt": "CORRUPT: pull again",
    "unverifiable": "yes (no checksum)",
}


def _yes_no(flag: bool | None) -> str:
    return {True: "yes", False: "no", None: "?"}[flag]


def _human_size(size: int | None) -> str:
    if size is None:
        return "?"
    if size >= 1024**3:
        return f"{size / 1024**3:.1f} GiB"
    return f"{size / 1024**2:.0f} MiB"


def _models_pull(args) -> int:
    from . import sources

    spec, path = sources.resolve(_model_arg(args))
    if not spec.sources:
        if path.is_file():
            print(path)
            return 0
        raise CommandError(f"{spec.id} has nowhere to be downloaded from")
    final = sources.pull(spec, path.parent, progress=not args.no_progress)
    note = "sha256 verified" if spec.sha256 else "no checksum known: not verified"
    print(f"{spec.id}: {note}", file=sys.stderr)
    print(final)
    return 0


def _models_path(args) -> int:
    from . import sources

    spec, path = sources.resolve(_model_arg(args))
    print(path)
    if not path.is_file():
        print(f"(not downloaded yet: jupyter copilot models pull {spec.id})", file=sys.stderr)
    return 0


def _models_verify(args) -> int:
    from . import sources

    spec, path = sources.resolve(_model_arg(args))
    digest = sources.verify(spec, path, progress=sys.stderr.isatty())
    if spec.sha256 is None:
        print(f"{spec.id}: sha256 {digest} (no checksum known: cannot be verified)")
    else:
        print(f"{spec.id}: ok, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
