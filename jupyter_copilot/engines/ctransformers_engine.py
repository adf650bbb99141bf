"""Legacy engine: ctransformers, for old GGML models only.

ctransformers is unmaintained (last release 2023) and loads no current GGUF file, so it
is never the default and is only installed with `pip install jupyterlab-campus-copilot[legacy]`.
It runs in the same supervised child process as llama.cpp (`llama_worker.py
--backend ctransformers`): the Jupyter server never loads a model itself.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from .llama_cpp import LlamaCppConfig, LlamaCppEngine

if TYPE_CHECKING:
    from .llama_cpp import LlamaCppConfig


def make_ctransformers_engine(app: "LlamaCppConfig", model_path: str) -> LlamaCppEngine:
    if importlib.util.find_spec("ctransformers") is None:
        raise RuntimeError(
            "engine 'ctransformers' needs the legacy extra: pip install 'jupyterlab-campus-copilot[legacy]' "
            "(unmaintained; prefer the default llama_cpp engine, which loads current GGUF files)"
        )
    return LlamaCppEngine(
        LlamaCppConfig(
            model_path=model_path,
            n_ctx=app.n_ctx,
            threads=app.threads,
            max_queue=app.max_queue,
            load_timeout=app.load_timeout,
            backend="ctransformers",
        )
    )
