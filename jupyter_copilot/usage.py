"""Frugality accounting: requests, tokens, engine seconds and an energy estimate.

The energy figure is an estimate, not a measurement: engine seconds × the power the
engine draws while generating (`watts`), and grams of CO2-equivalent from the
electricity's carbon intensity (`grams_co2e_per_kwh`). Both factors are settings,
documented in docs/usage.md, so that a university can put in its own numbers (its
server's measured draw, its supplier's intensity). No prompt text is ever stored here.

A shared engine (the campus service) serves many requests at once: summing each
request's seconds would count the same busy second several times. There the service
also tracks the engine's busy wall time (`in_flight()`): energy totals use that time,
and each student's or course's share is in proportion to its engine seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from .engines.base import TokenCounts

# Defaults, each with its source, so that an admin knows what to change.
DEFAULT_WATTS = 35.0  # two busy cores of a laptop/server CPU plus memory, whole-socket share
DEFAULT_GRAMS_CO2E_PER_KWH = 56.0  # French grid, average 2023 (RTE eco2mix: ~32-56 g/kWh)


@dataclass
class UsageCounters(TokenCounts):
    """The sums of a user's (or a feature's) requests: how many, how they ended, and
    their token counts."""

    requests: int = 0
    cancelled: int = 0
    errors: int = 0

    def add(self, other: UsageCounters) -> None:
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
        self._busy_seconds = 0.0  # wall time with >= 1 request in flight (shared engines)
        self._in_flight = 0
        self._busy_since = 0.0

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        """Wrap each engine request in this to track the engine's busy wall time."""
        with self._lock:
            if self._in_flight == 0:
                self._busy_since = time.monotonic()
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._busy_seconds += time.monotonic() - self._busy_since

    def busy_seconds(self) -> float:
        with self._lock:
            ongoing = time.monotonic() - self._busy_since if self._in_flight else 0.0
            return self._busy_seconds + ongoing

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

    def _sharing(self) -> float:
        """Busy wall seconds per engine second (1 for an engine serving one at a time)."""
        with self._lock:
            engine_total = sum(c.engine_seconds for c in self._by_key.values())
        busy = self.busy_seconds()
        if busy <= 0 or engine_total <= 0:
            return 1.0
        return min(1.0, busy / engine_total)

    def _summary(self, counters: UsageCounters, sharing: float = 1.0) -> dict:
        data = asdict(counters)
        data["engine_seconds"] = round(data["engine_seconds"], 3)
        seconds = counters.engine_seconds * sharing
        data["energy_wh"] = round(self.factors.watt_hours(seconds), 4)
        data["co2e_g"] = round(self.factors.grams_co2e(seconds), 4)
        return data

    def report(
        self,
        user: str | None = None,
        groups_of: Callable[[str], Iterable[str]] | None = None,
    ) -> dict:
        """Totals, per feature, and (when `user` is None) per user and, given
        `groups_of`, per course (JupyterHub group; a student may be in several)."""
        with self._lock:
            items = [(k, v) for k, v in self._by_key.items() if user is None or k[0] == user]
        sharing = self._sharing()
        total, per_feature, per_user = UsageCounters(), {}, {}
        for (who, feature), counters in items:
            total.add(counters)
            per_feature.setdefault(feature, UsageCounters()).add(counters)
            per_user.setdefault(who, UsageCounters()).add(counters)
        report = {
            "since": self.started,
            "factors": asdict(self.factors),
            "total": self._summary(total, sharing),
            "features": {f: self._summary(c, sharing) for f, c in per_feature.items()},
        }
        if self._busy_seconds or self._in_flight:
            report["engine_busy_seconds"] = round(self.busy_seconds(), 3)
        if user is None:
            report["users"] = {u: self._summary(c, sharing) for u, c in per_user.items()}
            if groups_of is not None:
                courses: dict[str, UsageCounters] = {}
                for who, counters in per_user.items():
                    for group in groups_of(who):
                        courses.setdefault(group, UsageCounters()).add(counters)
                report["courses"] = {g: self._summary(c, sharing) for g, c in courses.items()}
        return report

    # -- persistence (the campus service saves its counters across restarts) ---------------
    def snapshot(self) -> dict:
        with self._lock:
            rows = [{"user": u, "feature": f, **asdict(c)} for (u, f), c in self._by_key.items()]
        return {"since": self.started, "busy_seconds": self.busy_seconds(), "counters": rows}

    def restore(self, data: dict) -> None:
        fields = set(UsageCounters.__dataclass_fields__)
        with self._lock:
            self.started = float(data.get("since", self.started))
            self._busy_seconds += float(data.get("busy_seconds", 0.0))
            for row in data.get("counters", []):
                counters = UsageCounters(**{k: v for k, v in row.items() if k in fields})
                self._by_key.setdefault((row["user"], row["feature"]), UsageCounters()).add(
                    counters
                )
