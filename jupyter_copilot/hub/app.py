"""`jupyter copilot hub-service`: the campus copilot, a JupyterHub-managed service.

Why the service runs the whole pipeline (prompt, policy, post-processing) instead of
forwarding raw OpenAI requests: students have their own token and a shell, so anything
the service accepts, they can send by hand. A raw ``/v1/chat/completions`` proxy would
let them skip the course's hint mode (the hint is in the prompt the server builds) and
use the engine as a general chatbot during an exam window that only switched
"completion" off. Accepting only the copilot API (cell, cursor, context) keeps policy
enforcement on the server and gives exact per-student token accounting. The cost —
prompt building and filtering here — is milliseconds of CPU per request.

Every setting is a trait: ``c.CopilotHubService.<name>`` in the config file, or
``--CopilotHubService.<name>=<value>``; `jupyter copilot hub-service --help-all`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import Bool, Dict, Float, Int, List, Unicode, default
from traitlets.config import Application

from .. import __version__
from ..engines.openai_compat import OpenAICompatConfig, OpenAICompatEngine, read_api_key
from ..pipeline_traits import PipelineTraits
from ..policy import CoursePolicy, CoursePolicyDocument, PolicyFile
from ..prompts import family
from ..schema import ModelCard, StatusReply
from ..service import CompletionService
from ..usage import UsageLedger
from .auth import HubUser, UserDirectory, make_hub_auth
from .quotas import QuotaExceeded, Quotas, QuotaSettings

log = logging.getLogger("jupyter_copilot.hub")


class ChargingLedger(UsageLedger):
    """Usage counters that also charge each request's tokens to the student's daily
    quota: every path (finished, cancelled, failed) goes through `record`."""

    quotas: Quotas | None = None

    def record(self, user: str, feature: str, **counts) -> None:
        super().record(user, feature, **counts)
        if self.quotas is not None:
            # What costs engine work: prompt tokens not served from its cache, plus output.
            computed = counts.get("prompt_tokens", 0) - counts.get("cached_tokens", 0)
            self.quotas.charge(user, max(0, computed) + counts.get("generated_tokens", 0))


class CopilotHubService(PipelineTraits, Application):
    name = "jupyter-copilot-hub-service"
    description = "The JupyterHub copilot service: per-student auth, course policy, quotas."
    version = __version__

    config_file = Unicode(
        "", help="Python config file of c.CopilotHubService.* settings (loaded at start)."
    ).tag(config=True)

    # -- where it listens (JupyterHub sets these for a managed service) -------------------
    service_name = Unicode(
        help="""Name of the service in JupyterHub (c.JupyterHub.services). Tokens must
        carry `access:services!service=<name>`. Default: $JUPYTERHUB_SERVICE_NAME or copilot.""",
    ).tag(config=True)

    url = Unicode(
        help="""Where the service listens, e.g. http://127.0.0.1:10101 (the `url` of the
        service in JupyterHub's config). Default: $JUPYTERHUB_SERVICE_URL.""",
    ).tag(config=True)

    base_url = Unicode(
        help="""URL prefix of every route (/services/<name>/ behind JupyterHub's proxy).
        Default: $JUPYTERHUB_SERVICE_PREFIX.""",
    ).tag(config=True)

    # -- JupyterHub --------------------------------------------------------------------------
    hub_api_url = Unicode(
        help="JupyterHub's API URL, e.g. http://127.0.0.1:8081/hub/api. Default: $JUPYTERHUB_API_URL."
    ).tag(config=True)

    hub_api_token_file = Unicode(
        "",
        help="""File holding the service's own hub API token (an external service).
        A hub-managed service gets it in $JUPYTERHUB_API_TOKEN: leave this empty.""",
    ).tag(config=True)

    hub_auth_cache_seconds = Int(
        60,
        help="""Seconds a token's owner and groups are remembered before asking the Hub
        again. Longer: fewer Hub requests; shorter: revoked tokens and group changes
        apply sooner.""",
    ).tag(config=True)

    staff_groups = List(
        Unicode(),
        ["staff"],
        help="""JupyterHub groups whose members (with hub admins) may read everyone's
        usage, change the course policy and read /metrics.""",
    ).tag(config=True)

    # -- the engine -------------------------------------------------------------------------
    engine_url = Unicode(
        "http://127.0.0.1:8080/v1",
        help="""OpenAI-compatible engine: vLLM (http://gpu-node:8000/v1), llama.cpp's
        llama-server (http://host:8080/v1), Ollama (http://host:11434/v1).""",
    ).tag(config=True)

    engine_model = Unicode(
        "", help="Model name on the engine (vLLM's --served-model-name); empty: the first listed."
    ).tag(config=True)

    engine_api_key_file = Unicode(
        "", help="File holding the engine's API key (vLLM --api-key, llama-server --api-key)."
    ).tag(config=True)

    engine_api_key_env = Unicode(
        "", help="Environment variable holding the engine's API key (if not in a file)."
    ).tag(config=True)

    engine_timeout = Float(
        60.0, help="Seconds without data from the engine before a request fails."
    ).tag(config=True)

    engine_max_in_flight = Int(
        64,
        help="""Requests the service sends to the engine at once, all students together.
        Beyond: 429 at once (a completion that waits in a queue is stale by the time it
        comes). About 2-4x the engine's parallel slots (llama-server --parallel, vLLM
        --max-num-seqs).""",
    ).tag(config=True)

    model = Unicode(
        "qwen2.5-coder-1.5b",
        help="""Catalogue id of the served model (`jupyter copilot models`), for its
        prompt format and model card. For a model outside the catalogue, give any name
        and set `model_family`.""",
    ).tag(config=True)

    model_family = Unicode(
        "",
        help="Prompt family (qwen2.5-coder, starcoder2, deepseek-coder, codellama, plain); "
        "empty: from the catalogue.",
    ).tag(config=True)

    # -- course policy -----------------------------------------------------------------------
    policy_file = Unicode(
        "",
        help="""JSON course policy (docs/deployment.md): per feature on/hint/off, for
        everyone or per JupyterHub group, with time windows. Re-read when it changes (no
        restart). Empty: the policy lives in memory, set with PUT <prefix>/admin/policy.""",
    ).tag(config=True)

    policy_check_interval = Float(
        2.0, help="Seconds between checks of the policy file's modification time."
    ).tag(config=True)

    timezone = Unicode(
        "UTC",
        help="""Timezone (IANA name, e.g. Europe/Paris) of the daily quota reset, and of
        the policy when its file names none.""",
    ).tag(config=True)

    # -- course material (issue 13) -----------------------------------------------------
    course_material = Dict(
        {},
        help="""Course material per JupyterHub group: {"l1-python": ["/srv/courses/l1"],
        "*": [...] for everyone else}. Folders of notebooks, Markdown, HTML and PDF
        (with pypdf); explanations and questions are grounded in them and cite them.
        A student in several groups gets the first group's (alphabetical order).""",
    ).tag(config=True)

    course_student_path = Unicode(
        "",
        help="""Where students' servers see the parent folder of the course folders
        (e.g. `shared` when /srv/courses is mounted at ~/shared): citations then open the
        notebook at the cell. Empty: paths as on the service; when the student's server
        has no such file, the panel shows the passage inline.""",
    ).tag(config=True)

    # -- per-student quotas ------------------------------------------------------------
    requests_per_minute = Dict(
        {"completion": 60, "explain_cell": 6, "explain_error": 6, "ask": 6, "warm": 6},
        help="""Sustained requests per minute per student, per feature (0: unlimited).
        A student types in bursts: see `burst_seconds`.""",
    ).tag(config=True)

    burst_seconds = Float(
        20.0,
        help="""Seconds' worth of requests a student may send at once (token bucket
        size = rate x burst_seconds / 60).""",
    ).tag(config=True)

    max_in_flight_per_user = Int(
        2, help="Requests one student may have in progress at once (0: unlimited)."
    ).tag(config=True)

    daily_token_quota = Int(
        200_000,
        help="""Tokens a student may use per day (prompt tokens the engine computed plus
        generated ones; 0: unlimited). About 1,500 completions of a 100-token prompt.""",
    ).tag(config=True)

    quota_exempt_groups = List(
        Unicode(), ["staff"], help="JupyterHub groups without rate limits and quotas."
    ).tag(config=True)

    # -- usage, privacy, monitoring -------------------------------------------------------
    # The shared engine usually runs on a GPU server, not on 2 laptop-class cores: the
    # same setting as PipelineTraits', with the default (shown by --help-all) to match.
    energy_watts = Float(
        300.0,
        help="""Power drawn by the engine's machine while it generates (W), for the energy
        estimate: ~300 W for a server with one datacenter GPU, ~35 W for 2 CPU cores.""",
    ).tag(config=True)

    state_file = Unicode(
        "",
        help="""JSON file where usage counters and today's quotas are saved (every
        minute and at exit) and restored at start. Empty: counters reset on restart.""",
    ).tag(config=True)

    authenticate_prometheus = Bool(
        True,
        help="""/metrics needs a staff or admin token (Prometheus: `authorization`
        with a token). False: open to anyone who can reach the service.""",
    ).tag(config=True)

    @default("service_name")
    def _default_service_name(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_NAME", "copilot")

    @default("url")
    def _default_url(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101")

    @default("base_url")
    def _default_base_url(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{self.service_name}/")

    @default("hub_api_url")
    def _default_hub_api_url(self) -> str:
        return os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api")

    # -- building -----------------------------------------------------------------------------
    def initialize(self, argv=None) -> None:
        self.parse_command_line(argv)
        if self.config_file:
            from_command_line = copy.deepcopy(self.config)
            self.load_config_file(self.config_file)
            self.update_config(from_command_line)  # the command line wins over the file
        self.setup()

    def setup(self, now=None) -> None:
        """Build engine, policy, quotas, usage and services from the traits (`now`:
        a clock for the policy, injectable in tests)."""
        token = (
            read_api_key(key_file=self.hub_api_token_file)
            if self.hub_api_token_file
            else os.environ.get("JUPYTERHUB_API_TOKEN", "")
        )
        self.hub_auth = make_hub_auth(
            self.hub_api_url, token, self.service_name, self.hub_auth_cache_seconds
        )
        self.directory = UserDirectory()
        self.model_card, fam = self._model_card()
        self.engine = OpenAICompatEngine(
            OpenAICompatConfig(
                base_url=self.engine_url,
                model=self.engine_model,
                api_key=read_api_key(
                    key_file=self.engine_api_key_file, key_env=self.engine_api_key_env
                ),
                read_timeout=self.engine_timeout,
                max_connections=max(self.engine_max_in_flight, 1) + 4,  # + health checks
            )
        )
        self.policy_source = PolicyFile(
            self.policy_file or None,
            initial=CoursePolicyDocument(timezone=self.timezone),
            check_interval=self.policy_check_interval,
            default_timezone=self.timezone,
        )
        policy_kwargs = {"now": now} if now else {}
        self.policy = CoursePolicy(self.policy_source, self.directory.groups_of, **policy_kwargs)
        self.quotas = Quotas(
            QuotaSettings(
                requests_per_minute={k: float(v) for k, v in self.requests_per_minute.items()},
                burst_seconds=self.burst_seconds,
                max_in_flight=self.max_in_flight_per_user,
                daily_tokens=self.daily_token_quota,
                timezone=self.timezone,
                exempt_groups=tuple(self.quota_exempt_groups),
            )
        )
        self.ledger = ChargingLedger(factors=self.energy_factors())
        self.ledger.quotas = self.quotas
        self._restore_state()
        self.completions = CompletionService(
            engine=self.engine,
            family=fam,
            card=self.model_card,
            # Many students: suggestions are kept per (hub user, editor id).
            settings=self.completion_settings(editors_per_user=True),
            policy=self.policy,
            usage=self.ledger,
        )
        self.chat = self.make_chat_engine()  # (engine, card) or None
        chat_engine, chat_card = self.chat or (self.engine, self.model_card)
        self.course = self.make_course_library(
            self.course_material, self.directory.groups_of, self.course_student_path
        )
        self.explainer = self.make_explainer(
            chat_engine, chat_card, self.policy, self.ledger, course=self.course
        )
        from .metrics import ServiceMetrics

        self.metrics = ServiceMetrics(
            self.ledger, self.directory.groups_of, lambda: self.engine.status().state == "ready"
        )
        self._in_flight = 0

    def _model_card(self):
        from ..sources import ModelError, resolve

        try:
            spec, _ = resolve(self.model)
        except ModelError:
            card = ModelCard(id=self.model, name=self.model, family=self.model_family or "plain")
        else:
            card = spec.to_card(None)
        card.path = None  # the weights live on the engine's machine
        card.engine = "openai_compat"
        return card, family(self.model_family or card.family)

    def make_app(self) -> web.Application:
        from .handlers import routes

        prefix = "/" + self.base_url.strip("/") + "/" if self.base_url.strip("/") else "/"
        return web.Application(
            [(prefix + path, handler) for path, handler in routes()],
            copilot=self,
            log_function=_quiet_log,
        )

    # -- admission and status (used by the handlers) -------------------------------------
    @contextmanager
    def admit(self, user: HubUser, feature: str):
        """Quotas of the student, then the service-wide cap; QuotaExceeded -> 429."""
        with self.quotas.admit(user.name, feature, user.groups):
            if self._in_flight >= self.engine_max_in_flight > 0:
                raise QuotaExceeded("the engine is busy; try again", retry_after=1, limit="busy")
            self._in_flight += 1
            try:
                with self.ledger.in_flight():
                    yield
            finally:
                self._in_flight -= 1

    def is_staff(self, user: HubUser) -> bool:
        return user.is_staff(self.staff_groups)

    def status(self, user: HubUser) -> StatusReply:
        engine = self.engine.status()
        features = self.policy.features(user.name)
        features.update(
            {
                "engine": "hub_service",
                "busy": engine.busy,
                "queue": self._in_flight,
                "restarts": 0,
                "languages": ["en", "fr"],
                "quota": self.quotas.remaining(user.name, user.groups),
                "staff": self.is_staff(user),
            }
        )
        return StatusReply(state=engine.state, model=self.model_card, features=features,
                           detail=engine.detail, version=__version__)  # fmt: skip

    # -- state across restarts ---------------------------------------------------------------
    def _restore_state(self) -> None:
        if not self.state_file or not Path(self.state_file).is_file():
            return
        try:
            data = json.loads(Path(self.state_file).read_text())
            self.ledger.restore(data.get("usage", {}))
            self.quotas.restore(data.get("quotas", {}))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("jupyter-copilot: cannot restore %s: %s", self.state_file, exc)

    def save_state(self) -> None:
        if not self.state_file:
            return
        path = Path(self.state_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"usage": self.ledger.snapshot(), "quotas": self.quotas.snapshot()}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".copilot-state-")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)

    # -- running ----------------------------------------------------------------------------
    async def start_async(self, port: int | None = None) -> HTTPServer:
        """Listen (on the `url`'s host and port unless `port` is given) and start
        watching the engine. Returns the HTTP server (tests stop it themselves)."""
        where = urlparse(self.url)
        self.http_server = HTTPServer(self.make_app(), xheaders=True)
        self.http_server.listen(port if port is not None else where.port or 80,
                                where.hostname or "127.0.0.1")  # fmt: skip
        await self.engine.start()
        if self.chat:
            await self.chat[0].start()
        self._saver = asyncio.ensure_future(self._save_periodically())
        log.info("jupyter-copilot hub service %s listening on %s%s, engine %s",
                 self.service_name, self.url, self.base_url, self.engine_url)  # fmt: skip
        return self.http_server

    async def stop_async(self) -> None:
        if getattr(self, "_saver", None):
            self._saver.cancel()
        if getattr(self, "http_server", None):
            self.http_server.stop()
        await self.engine.close()
        if getattr(self, "chat", None):
            await self.chat[0].close()
        await _close_hub_http_client()
        self.save_state()

    async def _save_periodically(self, every: float = 60.0) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await asyncio.to_thread(self.save_state)
            except OSError as exc:
                log.error("jupyter-copilot: cannot save %s: %s", self.state_file, exc)

    def start(self) -> None:
        logging.basicConfig(
            level=logging.INFO, format="[%(levelname)s %(asctime)s %(name)s] %(message)s"
        )
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per engine request: noise

        async def serve() -> None:
            await self.start_async()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            await self.stop_async()

        asyncio.run(serve())


async def _close_hub_http_client() -> None:
    """HubAuth talks to the Hub through a per-event-loop aiohttp session: close ours."""
    try:
        from jupyterhub.httpclient import JupyterHubHTTPClient
    except ImportError:  # older JupyterHub: nothing to close
        return
    await JupyterHubHTTPClient.loop_instance().close()


def _quiet_log(handler: web.RequestHandler) -> None:
    """Access log without query strings or bodies (they could hold students' code)."""
    status = handler.get_status()
    if status < 400 and handler.request.path.endswith(("/health", "/metrics")):
        return
    level = logging.INFO if status < 500 else logging.ERROR
    user = getattr(getattr(handler, "hub_user", None), "name", "-")
    log.log(level, "%d %s %s %s %.1fms", status, handler.request.method, handler.request.path,
            user, 1000.0 * handler.request.request_time())  # fmt: skip


main = CopilotHubService.launch_instance
