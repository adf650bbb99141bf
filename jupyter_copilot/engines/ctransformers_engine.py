"""Legacy engine: ctransformers, for old GGML models only.

ctransformers is unmaintained (last release 2023) and loads no current GGUF file, so it
is never the default and is only installed with `pip install jupyterlab-campus-copilot[legacy]`.
It runs in the same supervised child process as llama.cpp, with its own small
backend (`worker_ctransformers.py`, chosen by `llama_worker.py --backend
ctransformers`): the Jupyter server never loads a model itself.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from .llama_cpp import ChildProcessEngine, WorkerConfig

if TYPE_CHECKING:
    from .llama_cpp import LlamaCppConfig


class CTransformersEngine(ChildProcessEngine):
    """ctransformers in the supervised child process."""

    name = "ctransformers"
    backend = "ctransformers"


def make_ctransformers_engine(app: "LlamaCppConfig", model_path: str) -> CTransformersEngine:
    if importlib.util.find_spec("ctransformers") is None:
        raise RuntimeError(
            "engine 'ctransformers' needs the legacy extra: pip install 'jupyterlab-campus-copilot[legacy]' "
            "(unmaintained; prefer the default llama_cpp engine, which loads current GGUF files)"
        )
    return CTransformersEngine(
        WorkerConfig(
            model_path=model_path,
            n_ctx=app.n_ctx,
            threads=app.threads,
            max_queue=app.max_queue,
            load_timeout=app.load_timeout,
        )
    )
