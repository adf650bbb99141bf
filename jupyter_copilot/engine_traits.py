"""The remote engine's settings, documented once, used by both apps.

A student's server with ``engine = "openai_compat"`` and the campus service both
talk to an OpenAI-compatible engine (vLLM, llama-server, Ollama) with the same
settings: ``c.CopilotApp.engine_url`` / ``c.CopilotHubService.engine_url`` and so on.
"""

from __future__ import annotations

from traitlets import Float, HasTraits, Unicode

from .engines import RemoteEngineSettings


class RemoteEngineTraits(HasTraits):
    engine_url = Unicode(
        "",
        help="""Base URL of an OpenAI-compatible engine: vLLM (http://gpu-node:8000/v1),
        llama.cpp's llama-server (http://host:8080/v1), Ollama (http://host:11434/v1).
        Prompts go there: set it only to a server your institution controls.""",
    ).tag(config=True)

    engine_model = Unicode(
        "", help="Model name on the engine (vLLM's --served-model-name); empty: the first listed."
    ).tag(config=True)

    engine_api_key_file = Unicode(
        "",
        help="""File holding the engine's API key (vLLM --api-key, llama-server --api-key);
        preferred over an environment variable.""",
    ).tag(config=True)

    engine_api_key_env = Unicode(
        "", help="Environment variable holding the engine's API key (if not in a file)."
    ).tag(config=True)

    engine_timeout = Float(
        60.0, help="Seconds without data from the engine before a request fails."
    ).tag(config=True)

    def remote_engine_settings(self, **extra) -> RemoteEngineSettings:
        return RemoteEngineSettings(url=self.engine_url, model=self.engine_model,
                                    api_key_file=self.engine_api_key_file,
                                    api_key_env=self.engine_api_key_env,
                                    timeout=self.engine_timeout, **extra)  # fmt: skip
