"""A real llama.cpp `llama-server` for tests, benchmarks and load tests, on loopback.

- :func:`ensure_llama_server` builds `llama-server` once from the llama.cpp sources that
  the llama-cpp-python sdist on PyPI vendors (the only way to get llama.cpp source on a
  machine that reaches PyPI but not GitHub), into
  ``~/.cache/jupyter-copilot/llama-server-<version>/bin/llama-server``, and reuses it
  afterwards. A file lock makes parallel callers (pytest-xdist workers, a benchmark
  running beside the tests) wait for one build instead of starting several.
- :func:`start_llama_server` runs it on 127.0.0.1 with N parallel slots, waits until
  ``/health`` says the model is loaded, and kills it on exit (it is a context manager).

Set ``JUPYTER_COPILOT_LLAMA_SERVER=/path/to/llama-server`` to use an existing binary
instead of building one (e.g. a distribution package, or a CUDA build).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

# The llama-cpp-python release whose vendored llama.cpp we build: the same one the
# local engine uses, so the local and "campus" engines run the same kernels.
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
BINARY_ENV = "JUPYTER_COPILOT_LLAMA_SERVER"

# Why each option: a self-contained binary (static libs, so the cache dir can be copied
# or restored by CI), only the server target, no HTTPS (loopback only), and no web UI:
# this llama.cpp fetches prebuilt UI assets from Hugging Face unless told not to, and
# the machine has no internet. GGML_NATIVE tunes to this CPU (see `native=`).
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",  # the server lives under tools/ in this llama.cpp
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
)


class LlamaServerError(RuntimeError):
    """llama-server could not be built or did not come up (the message says why)."""


def default_cache_root() -> Path:
    import platformdirs

    # ~/.cache/jupyter-copilot on Linux (honours XDG_CACHE_HOME).
    return Path(platformdirs.user_cache_dir("jupyter-copilot"))


def ensure_llama_server(
    cache_dir: str | Path | None = None,
    *,
    version: str = LLAMA_CPP_PYTHON_VERSION,
    native: bool = True,
    jobs: int | None = None,
    quiet: bool = True,
) -> Path:
    """Path to a working `llama-server` binary, building it the first time.

    `cache_dir` is the build's own folder (default
    ``~/.cache/jupyter-copilot/llama-server-<version>``). The build takes ~10-15 minutes
    on 2 cores; later calls return at once. `native=False` builds for any x86-64 CPU
    (for a CI cache restored on other runners). The build log is kept next to the binary.
    """
    override = os.environ.get(BINARY_ENV)
    if override:
        path = Path(override).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise LlamaServerError(f"{BINARY_ENV}={override} is not an executable file")
        return path
    folder = Path(cache_dir) if cache_dir else default_cache_root() / f"llama-server-{version}"
    binary = folder / "bin" / "llama-server"
    if _runs(binary):
        return binary
    folder.mkdir(parents=True, exist_ok=True)
    with _file_lock(folder / ".build.lock"):
        if _runs(binary):  # another process built it while we waited for the lock
            return binary
        _build(folder, binary, version=version, native=native, jobs=jobs, quiet=quiet)
    return binary


def _runs(binary: Path) -> bool:
    if not binary.is_file():
        return False
    try:
        done = subprocess.run(
            [str(binary), "--version"], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # blocks while another process builds
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build(
    folder: Path, binary: Path, *, version: str, native: bool, jobs: int | None, quiet: bool
) -> None:
    log_path = folder / "build.log"
    with (
        tempfile.TemporaryDirectory(prefix="llama-server-build-", dir=folder) as tmp,
        open(log_path, "w") as log,
    ):
        work = Path(tmp)

        def run(cmd: Sequence[str], cwd: Path | None = None) -> None:
            print("$", " ".join(cmd), file=log, flush=True)
            if not quiet:
                print("jupyter-copilot: $", " ".join(cmd), file=sys.stderr)
            done = subprocess.run(
                list(cmd), cwd=cwd, stdout=log, stderr=subprocess.STDOUT, check=False
            )
            if done.returncode != 0:
                raise LlamaServerError(
                    f"building llama-server failed at `{' '.join(cmd[:3])} …`; see {log_path}"
                )

        run([
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            f"llama-cpp-python=={version}", "-d", str(work),
        ])  # fmt: skip
        sdist = next(work.glob("llama_cpp_python-*.tar.gz"), None)
        if sdist is None:
            raise LlamaServerError(f"pip downloaded no llama-cpp-python sdist; see {log_path}")
        source = _extract_vendored_llama_cpp(sdist, work / "src")
        build = work / "build"
        run(["cmake", "-S", str(source), "-B", str(build), *CMAKE_OPTIONS,
             f"-DGGML_NATIVE={'ON' if native else 'OFF'}"])  # fmt: skip
        run(["cmake", "--build", str(build), "--target", "llama-server",
             "-j", str(jobs or os.cpu_count() or 2)])  # fmt: skip
        built = build / "bin" / "llama-server"
        if not built.is_file():
            raise LlamaServerError(f"the build produced no {built}; see {log_path}")
        binary.parent.mkdir(parents=True, exist_ok=True)
        staging = binary.with_suffix(".partial")
        shutil.copy2(built, staging)
        os.replace(staging, binary)  # atomic: a binary under its final name is complete
    info = {
        "llama_cpp_python": version,
        "native": native,
        "built": time.time(),
        "cmake_options": [*CMAKE_OPTIONS, f"-DGGML_NATIVE={'ON' if native else 'OFF'}"],
    }
    (folder / "build-info.json").write_text(json.dumps(info, indent=2))
    if not _runs(binary):
        raise LlamaServerError(f"the built {binary} does not run; see {log_path}")


def _extract_vendored_llama_cpp(sdist: Path, dest: Path) -> Path:
    """Unpack only ``vendor/llama.cpp`` of the sdist (skipping the Python package)."""
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in m.name + "/"]
        if not members:
            raise LlamaServerError(f"{sdist.name} vendors no llama.cpp")
        tar.extractall(dest, members=members, filter="data")
    (source,) = dest.glob("*/vendor/llama.cpp")
    return source


# --- running it --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    """A running llama-server (see :func:`start_llama_server`)."""

    def __init__(
        self,
        binary: Path,
        model_path: str | Path,
        port: int,
        parallel: int,
        ctx: int,
        threads: int | None,
        extra_args: Sequence[str],
        log_path: Path | None,
        startup_timeout: float,
        cpus: frozenset[int] | None = None,
    ) -> None:
        self.binary = binary
        self.model_path = Path(model_path)
        self.parallel = parallel
        self.ctx = ctx
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_url = self.url + "/v1"  # what OpenAICompatEngine / OpenAI clients want
        self._own_log = log_path is None
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
        self.command = [
            str(binary), "--model", str(self.model_path),
            "--host", "127.0.0.1", "--port", str(self.port),  # loopback only, always
            "--parallel", str(parallel), "--ctx-size", str(ctx),
            "--metrics", "--slots", "--no-webui",
            *(["--threads", str(threads)] if threads else []),
            *extra_args,
        ]  # fmt: skip
        # Kept open for the life of the process (it writes there); closed in stop().
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Set before exec, so that every thread llama-server starts inherits it.
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
        try:
            self._wait_healthy(startup_timeout)
        except BaseException:
            self.stop()
            raise

    # -- lifecycle --------------------------------------------------------------------
    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LlamaServerError(
                    f"llama-server exited with {self.process.returncode}: {self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as reply:
                    if reply.status == 200:  # 503 while the model loads
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.1)
        raise LlamaServerError(f"llama-server not healthy after {timeout:.0f} s: {self.log_tail()}")

    def stop(self, grace: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        if self._own_log:
            with contextlib.suppress(OSError):
                self.log_path.unlink()

    def __enter__(self):  # -> LlamaServer
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_bytes()[-chars:].decode(errors="replace")
        except OSError:
            return ""

    # -- monitoring (for tests and load tests) ---------------------------------------
    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=10) as reply:
            return reply.read()

    def slots(self) -> list[dict]:
        """Per-slot state; ``is_processing`` tells whether a slot is generating."""
        return json.loads(self._get("/slots"))

    def busy_slots(self) -> int:
        return sum(1 for slot in self.slots() if slot.get("is_processing"))

    def metrics(self) -> dict[str, float]:
        """Prometheus metrics as {name: value} (e.g. ``llamacpp:requests_processing``)."""
        values: dict[str, float] = {}
        for line in self._get("/metrics").decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    values[name] = float(value)
        return values


def start_llama_server(
    model_path: str | Path,
    port: int = 0,
    parallel: int = 4,
    ctx: int = 8192,
    extra_args: Sequence[str] = (),
    *,
    threads: int | None = None,
    binary: Path | None = None,
    log_path: Path | None = None,
    startup_timeout: float = 180.0,
    cpus: frozenset[int] | None = None,
) -> LlamaServer:
    """Start llama-server on 127.0.0.1 and wait until its model is loaded.

    `port=0` picks a free port; `parallel` is the number of slots (concurrent
    sequences, continuously batched); `ctx` is the KV cache of all slots together
    (llama-server's ``--ctx-size``); `cpus` pins it to those CPUs (a benchmark's
    engine must not share its cores with the load it measures). Use it as a context manager, or call ``.stop()``::

        with start_llama_server(model, parallel=4) as server:
            engine = OpenAICompatEngine(OpenAICompatConfig(base_url=server.base_url))
    """
    return LlamaServer(
        binary=binary or ensure_llama_server(),
        model_path=model_path,
        port=port,
        parallel=parallel,
        ctx=ctx,
        threads=threads,
        extra_args=extra_args,
        log_path=log_path,
        startup_timeout=startup_timeout,
        cpus=cpus,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m jupyter_copilot.bench.llama_server [MODEL]`: build; with a model, serve it."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("model", nargs="?", help="GGUF file to serve on 127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--ctx", type=int, default=8192)
    args = parser.parse_args(argv)
    binary = ensure_llama_server(quiet=False)
    print(binary)
    if args.model:
        with start_llama_server(args.model, args.port, args.parallel, args.ctx) as server:
            print(f"serving {args.model} at {server.base_url}; Ctrl-C stops it", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                server.process.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
