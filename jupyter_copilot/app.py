"""The jupyter_server extension: every setting is a documented, configurable trait.

Set them in `jupyter_server_config.py` (``c.CopilotApp.model = "qwen2.5-coder-0.5b"``)
or on the command line (``jupyter lab --CopilotApp.model=/path/to/model.gguf``);
``jupyter server --help-all`` lists them with their help.
"""

from __future__ import annotations

import logging
import os

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Enum, Float, Int, List, Unicode, default

from .backend import LocalBackend, OpenAdmission
from .engine_traits import RemoteEngineTraits
from .engines import EngineChoice, RemoteEngineSettings
from .engines.llama_cpp import LlamaCppConfig
from .conflicts import warn_conflicts
from .handlers import ROUTES
from .pipeline_traits import PipelineTraits
from .policy import FEATURES, Policy
from .schema import ModelCard
from .service import CompletionService
from .usage import UsageLedger


class CopilotApp(PipelineTraits, RemoteEngineTraits, ExtensionApp):
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

    fit_threads = Bool(
        True,
        help="Local model: use fewer threads while other programs keep cores busy (the "
        "notebook's kernel running a cell first of all): llama.cpp's threads wait for each "
        "other after every step, so a thread that shares its core with the kernel slows "
        "the model many times over (docs/benchmarks.md). Read from /proc (Linux; inside "
        "a container with a cgroup v2 CPU limit, from that limit); at most `threads`, at "
        "least one.",
    ).tag(config=True)

    explain_after_notebook = Bool(
        True,
        help="Local model: explain a cell or an error after the notebook as the "
        "completions' prompt shows it, in their cache, rather than in a chat of its own "
        "that evaluates the earlier cells again: the first words came 1.7-4x sooner on "
        "the benchmark (docs/benchmarks.md). The cell is still quoted in the question; "
        "the same explanation asked twice no longer has a cache of its own.",
    ).tag(config=True)

    n_batch = Int(512, help="Prompt evaluation batch size of the local model.").tag(config=True)

    cache_reuse_tokens = Int(
        32,
        help="Local model: runs of at least this many cached prompt tokens that reappear "
        "later in a new prompt (the window of earlier cells slid, a block before the "
        "current cell went away) are moved in the KV cache instead of evaluated again; "
        "0 reuses only the common prefix. A moved run keeps the attention it computed "
        "over the text that went away (an approximation, as llama-server's "
        "--cache-reuse); on the notebook replay it left 98 of 99 completions identical "
        "and exact match unchanged (docs/benchmarks.md).",
    ).tag(config=True)

    max_queue = Int(
        8,
        help="Requests that may wait for the engine; beyond this, 429 (try again).",
    ).tag(config=True)

    load_timeout = Float(
        300.0, help="Seconds the local model may take to load before the engine is marked failed."
    ).tag(config=True)

    # -- remote engine (engine = "openai_compat"): the engine_* settings of
    # RemoteEngineTraits. Older names, still read when the new one is not set:
    remote_url = Unicode("", help="Older name of `engine_url`.").tag(config=True)
    remote_model = Unicode("", help="Older name of `engine_model`.").tag(config=True)
    remote_api_key_file = Unicode("", help="Older name of `engine_api_key_file`.").tag(config=True)
    remote_api_key_env = Unicode(
        "",
        help="""Older name of `engine_api_key_env`. Behind JupyterHub's copilot service
        (`hub_service_url`) it names the student's token variable (default
        JUPYTERHUB_API_TOKEN: each student's own token, never a shared secret).""",
    ).tag(config=True)
    remote_timeout = Float(0.0, help="Older name of `engine_timeout` (0: unset).").tag(config=True)

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
        help="""'Explain this error': `on`, `hint` (guides toward the fix), or `off`.
        Never more open than explain_cell_mode (an invented error must not get around
        it): explain_cell_mode `off` turns this off too.""",
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

    # -- wiring: the backend is built here, once; nothing replaces it afterwards ---------
    def initialize_settings(self) -> None:
        self.admission = OpenAdmission()  # one's own server: no quotas
        if self.hub_service_url:
            from .hub.client import HubRelayBackend

            self.backend = HubRelayBackend.from_app(self)
        else:
            self.backend = self._local_backend()
            if self.backend.startup_error:
                self.log.error("jupyter-copilot: %s", self.backend.startup_error)
        self.settings.update({"copilot": self})
        # The other `jupyter-copilot` on PyPI installs the same files: say so (conflicts.py).
        warn_conflicts(self.log)

    def _local_backend(self) -> LocalBackend:
        from .engines import make_engine

        policy = Policy(
            modes={
                "completion": self.completion_mode,
                "explain_cell": self.explain_cell_mode,
                "explain_error": self.explain_error_mode,
                "ask": self.ask_mode or self.explain_cell_mode,
            }
        )
        assert set(policy.modes) == set(FEATURES)
        usage = UsageLedger(factors=self.energy_factors())
        built = make_engine(self.engine_choice())
        completions = CompletionService(engine=built.engine, family=built.family, card=built.card,
                                        settings=self.completion_settings(), policy=policy,
                                        usage=usage)  # fmt: skip
        # Explanations and questions: a separate chat model if one is set (course.md).
        chat = self.make_chat_engine()  # (engine, card) or None
        chat_engine, chat_card = chat or (built.engine, built.card)
        course = self.make_course_library({"*": self.course_material},
                                          student_prefix=self._course_prefix())  # fmt: skip
        # The completions' own engine: a cell is explained after the notebook they keep
        # in its cache (a separate chat engine has none of it).
        shared = self.explain_after_notebook and chat is None
        explainer = self.make_explainer(chat_engine, chat_card, policy, usage, course=course,
                                        notebook_document=completions.notebook_document
                                        if shared else None)  # fmt: skip
        return LocalBackend(built.engine, built.card, policy, usage, completions, explainer,
                            engine_label=self.engine, startup_error=built.error,
                            chat_engine=chat[0] if chat else None)  # fmt: skip

    def engine_choice(self) -> EngineChoice:
        return EngineChoice(
            engine=self.engine, model=self.model, model_family=self.model_family,
            local=LlamaCppConfig(model_path="", n_ctx=self.n_ctx, n_batch=self.n_batch,
                                 threads=self.threads, max_queue=self.max_queue,
                                 load_timeout=self.load_timeout,
                                 cache_reuse_tokens=self.cache_reuse_tokens,
                                 fit_threads=self.fit_threads),
            remote=self.remote_engine_settings(),
        )  # fmt: skip

    def remote_engine_settings(self, **extra) -> RemoteEngineSettings:
        settings = super().remote_engine_settings(**extra)
        for name in ("url", "model", "api_key_file", "api_key_env", "timeout"):
            older = getattr(self, f"remote_{name}")
            unset = self.trait_defaults(f"engine_{name}")
            if older and getattr(settings, name) == unset:
                setattr(settings, name, older)
        return settings

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
        from .hub.console_relay import CONSOLE_ROUTES  # before ROUTES' catch-all

        self.handlers.extend([*CONSOLE_ROUTES, *ROUTES])

    async def _start_jupyter_server_extension(self, serverapp) -> None:
        self.apply_to_http_server(serverapp.http_server)  # idle timeout (limits.py)
        await self.backend.start()

    async def stop_extension(self) -> None:
        await self.backend.close()

    # -- for tests and scripts: what the backend holds ----------------------------------
    @property
    def engine_instance(self):
        """The local engine, or the relay's client to the campus service."""
        return getattr(self.backend, "engine", None) or self.backend.client

    @property
    def model_card(self) -> ModelCard:
        return self.backend.card

    @property
    def usage(self) -> UsageLedger | None:
        """This server's usage counters (None behind the campus service: it counts)."""
        return getattr(self.backend, "usage_ledger", None)


logging.getLogger("jupyter_copilot").setLevel(logging.INFO)
main = launch_new_instance = CopilotApp.launch_instance
