"""Engines and the one place that picks one from the app's settings."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, Optional

from ..prompts import FimFamily, family
from ..schema import ModelCard
from .base import CancelToken, Engine, EngineError, EngineStatus, GenerationParams, GenerationStats

if TYPE_CHECKING:
    from ..app import CopilotApp


class UnavailableEngine(Engine):
    """Stands in when no engine can run (model not pulled, llama-cpp-python missing):
    the server still starts, `/copilot/status` says what is wrong and how to fix it."""

    name = "unavailable"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def status(self) -> EngineStatus:
        return EngineStatus(state="error", detail=self.reason)

    async def _fail(self) -> AsyncIterator[str]:
        raise EngineError(self.reason)
        yield ""  # pragma: no cover - makes this an async generator

    def complete(self, prompt, params, cancel, stats=None):
        return self._fail()

    def chat(self, messages, params, cancel, stats=None):
        return self._fail()


def make_engine(app: "CopilotApp") -> tuple[Engine, ModelCard, FimFamily, Optional[str]]:
    """Build the configured engine. Never raises: problems become an engine in the
    "error" state whose detail tells the user what to do."""
    from ..models import DEFAULT_MODEL_ID
    from ..sources import resolve

    model = app.model or DEFAULT_MODEL_ID
    try:
        spec, path = resolve(model)
    except Exception as exc:  # unknown id, unreadable file
        card = ModelCard(id=model, name=model, family=app.model_family or "plain")
        return UnavailableEngine(str(exc)), card, family("plain"), str(exc)
    fam = family(app.model_family or spec.family)
    card = spec.to_card(str(path))
    card.engine = app.engine

    if app.engine == "llama_cpp":
        if importlib.util.find_spec("llama_cpp") is None:
            reason = "llama-cpp-python is not installed: pip install 'jupyterlab-campus-copilot[local]'"
            return UnavailableEngine(reason), card, fam, reason
        if not Path(path).is_file():
            reason = f"model file not found: {path}. Run: jupyter copilot models pull {spec.id}"
            return UnavailableEngine(reason), card, fam, reason
        from .llama_cpp import LlamaCppConfig, LlamaCppEngine

        engine = LlamaCppEngine(
            LlamaCppConfig(
                model_path=str(path),
                n_ctx=app.n_ctx,
                n_batch=app.n_batch,
                threads=app.threads,
                max_queue=app.max_queue,
                load_timeout=app.load_timeout,
            )
        )
        return engine, card, fam, None

    if app.engine == "openai_compat":
        from .openai_compat import OpenAICompatConfig, OpenAICompatEngine, read_api_key

        if not app.remote_url:
            reason = "engine 'openai_compat' needs CopilotApp.remote_url"
            return UnavailableEngine(reason), card, fam, reason
        try:
            key = read_api_key(key_file=app.remote_api_key_file, key_env=app.remote_api_key_env)
        except OSError as exc:
            reason = f"cannot read the API key file: {exc}"
            return UnavailableEngine(reason), card, fam, reason
        engine = OpenAICompatEngine(
            OpenAICompatConfig(
                base_url=app.remote_url,
                model=app.remote_model,
                api_key=key,
                read_timeout=app.remote_timeout,
            )
        )
        card.path = None  # the weights live on the remote server
        return engine, card, fam, None

    if app.engine == "ctransformers":
        from .ctransformers_engine import make_ctransformers_engine

        try:
            return make_ctransformers_engine(app, str(path)), card, fam, None
        except Exception as exc:
            reason = str(exc)
            return UnavailableEngine(reason), card, fam, reason

    reason = f"engine {app.engine!r} is not available in this version"
    return UnavailableEngine(reason), card, fam, reason


__all__ = [
    "CancelToken",
    "Engine",
    "EngineError",
    "EngineStatus",
    "GenerationParams",
    "GenerationStats",
    "UnavailableEngine",
    "make_engine",
]
