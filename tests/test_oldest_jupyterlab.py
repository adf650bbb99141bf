"""The oldest supported JupyterLab (4.1) is declared the same way everywhere.

What JupyterLab checks when it loads the prebuilt extension is the module-federation
`requiredVersion` of each shared package. The builder takes it from the JupyterLab
it builds with (4.6: `^4.6.x`) unless package.json's `jupyterlab.sharedPackages`
says otherwise; so each dependency's range is written twice in package.json, and
these tests keep the two, pyproject's `jupyterlab>=` and the oldest-version script
in agreement. The browser suite on 4.1 itself is scripts/test-oldest-jupyterlab.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = json.loads((ROOT / "labextension/package.json").read_text())
BUILT = ROOT / "jupyter_copilot/labextension"

# What JupyterLab 4.1.0 ships of the packages we use (their own numbering: apputils
# runs one minor ahead, coreutils and services have their own majors).
JUPYTERLAB_4_1 = {
    "@jupyterlab/apputils": (4, 2, 0),
    "@jupyterlab/coreutils": (6, 1, 0),
    "@jupyterlab/services": (7, 1, 0),
    "@lumino/coreutils": (2, 1, 2),
    "@lumino/disposable": (2, 1, 2),
    "@lumino/polling": (2, 1, 2),
    "@lumino/signaling": (2, 1, 2),
    "@lumino/widgets": (2, 3, 1),
}


def lower_bound(npm_range: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"\^(\d+)\.(\d+)\.(\d+)", npm_range)
    assert match, f"expected a caret range, got {npm_range!r}"
    return tuple(int(part) for part in match.groups())


def jupyterlab_dependencies() -> dict[str, str]:
    return {
        name: spec
        for name, spec in PACKAGE["dependencies"].items()
        if name.startswith(("@jupyterlab/", "@lumino/"))
    }


def test_every_jupyterlab_dependency_accepts_jupyterlab_4_1():
    for name, spec in jupyterlab_dependencies().items():
        oldest = JUPYTERLAB_4_1.get(name, (4, 1, 0))
        bound = lower_bound(spec)
        assert bound <= oldest, f"{name} {spec} refuses JupyterLab 4.1's {oldest}"
        assert bound[0] == oldest[0], f"{name} {spec}: another major than JupyterLab 4's"


def test_shared_packages_require_what_the_dependencies_say():
    shared = PACKAGE["jupyterlab"]["sharedPackages"]
    assert set(shared) == set(jupyterlab_dependencies())
    for name, config in shared.items():
        # Never bundle a copy of JupyterLab: the host's packages are the ones used.
        assert config == {"bundled": False, "requiredVersion": PACKAGE["dependencies"][name]}


def test_python_requirement_and_the_oldest_script_name_the_same_version():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lab_extra = pyproject["project"]["optional-dependencies"]["lab"]
    (jupyterlab,) = [spec for spec in lab_extra if spec.startswith("jupyterlab>")]
    assert jupyterlab.startswith("jupyterlab>=4.1,")
    script = (ROOT / "scripts/test-oldest-jupyterlab").read_text()
    assert 'OLDEST="${JUPYTERLAB_OLDEST:-4.1.' in script
    assert lower_bound(PACKAGE["dependencies"]["@jupyterlab/application"])[:2] == (4, 1)


def test_the_built_extension_requires_no_newer_jupyterlab():
    entries = list((BUILT / "static").glob("remoteEntry.*.js")) if BUILT.is_dir() else []
    if not entries:
        pytest.skip("the labextension is not built (jlpm build)")
    required = dict(
        re.findall(r'"(@(?:jupyterlab|lumino)/[a-z-]+)", import: \w+, requiredVersion: "([^"]+)"',
                   entries[0].read_text())
    )
    assert required, "no shared JupyterLab package found in remoteEntry"
    for name, spec in required.items():
        assert spec == PACKAGE["dependencies"][name], name
