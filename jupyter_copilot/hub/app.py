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
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from urllib.parse import urlparse

from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import Bool, Dict, Float, Int, List, Unicode, default
from traitlets.config import Application

from .. import __version__
from ..engine_traits import RemoteEngineTraits
from ..engines.base import CancelToken
from ..engines.openai_compat import OpenAICompatEngine, read_api_key
from ..pipeline_traits import PipelineTraits
from ..policy import CoursePolicy, CoursePolicyDocument, PolicyFile
from ..prompts import family
from ..backend import Caller, LocalBackend, Ticket
from ..errors import to_http
from ..schema import ModelCard, StatusReply, StreamChunk
from ..service import CompletionService
from ..store import DatabasePolicy
from .admission import AdmissionTraits, Dropped
from .admission import Admission as SlotQueue
from .auth import HubUser, UserDirectory, make_hub_auth
from .quotas import QuotaExceeded, Quotas, QuotaSettings
from .storage import StorageTraits, StoredLedger, open_store

log = logging.getLogger("jupyter_copilot.hub")


# Metrics outcome of a refused request, by HTTP status (429s are named by their code).
_OUTCOMES = {403: "refused", 503: "unavailable", 413: "too_large", 400: "bad_request"}


class MeteredTicket(Ticket):
    """Sees a request's chunks go by: first-token time, last chunk, failure."""

    def __init__(self, slots: SlotQueue, caller: Caller, feature: str) -> None:
        self.slots, self.caller, self.feature = slots, caller, feature
        self.started = time.perf_counter()
        self.first: float | None = None
        self.last: StreamChunk | None = None
        self.failed = False

    def slot(self, cancel: CancelToken, editor: str | None = None):
        """An engine slot for this request (admission.py): waits, or raises `Dropped`
        (superseded, client gone) or `QuotaExceeded` (the wait would be too long)."""
        return self.slots.slot(self.caller.name, editor, self.feature, cancel)

    async def observe(self, chunks: AsyncIterator[StreamChunk], cancel: CancelToken,
                      editor: str | None = None) -> AsyncIterator[StreamChunk]:  # fmt: skip
        try:
            async with aclosing(chunks) as inner, self.slot(cancel, editor):
                async for chunk in inner:
                    if chunk.text and self.first is None:
                        self.first = time.perf_counter() - self.started
                    self.last = chunk
                    yield chunk
        except Dropped as exc:  # superseded or abandoned before reaching the engine
            self.last = StreamChunk(done=True, stop_reason="cancelled", code="cancelled",
                                    error=f"cancelled: {exc.reason}")  # fmt: skip
            yield self.last
        except Exception:
            self.failed = True
            raise

    def outcome(self) -> str:
        last = self.last
        if self.failed or last is None or last.stop_reason == "error":
            return "error"
        return "cancelled" if last.stop_reason == "cancelled" else "ok"


class ServiceAdmission:
    """The campus admission: the student's quotas, then the service-wide cap on
    engine requests; counts every request's outcome and latency in the metrics."""

    def __init__(self, app: "CopilotHubService") -> None:
        self.app = app

    @contextmanager
    def admit(self, caller: Caller, feature: str) -> Iterator[MeteredTicket]:
        app, metrics = self.app, self.app.metrics
        if app.engine_prompt_caches < 0:  # auto: as many seats as llama-server has slots
            app.slot_queue.adopt_seats(getattr(app.engine, "prompt_caches", 0))
        ticket = MeteredTicket(app.slot_queue, caller, feature)
        try:
            with app.quotas.admit(caller.name, feature, caller.groups):
                if app._in_flight >= app.engine_max_in_flight > 0:
                    raise QuotaExceeded("the engine is busy; try again", retry_after=1, limit="busy")
                app._in_flight += 1
                metrics.in_flight.inc()
                try:
                    with app.ledger.in_flight():
                        yield ticket
                finally:
                    app._in_flight -= 1
                    metrics.in_flight.dec()
        except Exception as exc:  # noqa: BLE001 - counted, then re-raised (mapped or as is)
            err = to_http(exc)
            status = err.status_code
            metrics.requests.labels(feature, err.code if status == 429 else
                                    _OUTCOMES.get(status, "error")).inc()  # fmt: skip
            raise err from None
        outcome = ticket.outcome()
        if outcome == "ok":
            metrics.latency.labels(feature).observe(time.perf_counter() - ticket.started)
        if ticket.first is not None:
            metrics.first_token.labels(feature).observe(ticket.first)
        metrics.requests.labels(feature, outcome).inc()

    def describe(self, caller: Caller) -> dict:
        app = self.app
        user = HubUser(caller.name, caller.groups, caller.admin)
        return {"queue": app._in_flight, "restarts": 0,
                "quota": app.quotas.remaining(caller.name, caller.groups),
                "staff": app.is_staff(user)}  # fmt: skip


class CopilotHubService(StorageTraits, AdmissionTraits, PipelineTraits, RemoteEngineTraits,
                        Application):
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

    # -- the engine (engine_url, engine_model, engine_api_key_*, engine_timeout: see
    # RemoteEngineTraits) ----------------------------------------------------------------
    @default("engine_url")
    def _default_engine_url(self) -> str:
        return "http://127.0.0.1:8080/v1"

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
        help="""The JSON state file of earlier versions (usage counters, today's
        quotas): imported once into the database (`db_url`) at start, then renamed
        <file>.migrated. Its folder is also where the default SQLite database goes.""",
    ).tag(config=True)

    isolate_prefix_cache = Bool(
        True,
        help="""Give each student their own prefix cache on the engine (vLLM's
        `cache_salt`, keyed by a secret made at start): no student's prompt can make
        another's answer faster, so timings reveal nothing about classmates' code.
        Costs the cache hits students would share (the same notebook's first cells).
        llama-server has no such setting: there, replies hide cache hits instead.""",
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
        remote = self.remote_engine_settings(
            max_connections=max(self.engine_max_in_flight, 1) + 4  # + health checks
        )
        self.engine = OpenAICompatEngine(remote.config())
        self.store = open_store(self)
        if self.policy_file:
            self.policy_source = PolicyFile(
                self.policy_file,
                initial=CoursePolicyDocument(timezone=self.timezone),
                check_interval=self.policy_check_interval,
                default_timezone=self.timezone,
            )
        else:  # the console's policy editor: in the database, shared by replicas
            self.policy_source = DatabasePolicy(
                self.store,
                initial=CoursePolicyDocument(timezone=self.timezone),
                check_interval=self.policy_check_interval,
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
            ),
            daily=self.store,  # one count for every replica on the database
        )
        self.slot_queue = self.make_admission()  # engine slots, superseded work (admission.py)
        self.ledger = StoredLedger(factors=self.energy_factors())
        self.ledger.store, self.ledger.policy = self.store, self.policy
        self.ledger.groups_of = self.directory.groups_of
        # Many students: editors and suggestions are kept per (hub user, editor id), and
        # replies say nothing about the shared prefix cache (see ServingSettings).
        # One prefix-cache salt per student, the same for completions and explanations.
        salt_key = os.urandom(16) if self.isolate_prefix_cache else None
        campus = {"editors_per_user": True, "private_timing": True, "cache_salt_key": salt_key}
        settings = self.completion_settings(**campus)
        self.completions = CompletionService(engine=self.engine, family=fam, card=self.model_card,
                                             settings=settings, policy=self.policy,
                                             usage=self.ledger)  # fmt: skip
        # Explanations and questions: a separate chat model if one is set, grounded in
        # each course group's material (course.md).
        self.chat = self.make_chat_engine()  # (engine, card) or None
        chat_engine, chat_card = self.chat or (self.engine, self.model_card)
        self.course = self.make_course_library(self.course_material, self.directory.groups_of,
                                               self.course_student_path)  # fmt: skip
        self.explainer = self.make_explainer(chat_engine, chat_card, self.policy, self.ledger,
                                             course=self.course, **campus)  # fmt: skip
        self.backend = LocalBackend(self.engine, self.model_card, self.policy, self.ledger,
                                    self.completions, self.explainer, engine_label="hub_service",
                                    chat_engine=self.chat[0] if self.chat else None)  # fmt: skip
        from .metrics import ServiceMetrics

        self.metrics = ServiceMetrics(
            self.ledger, self.directory.groups_of, lambda: self.engine.status().state == "ready"
        )
        self.admission = ServiceAdmission(self)
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

    # -- used by the handlers and the admission -------------------------------------------
    def is_staff(self, user) -> bool:
        return user.is_staff(self.staff_groups)

    def status(self, user: HubUser) -> StatusReply:
        """What `GET status` answers `user` (also for scripts and tests)."""
        caller = Caller(name=user.name, groups=user.groups, admin=user.admin)
        reply = self.backend.status(caller)
        reply.features.update(self.admission.describe(caller))
        return reply

    # -- running ----------------------------------------------------------------------------
    async def start_async(self, port: int | None = None) -> HTTPServer:
        """Listen (on the `url`'s host and port unless `port` is given) and start
        watching the engine. Returns the HTTP server (tests stop it themselves)."""
        where = urlparse(self.url)
        self.http_server = HTTPServer(self.make_app(), xheaders=True,
                                      **self.http_server_options())  # limits.py
        self.http_server.listen(port if port is not None else where.port or 80,
                                where.hostname or "127.0.0.1")  # fmt: skip
        await self.engine.start()
        if self.chat:
            await self.chat[0].start()
        self._purger = asyncio.ensure_future(self._purge_periodically())
        log.info("jupyter-copilot hub service %s listening on %s%s, engine %s",
                 self.service_name, self.url, self.base_url, self.engine_url)  # fmt: skip
        return self.http_server

    async def stop_async(self) -> None:
        if getattr(self, "_purger", None):
            self._purger.cancel()
        if getattr(self, "http_server", None):
            self.http_server.stop()
        await self.engine.close()
        if getattr(self, "chat", None):
            await self.chat[0].close()
        await _close_hub_http_client()
        self.store.close()

    async def _purge_periodically(self) -> None:
        while True:
            await asyncio.sleep(max(60.0, self.purge_interval))
            try:
                await asyncio.to_thread(self.store.purge, self.retention_days)
            except Exception as exc:  # noqa: BLE001 - the database may be down for a while
                log.error("jupyter-copilot: cannot purge old usage rows: %s", exc)

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
