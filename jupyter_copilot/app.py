"""The jupyter_server extension: every setting is a documented, configurable trait.

Set them in `jupyter_server_config.py` (``c.CopilotApp.model = "qwen2.5-coder-0.5b"``)
or on the command line (``jupyter lab --CopilotApp.model=/path/to/model.gguf``).
`jupyter copilot config` prints them all with their help.
"""

from __future__ import annotations

import logging
import os

from jupyter_server.extension.application import ExtensionApp
from traitlets import Enum, Float, Int, List, Unicode, default

from . import __version__
from .engines.base import EngineStatus
from .handlers import ROUTES
from .pipeline_traits import PipelineTraits
from .policy import FEATURES, Policy
from .schema import ModelCard, StatusReply
from .service import CompletionService
from .usage import UsageLedger


class CopilotApp(PipelineTraits, ExtensionApp):
    name = "jupyter_copilot"
    description = "Local code completions and explanations for JupyterLab"
    load_other_extensions = True

    # -- model and engine ------------------------------------------------------
    model = Unicode(
        "",
        help="""The model: a catalogue id (`jupyter copilot models` lists them), a path to
        a local .gguf file, or `hf:owner/repo/file.gguf`. Empty: the catalogue default
        (Qwen2.5-Coder-1.5B-Instruct Q4_K_M). Catalogue models must be pulled first:
        `jupyter copilot models pull`.""",
    ).tag(config=True)

    model_family = Unicode(
        "",
        help="""Prompt family override (qwen2.5-coder, starcoder2, deepseek-coder, codellama,
        plain). Empty: from the catalogue, or guessed from the GGUF file's vocabulary.""",
    ).tag(config=True)

    engine = Enum(
        ["llama_cpp", "openai_compat", "ctransformers"],
        default_value="llama_cpp",
        help="""Which engine generates text. `llama_cpp`: the local model in a child process
        (default; nothing leaves the machine). `openai_compat`: a campus server (vLLM,
        llama.cpp server, Ollama) or the JupyterHub copilot service. `ctransformers`:
        legacy GGML models only (unmaintained; loads no current GGUF).""",
    ).tag(config=True)

    n_ctx = Int(
        4096,
        help="Context window of the local model in tokens (the KV cache grows with it).",
    ).tag(config=True)

    threads = Int(
        0,
        help="CPU threads for the local model; 0 lets llama.cpp use the physical cores.",
    ).tag(config=True)

    n_batch = Int(512, help="Prompt evaluation batch size of the local model.").tag(config=True)

    max_queue = Int(
        8,
        help="Requests that may wait for the engine; beyond this, 429 (try again).",
    ).tag(config=True)

    load_timeout = Float(
        300.0, help="Seconds the local model may take to load before the engine is marked failed."
    ).tag(config=True)

    # -- remote engine (engine = "openai_compat") ---------------------------------------
    remote_url = Unicode(
        "",
        help="""Base URL of an OpenAI-compatible server, e.g. http://gpu-node:8000/v1 (vLLM),
        http://127.0.0.1:8080/v1 (llama.cpp server), http://127.0.0.1:11434/v1 (Ollama).
        Prompts go there: set it only to a server your institution controls.""",
    ).tag(config=True)

    remote_model = Unicode(
        "", help="Model name on the remote server; empty: the first one it lists."
    ).tag(config=True)

    remote_api_key_file = Unicode(
        "", help="File holding the remote server's API key (preferred over a value in config)."
    ).tag(config=True)

    remote_api_key_env = Unicode(
        "",
        help="""Environment variable holding the API key. Behind JupyterHub's copilot
        service use JUPYTERHUB_API_TOKEN: each student's own token, never a shared secret.""",
    ).tag(config=True)

    remote_timeout = Float(
        60.0, help="Seconds without data from the remote engine before a request fails."
    ).tag(config=True)

    # -- campus: the JupyterHub copilot service (docs/deployment.md) ---------------------
    hub_service_url = Unicode(
        "",
        help="""URL of the JupyterHub copilot service, e.g.
        http://hub.jhub.svc:10101/services/copilot/. When set, this server builds no
        prompt and loads no model: it relays requests to the service, authenticated
        with the student's own $JUPYTERHUB_API_TOKEN (its scopes must include
        access:services!service=copilot), and the service applies the course policy
        and quotas. `engine` and the model settings are then ignored.
        Default: $JUPYTER_COPILOT_HUB_SERVICE_URL (convenient in spawner environments).""",
    ).tag(config=True)

    # -- course policy (one server: the staff set these, not the student) -------------------------------------------------------
    completion_mode = Enum(
        ["on", "off"], "on", help="Completions for the users of this server (course policy)."
    ).tag(config=True)

    explain_cell_mode = Enum(
        ["on", "hint", "off"],
        "on",
        help="""'Explain this cell': `on` full explanation, `hint` guidance without the
        corrected code, `off` hidden. Set by staff; students cannot change it.""",
    ).tag(config=True)

    explain_error_mode = Enum(
        ["on", "hint", "off"],
        "on",
        help="'Explain this error': `on`, `hint` (guides toward the fix), or `off`.",
    ).tag(config=True)

    ask_mode = Enum(
        ["", "on", "hint", "off"],
        "",
        help="""Questions and follow-ups in the explain panel: `on`, `hint` (guidance
        without solution code, on every turn), `off`. Empty: the mode of explain_cell.""",
    ).tag(config=True)

    # -- course material (issue 13) -------------------------------------------------------
    course_material = List(
        Unicode(),
        [],
        help="""Folders of course material (notebooks, Markdown, HTML, PDF with pypdf) set
        by staff. Explanations and questions are grounded in it and cite it; the index
        follows changes to the files (no restart).""",
    ).tag(config=True)

    @default("model")
    def _default_model(self) -> str:
        return os.environ.get("JUPYTER_COPILOT_MODEL", "")

    @default("hub_service_url")
    def _default_hub_service_url(self) -> str:
        return os.environ.get("JUPYTER_COPILOT_HUB_SERVICE_URL", "")

    # -- wiring -------------------------------------------------------------------------
    def initialize_settings(self) -> None:
        from .engines import make_engine

        if self.hub_service_url:
            from .hub.client import connect_hub_service

            self.usage = UsageLedger()  # counted by the service; stays empty here
            connect_hub_service(self)  # engine, model card, policy, services: relays
            self.settings.update({"copilot": self})
            return
        self.policy = Policy(
            modes={
                "completion": self.completion_mode,
                "explain_cell": self.explain_cell_mode,
                "explain_error": self.explain_error_mode,
                "ask": self.ask_mode or self.explain_cell_mode,
            }
        )
        assert set(self.policy.modes) == set(FEATURES)
        self.usage = UsageLedger(factors=self.energy_factors())
        self.engine_instance, self.model_card, family, self.startup_error = make_engine(self)
        self.service = CompletionService(
            engine=self.engine_instance,
            family=family,
            card=self.model_card,
            settings=self.completion_settings(),
            policy=self.policy,
            usage=self.usage,
        )
        self.chat = self.make_chat_engine()  # (engine, card) or None
        chat_engine, chat_card = self.chat or (self.engine_instance, self.model_card)
        self.course = self.make_course_library(
            {"*": self.course_material}, student_prefix=self._course_prefix()
        )
        self.explainer = self.make_explainer(
            chat_engine, chat_card, self.policy, self.usage, course=self.course
        )
        self.settings.update({"copilot": self})
        if self.startup_error:
            self.log.error("jupyter-copilot: %s", self.startup_error)

    def _course_prefix(self) -> str:
        """Where the course folders' parent is in the student's file browser ("" if
        outside it: citations are then shown inline, not opened)."""
        if not self.course_material:
            return ""
        root = os.path.realpath(os.path.expanduser(self.serverapp.root_dir))
        parent = os.path.dirname(os.path.realpath(os.path.expanduser(self.course_material[0])))
        inside = parent == root or parent.startswith(root + os.sep)
        return os.path.relpath(parent, root).replace(os.sep, "/").strip(".") if inside else ""

    def initialize_handlers(self) -> None:
        self.handlers.extend(ROUTES)

    async def _start_jupyter_server_extension(self, serverapp) -> None:
        await self.ensure_engine_started()
        if getattr(self, "chat", None):
            await self.chat[0].start()

    async def ensure_engine_started(self) -> None:
        await self.engine_instance.start()

    async def stop_extension(self) -> None:
        await self.engine_instance.close()
        if getattr(self, "chat", None):
            await self.chat[0].close()

    # -- status ---------------------------------------------------------------------
    def status(self, user: str | None = None) -> StatusReply:
        engine: EngineStatus = self.engine_instance.status()
        card: ModelCard = self.model_card
        features = self.policy.features(user)
        features.update(
            {
                "engine": "hub_service" if self.hub_service_url else self.engine,
                "busy": engine.busy,
                "queue": engine.queue,
                "restarts": engine.restarts,
                "languages": ["en", "fr"],
            }
        )
        return StatusReply(
            state=engine.state,
            model=card,
            features=features,
            detail=engine.detail,
            version=__version__,
        )


logging.getLogger("jupyter_copilot").setLevel(logging.INFO)
main = launch_new_instance = CopilotApp.launch_instance
