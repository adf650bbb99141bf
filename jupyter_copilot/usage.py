"""Frugality accounting: requests, tokens, engine seconds and an energy estimate.

The energy figure is an estimate, not a measurement: engine seconds × the power the
engine draws while generating (`watts`), and grams of CO2-equivalent from the
electricity's carbon intensity (`grams_co2e_per_kwh`). Both factors are settings,
documented in docs/usage.md, so that a university can put in its own numbers (its
server's measured draw, its supplier's intensity). No prompt text is ever stored here.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field

# Defaults, each with its source, so that an admin knows what to change.
DEFAULT_WATTS = 35.0  # two busy cores of a laptop/server CPU plus memory, whole-socket share
DEFAULT_GRAMS_CO2E_PER_KWH = 56.0  # French grid, average 2023 (RTE eco2mix: ~32-56 g/kWh)


@dataclass
class UsageCounters:
    requests: int = 0
    cancelled: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    engine_seconds: float = 0.0

    def add(self, other: "UsageCounters") -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


@dataclass
class EnergyFactors:
    watts: float = DEFAULT_WATTS
    grams_co2e_per_kwh: float = DEFAULT_GRAMS_CO2E_PER_KWH

    def watt_hours(self, engine_seconds: float) -> float:
        return engine_seconds * self.watts / 3600.0

    def grams_co2e(self, engine_seconds: float) -> float:
        return self.watt_hours(engine_seconds) / 1000.0 * self.grams_co2e_per_kwh


@dataclass
class UsageLedger:
    """In-memory counters per (user, feature). Thread-safe; cheap to update."""

    factors: EnergyFactors = field(default_factory=EnergyFactors)
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[tuple[str, str], UsageCounters] = {}

    def record(
        self,
        user: str,
        feature: str,
        *,
        prompt_tokens: int = 0,
        cached_tokens: int = 0,
        generated_tokens: int = 0,
        engine_seconds: float = 0.0,
        cancelled: bool = False,
        error: bool = False,
    ) -> None:
        delta = UsageCounters(
            requests=1,
            cancelled=int(cancelled),
            errors=int(error),
            prompt_tokens=prompt_tokens,
            cached_tokens=cached_tokens,
            generated_tokens=generated_tokens,
            engine_seconds=engine_seconds,
        )
        with self._lock:
            self._by_key.setdefault((user, feature), UsageCounters()).add(delta)

    def _summary(self, counters: UsageCounters) -> dict:
        data = asdict(counters)
        data["engine_seconds"] = round(data["engine_seconds"], 3)
        data["energy_wh"] = round(self.factors.watt_hours(counters.engine_seconds), 4)
        data["co2e_g"] = round(self.factors.grams_co2e(counters.engine_seconds), 4)
        return data

    def report(self, user: str | None = None) -> dict:
        """Totals, per feature, and (when `user` is None) per user."""
        with self._lock:
            items = [(k, v) for k, v in self._by_key.items() if user is None or k[0] == user]
        total, per_feature, per_user = UsageCounters(), {}, {}
        for (who, feature), counters in items:
            total.add(counters)
            per_feature.setdefault(feature, UsageCounters()).add(counters)
            per_user.setdefault(who, UsageCounters()).add(counters)
        report = {
            "since": self.started,
            "factors": asdict(self.factors),
            "total": self._summary(total),
            "features": {f: self._summary(c) for f, c in per_feature.items()},
        }
        if user is None:
            report["users"] = {u: self._summary(c) for u, c in per_user.items()}
        return report
