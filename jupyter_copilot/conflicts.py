"""Other installed distributions that fight over our files.

This project is published as ``jupyterlab-campus-copilot`` (the name
``jupyter-copilot`` on PyPI belongs to another project, "GitHub Copilot for
Jupyter"). Both install the import package ``jupyter_copilot`` and the file
``etc/jupyter/jupyter_server_config.d/jupyter_copilot.json``, and pip does not warn
about files that two distributions share: the one installed last overwrites the
other's modules, and uninstalling either deletes files the other needs. Nothing
can stop that at install time (a wheel runs no code), so the server says it at
start-up, clearly, with what to do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata

#: Our distribution name on PyPI.
DISTRIBUTION = "jupyterlab-campus-copilot"
#: What we install that another distribution may install too.
IMPORT_PACKAGE = "jupyter_copilot"
SERVER_CONFIG = "jupyter_server_config.d/jupyter_copilot.json"


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Conflict:
    """Another distribution that installs some of our files."""

    name: str
    version: str
    summary: str
    location: str
    #: Which of our files it installs too (the import package, the server config).
    shared: tuple[str, ...]

    def message(self) -> str:
        what = " and ".join(
            f"the import package `{IMPORT_PACKAGE}`" if item == IMPORT_PACKAGE
            else f"`{SERVER_CONFIG}`" for item in self.shared
        )
        return (
            f"another distribution, {self.name} {self.version} ({self.summary or 'no summary'}), "
            f"is installed in {self.location} and installs {what} too. The two overwrite "
            f"each other's files: whichever was installed last is what runs, and "
            f"uninstalling either breaks the other. Keep one: `pip uninstall {self.name}`, "
            f"then `pip install --force-reinstall {DISTRIBUTION}`."
        )


def _shared_files(dist: metadata.Distribution) -> tuple[str, ...]:
    shared: list[str] = []
    files = dist.files or []
    paths = [str(path).replace("\\", "/") for path in files]
    top_level = (dist.read_text("top_level.txt") or "").split()
    if IMPORT_PACKAGE in top_level or any(p.split("/", 1)[0] == IMPORT_PACKAGE for p in paths):
        shared.append(IMPORT_PACKAGE)
    if any(path.endswith(SERVER_CONFIG) for path in paths):
        shared.append(SERVER_CONFIG)
    return tuple(shared)


def find_conflicts(path: Iterable[str] | None = None) -> list[Conflict]:
    """Distributions other than ours that install ``jupyter_copilot`` or its server
    config, looked for on ``path`` (``sys.path`` by default). Reads only the
    distributions' metadata (their RECORD), never imports them."""
    kwargs = {"path": list(path)} if path is not None else {}
    conflicts: list[Conflict] = []
    seen: set[tuple[str, str]] = set()
    for dist in metadata.distributions(**kwargs):
        name = dist.metadata.get("Name") or ""
        if not name or _normalize(name) == DISTRIBUTION:
            continue
        shared = _shared_files(dist)
        if not shared:
            continue
        location = str(dist.locate_file(""))
        if (name, location) in seen:
            continue
        seen.add((name, location))
        conflicts.append(
            Conflict(
                name=name,
                version=dist.version or "?",
                summary=dist.metadata.get("Summary") or "",
                location=location,
                shared=shared,
            )
        )
    return conflicts


def warn_conflicts(log, path: Iterable[str] | None = None) -> list[Conflict]:
    """Log one error per conflicting distribution (at server start-up)."""
    conflicts = find_conflicts(path)
    for conflict in conflicts:
        log.error("jupyter-copilot (%s): %s", DISTRIBUTION, conflict.message())
    return conflicts
