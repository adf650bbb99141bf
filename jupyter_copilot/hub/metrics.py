"""Prometheus metrics of the campus service (``GET <prefix>/metrics``).

Labels are features, outcomes and courses (JupyterHub groups), never student names:
a per-student label would put a class list into the monitoring system and make the
number of time series grow with enrolment. Per-student figures are in the admin JSON
report (``GET <prefix>/admin/usage``).

Counters of tokens, engine seconds and energy are read from the usage ledger at
scrape time (a custom collector), so they cannot drift from the JSON report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..usage import UsageLedger

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Completions are interactive: most of the interest lies below 2 s.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


class ServiceMetrics:
    def __init__(
        self,
        ledger: UsageLedger,
        groups_of: Callable[[str], Iterable[str]],
        engine_up: Callable[[], bool],
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "copilot_requests",
            "Requests by feature and outcome (ok, cancelled, error, refused, rate_limited, "
            "quota, busy, unavailable)",
            ["feature", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "copilot_request_seconds",
            "Time from request to the last streamed chunk, completed requests only",
            ["feature"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.first_token = Histogram(
            "copilot_first_token_seconds",
            "Time from request to the first generated text",
            ["feature"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "copilot_requests_in_flight", "Requests being served now", registry=self.registry
        )
        self.registry.register(_LedgerCollector(ledger, groups_of, engine_up))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _LedgerCollector:
    def __init__(self, ledger: UsageLedger, groups_of, engine_up) -> None:
        self.ledger = ledger
        self.groups_of = groups_of
        self.engine_up = engine_up

    def describe(self):
        return []  # computed at scrape time

    def collect(self):
        report = self.ledger.report(groups_of=self.groups_of)
        up = GaugeMetricFamily("copilot_engine_up", "1 when the engine answers")
        up.add_metric([], 1.0 if self.engine_up() else 0.0)
        yield up
        students = GaugeMetricFamily("copilot_students", "Students who used the service")
        students.add_metric([], float(len(report.get("users", {}))))
        yield students
        busy = CounterMetricFamily("copilot_engine_busy_seconds", "Wall time the engine was busy")
        busy.add_metric([], float(report.get("engine_busy_seconds", 0.0)))
        yield busy
        for key, name, help_text in (
            ("prompt_tokens", "copilot_prompt_tokens", "Prompt tokens sent to the engine"),
            ("cached_tokens", "copilot_cached_tokens", "Prompt tokens served from its cache"),
            ("generated_tokens", "copilot_generated_tokens", "Tokens generated"),
            ("engine_seconds", "copilot_engine_seconds", "Engine time of requests (summed)"),
            ("energy_wh", "copilot_energy_wh", "Estimated energy, Wh (see usage factors)"),
            ("co2e_g", "copilot_co2e_grams", "Estimated emissions, gCO2e"),
        ):
            by_feature = CounterMetricFamily(name, help_text, labels=["feature"])
            for feature, summary in report["features"].items():
                by_feature.add_metric([feature], float(summary[key]))
            yield by_feature
        for key, name in (
            ("requests", "copilot_course_requests"),
            ("generated_tokens", "copilot_course_generated_tokens"),
            ("energy_wh", "copilot_course_energy_wh"),
        ):
            by_course = CounterMetricFamily(name, f"{key} per course (JupyterHub group)",
                                            labels=["course"])  # fmt: skip
            for course, summary in report.get("courses", {}).items():
                by_course.add_metric([course], float(summary[key]))
            yield by_course
