"""The settings of the completion and explanation pipeline, shared by both apps.

A student's user server (`CopilotApp`, a jupyter_server extension) and the campus
service (`CopilotHubService`) build the same prompts and clean up answers the same
way, so they take the same settings, documented once here. Each app still reads them
under its own name (``c.CopilotApp.line_max_tokens``,
``c.CopilotHubService.line_max_tokens``): traitlets looks a setting up under every
configurable class of the app's MRO.
"""

from __future__ import annotations

import os

from traitlets import Bool, Dict, Enum, Float, Int, TraitError, Unicode, default, validate

from .conversation import TurnSigner
from .engines.base import Engine
from .explain import ExplainService, ExplainSettings
from .limits import HttpLimitTraits
from .policy import Policy
from .schema import ModelCard
from .service import MAX_TOKENS_CAP, CompletionSettings
from .usage import EnergyFactors, UsageLedger


class PipelineTraits(HttpLimitTraits):
    # HTTP limits (body size, body and idle timeouts): limits.py
    # -- prompt and completion shape ----------------------------------------------------
    context_budget_tokens = Int(
        1536,
        help="""Tokens of notebook context (earlier cells) in a completion prompt. Larger is
        slower on a cold cache (about 10 ms per token on 2 CPU cores for a 1.5B model).""",
    ).tag(config=True)

    suffix_max_chars = Int(
        400,
        help="Characters after the cursor shown to the model (re-evaluated on every keystroke).",
    ).tag(config=True)

    line_max_tokens = Int(48, help="Token limit of a single-line completion.").tag(config=True)

    token_healing = Bool(
        False,
        help="""With the cursor in or right after a name, take that part of the name off
        the prompt and make the model's first tokens spell it (context/healing.py): the
        model then picks the token for the whole name. Engines that cannot constrain
        their first tokens (an OpenAI-compatible server) never heal.""",
    ).tag(config=True)

    block_max_tokens = Int(160, help="Token limit of a block (multi-line) completion.").tag(
        config=True
    )

    max_lines = Int(12, help="Line limit of a block completion after clean-up.").tag(config=True)

    max_tokens_cap = Dict(
        per_key_traits={"line": Int(min=1), "block": Int(min=1)},
        default_value=MAX_TOKENS_CAP,
        help="""The most tokens a completion request may ask for (its `max_tokens`), per
        mode: {"line": 128, "block": 512}. A larger ask is cut to this; a request that
        asks for nothing gets line_max_tokens / block_max_tokens.""",
    ).tag(config=True)

    @validate("max_tokens_cap")
    def _valid_max_tokens_cap(self, proposal):
        # A broken setting fails at start (closed), not on a student's request.
        cap = proposal["value"]
        if set(cap) != {"line", "block"}:
            raise TraitError(f"max_tokens_cap takes the keys line and block, not {sorted(cap)}")
        return dict(cap)

    reuse_suggestions = Bool(
        True,
        help="""While the student types the characters the last suggestion showed, answer
        with the rest of that suggestion instead of asking the model again (instant,
        and what the model would most likely say again).""",
    ).tag(config=True)

    ahead_next_line = Bool(
        True,
        help="""A suggestion the frontend asks ahead at the end of the line being typed
        also writes the line after it, so that when the student finishes the line as
        it says and presses Enter, the new line's suggestion is answered at once
        (about twice the engine time of such a request; local engine only).""",
    ).tag(config=True)

    # -- explanations ---------------------------------------------------------------------
    explain_max_tokens = Int(400, help="Token limit of an explanation (about 300 words).").tag(
        config=True
    )

    explain_budget_tokens = Int(
        1024, help="Tokens of earlier cells given as context to an explanation."
    ).tag(config=True)

    default_language = Enum(
        ["en", "fr"],
        "en",
        help="""Language of explanations when the request names none. The JupyterLab
        frontend sends the user's JupyterLab language (French or English).""",
    ).tag(config=True)

    # -- conversation and course material (issue 13) ---------------------------------------
    history_budget_tokens = Int(
        1024,
        help="""Tokens of earlier turns of a conversation in the explain panel given to the
        model with a follow-up question; older turns are left out (the panel says so).""",
    ).tag(config=True)

    conversation_key_file = Unicode(
        help="""File holding the key (at least 32 bytes, e.g. `openssl rand -hex 32`) that
        signs the panel's answers so they can come back as a conversation's history.
        Several replicas of the campus service behind one URL must share it: an answer
        signed by one is otherwise dropped from the history by another. Empty: a new
        random key per process (older answers are left out after a restart). An
        unreadable or too short key stops the app from starting (fails closed).
        Default: $JUPYTER_COPILOT_CONVERSATION_KEY_FILE.""",
    ).tag(config=True)

    @default("conversation_key_file")
    def _default_conversation_key_file(self) -> str:
        return os.environ.get("JUPYTER_COPILOT_CONVERSATION_KEY_FILE", "")

    course_budget_tokens = Int(
        600,
        help="""Tokens of course passages (course_material) given to the model with an
        explanation or a question; the best passages first.""",
    ).tag(config=True)

    course_max_sources = Int(3, help="Course passages cited per answer, from different files.").tag(
        config=True
    )

    course_index_dir = Unicode(
        "",
        help="""Folder of the course index (SQLite files, rebuilt from the course material
        when missing). Empty: the user's cache folder (~/.cache/jupyter-copilot).""",
    ).tag(config=True)

    chat_engine_url = Unicode(
        "",
        help="""An OpenAI-compatible engine for explanations and questions only (e.g. a
        larger chat model on the campus engine: http://gpu-node:8001/v1), while
        completions stay with the code model. Empty: the same engine for everything.""",
    ).tag(config=True)

    chat_engine_model = Unicode(
        "", help="Model name on the chat engine; empty: the first one it lists."
    ).tag(config=True)

    chat_engine_api_key_file = Unicode(
        "", help="File holding the chat engine's API key (if it needs one)."
    ).tag(config=True)

    chat_model = Unicode(
        "",
        help="""Catalogue id of the chat engine's model (`jupyter copilot models`), for the
        model card students see (licence, openness), e.g. lucie-7b-instruct.""",
    ).tag(config=True)

    # -- limits, privacy, frugality -----------------------------------------------------
    log_prompts = Bool(
        False,
        help="""Log prompt text (debugging only). Off by default: students' code is private
        and never written to logs unless an administrator turns this on.""",
    ).tag(config=True)

    energy_watts = Float(
        35.0,
        help="""Power drawn by the engine's machine while it generates (W), for the energy
        estimate: ~35 W for 2 CPU cores, ~300 W for a server with one datacenter GPU.""",
    ).tag(config=True)

    carbon_intensity = Float(
        56.0, help="Carbon intensity of the electricity, gCO2e per kWh (French grid ~56)."
    ).tag(config=True)

    # -- what the traits build ------------------------------------------------------------
    def completion_settings(self, **extra) -> CompletionSettings:
        return CompletionSettings(
            budget_tokens=self.context_budget_tokens,
            suffix_max_chars=self.suffix_max_chars,
            line_max_tokens=self.line_max_tokens,
            token_healing=self.token_healing,
            block_max_tokens=self.block_max_tokens,
            max_lines=self.max_lines,
            log_prompts=self.log_prompts,
            reuse_suggestions=self.reuse_suggestions,
            ahead_next_line=self.ahead_next_line,
            max_tokens_cap=dict(self.max_tokens_cap),
            **extra,
        )

    def energy_factors(self) -> EnergyFactors:
        return EnergyFactors(watts=self.energy_watts, grams_co2e_per_kwh=self.carbon_intensity)

    def make_chat_engine(self) -> tuple[Engine, ModelCard] | None:
        """The separate engine for explanations and questions, or None (use the main one)."""
        if not self.chat_engine_url:
            return None
        from .engines.openai_compat import OpenAICompatConfig, OpenAICompatEngine, read_api_key
        from .models import get

        spec = get(self.chat_model) if self.chat_model else None
        name = self.chat_model or self.chat_engine_model or "chat model"
        card = spec.to_card(None) if spec else ModelCard(id=name, name=name, family="plain")
        card.engine = "openai_compat"
        engine = OpenAICompatEngine(
            OpenAICompatConfig(
                base_url=self.chat_engine_url,
                model=self.chat_engine_model,
                api_key=read_api_key(key_file=self.chat_engine_api_key_file),
            )
        )
        return engine, card

    def make_course_library(self, material: dict, groups_of=None, student_prefix: str = ""):
        """The course indexes for `material` ({group or "*": [folders]}), or None."""
        material = {group: list(folders) for group, folders in material.items() if folders}
        if not material:
            return None
        from platformdirs import user_cache_dir

        from .course.retrieval import CourseLibrary

        return CourseLibrary(
            material,
            self.course_index_dir or user_cache_dir("jupyter-copilot"),
            groups_of or (lambda user: ()),
            budget_tokens=self.course_budget_tokens,
            max_sources=self.course_max_sources,
            student_prefix=student_prefix,
        )

    def make_explainer(
        self, engine: Engine, card: ModelCard, policy: Policy, usage: UsageLedger, course=None,
        notebook_document=None, **serving
    ) -> ExplainService:
        """`serving`: `ServingSettings` fields the app sets (the campus service's);
        `notebook_document`: `CompletionService.notebook_document` where the engine is
        the completions' own (ExplainService uses it where the engine can)."""
        settings = ExplainSettings(max_tokens=self.explain_max_tokens,
                                   budget_tokens=self.explain_budget_tokens,
                                   default_language=self.default_language,
                                   history_budget_tokens=self.history_budget_tokens,
                                   log_prompts=self.log_prompts, **serving)  # fmt: skip
        signer = TurnSigner.from_key_file(self.conversation_key_file)
        return ExplainService(engine, card, policy, usage, settings, course=course,
                              signer=signer, notebook_document=notebook_document)  # fmt: skip
