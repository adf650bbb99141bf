"""The settings of the completion and explanation pipeline, shared by both apps.

A student's user server (`CopilotApp`, a jupyter_server extension) and the campus
service (`CopilotHubService`) build the same prompts and clean up answers the same
way, so they take the same settings, documented once here. Each app still reads them
under its own name (``c.CopilotApp.line_max_tokens``,
``c.CopilotHubService.line_max_tokens``): traitlets looks a setting up under every
configurable class of the app's MRO.
"""

from __future__ import annotations

from traitlets import Bool, Enum, Float, Int

from .engines.base import Engine
from .explain import ExplainService
from .limits import HttpLimitTraits
from .policy import Policy
from .schema import ModelCard
from .service import CompletionSettings
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

    block_max_tokens = Int(160, help="Token limit of a block (multi-line) completion.").tag(
        config=True
    )

    max_lines = Int(12, help="Line limit of a block completion after clean-up.").tag(config=True)

    reuse_suggestions = Bool(
        True,
        help="""While the student types the characters the last suggestion showed, answer
        with the rest of that suggestion instead of asking the model again (instant,
        and what the model would most likely say again).""",
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
            block_max_tokens=self.block_max_tokens,
            max_lines=self.max_lines,
            log_prompts=self.log_prompts,
            reuse_suggestions=self.reuse_suggestions,
            **extra,
        )

    def energy_factors(self) -> EnergyFactors:
        return EnergyFactors(watts=self.energy_watts, grams_co2e_per_kwh=self.carbon_intensity)

    def make_explainer(
        self, engine: Engine, card: ModelCard, policy: Policy, usage: UsageLedger, **extra
    ) -> ExplainService:
        return ExplainService(
            engine=engine,
            card=card,
            policy=policy,
            usage=usage,
            max_tokens=self.explain_max_tokens,
            budget_tokens=self.explain_budget_tokens,
            default_language=self.default_language,
            log_prompts=self.log_prompts,
            **extra,
        )
