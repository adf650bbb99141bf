"""The other `jupyter-copilot` distribution on PyPI installs our files: detected from
its metadata (a fake dist-info in a temporary site directory), with a clear message."""

import logging

from jupyter_copilot.conflicts import DISTRIBUTION, find_conflicts, warn_conflicts

OTHER_RECORD = """\
jupyter_copilot/__init__.py,sha256=x,10
jupyter_copilot/handlers.py,sha256=x,10
../../../etc/jupyter/jupyter_server_config.d/jupyter_copilot.json,sha256=x,10
jupyter_copilot-0.1.5.dist-info/METADATA,,
"""


def fake_dist(site, name, version, summary, record, top_level=None):
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.4\nName: {name}\nVersion: {version}\nSummary: {summary}\n"
    )
    (info / "RECORD").write_text(record)
    if top_level is not None:
        (info / "top_level.txt").write_text(top_level)


def test_the_other_jupyter_copilot_is_found_with_what_it_shares(tmp_path):
    fake_dist(tmp_path, "jupyter_copilot", "0.1.5", "GitHub Copilot for Jupyter", OTHER_RECORD)
    [conflict] = find_conflicts([str(tmp_path)])
    assert (conflict.name, conflict.version) == ("jupyter_copilot", "0.1.5")
    assert conflict.shared == ("jupyter_copilot", "jupyter_server_config.d/jupyter_copilot.json")
    message = conflict.message()
    assert "GitHub Copilot for Jupyter" in message
    assert "import package `jupyter_copilot`" in message
    assert "pip uninstall jupyter_copilot" in message
    assert DISTRIBUTION in message


def test_ours_and_unrelated_distributions_are_not_conflicts(tmp_path):
    ours = "jupyter_copilot/__init__.py,,\n"
    fake_dist(tmp_path, DISTRIBUTION, "0.1.0", "ours", ours)
    fake_dist(tmp_path, "requests", "2.0", "HTTP", "requests/__init__.py,,\n")
    assert find_conflicts([str(tmp_path)]) == []


def test_a_package_declared_only_in_top_level_counts(tmp_path):
    fake_dist(tmp_path, "jupyter-copilot", "0.1.5", "GitHub Copilot for Jupyter", "", "jupyter_copilot\n")
    [conflict] = find_conflicts([str(tmp_path)])
    assert conflict.shared == ("jupyter_copilot",)


def test_start_up_logs_one_error_per_conflict(tmp_path, caplog):
    fake_dist(tmp_path, "jupyter_copilot", "0.1.5", "GitHub Copilot for Jupyter", OTHER_RECORD)
    log = logging.getLogger("test-conflicts")
    with caplog.at_level(logging.ERROR, logger="test-conflicts"):
        warn_conflicts(log, [str(tmp_path)])
    assert len(caplog.records) == 1
    assert "overwrite each other's files" in caplog.records[0].getMessage()
