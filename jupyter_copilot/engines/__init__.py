"""Engines and the one place that picks one from the app's settings."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, NamedTuple, Optional

from ..prompts import FimFamily, family
from ..schema import ModelCard
from .base import CancelToken, Engine, EngineError, EngineStatus, GenerationParams, GenerationStats

if TYPE_CHECKING:
    from .llama_cpp import LlamaCppConfig
    from .openai_compat import OpenAICompatConfig


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


@dataclass
class RemoteEngineSettings:
    """An OpenAI-compatible server (engine = openai_compat)."""

    url: str = ""
    model: str = ""
    api_key_file: str = ""
    api_key_env: str = ""
    timeout: float = 60.0
    max_connections: int = 64

    def config(self) -> "OpenAICompatConfig":
        """The engine's config; reads the API key (OSError if its file is unreadable)."""
        from .openai_compat import OpenAICompatConfig, read_api_key

        key = read_api_key(key_file=self.api_key_file, key_env=self.api_key_env)
        return OpenAICompatConfig(base_url=self.url, model=self.model, api_key=key,
                                  read_timeout=self.timeout,
                                  max_connections=self.max_connections)  # fmt: skip


@dataclass
class EngineChoice:
    engine: str = "llama_cpp"
    model: str = ""  # catalogue id, .gguf path or hf:...; empty: the catalogue default
    model_family: str = ""
    # The local child process's settings (model_path is filled in from `model`).
    local: "LlamaCppConfig" = field(default_factory=lambda: _llama_config(model_path=""))
    remote: RemoteEngineSettings = field(default_factory=RemoteEngineSettings)


class BuiltEngine(NamedTuple):
    engine: Engine
    card: ModelCard
    family: FimFamily
    error: Optional[str] = None  # why the engine is unavailable (also its status detail)


def _llama_config(**settings) -> "LlamaCppConfig":
    from .llama_cpp import LlamaCppConfig  # imports nothing heavy: llama.cpp runs in a child

    return LlamaCppConfig(**settings)


def _unavailable(reason: str, card: ModelCard, fam: FimFamily) -> BuiltEngine:
    return BuiltEngine(UnavailableEngine(reason), card, fam, reason)


def make_engine(choice: EngineChoice) -> BuiltEngine:
    """Build the configured engine. Never raises: problems become an engine in the
    "error" state whose detail tells the user what to do."""
    from ..models import DEFAULT_MODEL_ID
    from ..sources import resolve

    model = choice.model or DEFAULT_MODEL_ID
    try:
        spec, path = resolve(model)
    except Exception as exc:  # unknown id, unreadable file
        card = ModelCard(id=model, name=model, family=choice.model_family or "plain")
        return _unavailable(str(exc), card, family("plain"))
    fam = family(choice.model_family or spec.family)
    card = spec.to_card(str(path))
    card.engine = choice.engine
    local = choice.local

    if choice.engine == "llama_cpp":
        if importlib.util.find_spec("llama_cpp") is None:
            reason = "llama-cpp-python is not installed: pip install 'jupyterlab-campus-copilot[local]'"
            return _unavailable(reason, card, fam)
        if not Path(path).is_file():
            reason = f"model file not found: {path}. Run: jupyter copilot models pull {spec.id}"
            return _unavailable(reason, card, fam)
        from .llama_cpp import LlamaCppEngine

        return BuiltEngine(LlamaCppEngine(replace(local, model_path=str(path))), card, fam)

    if choice.engine == "ctransformers":
        from .ctransformers_engine import make_ctransformers_engine

        try:
            return BuiltEngine(make_ctransformers_engine(local, str(path)), card, fam)
        except Exception as exc:
            return _unavailable(str(exc), card, fam)

    if choice.engine == "openai_compat":
        from .openai_compat import OpenAICompatEngine

        if not choice.remote.url:
            return _unavailable("engine 'openai_compat' needs CopilotApp.remote_url", card, fam)
        try:
            config = choice.remote.config()
        except OSError as exc:
            return _unavailable(f"cannot read the API key file: {exc}", card, fam)
        card.path = None  # the weights live on the remote server
        return BuiltEngine(OpenAICompatEngine(config), card, fam)

    return _unavailable(f"engine {choice.engine!r} is not available in this version", card, fam)


__all__ = [
    "CancelToken",
    "Engine",
    "EngineError",
    "EngineStatus",
    "GenerationParams",
    "GenerationStats",
    "BuiltEngine",
    "EngineChoice",
    "RemoteEngineSettings",
    "UnavailableEngine",
    "make_engine",
]
