"""Per-student limits of the campus service: request rates, requests in flight and a
daily token quota. Exceeding one is a 429 with a Retry-After that says when trying
again will work (the frontend stays quiet until then).

- Rates are token buckets per (student, feature): a student may send a short burst
  (typing fast, several cells) but not a sustained flood (a script in a loop).
- In-flight requests are capped per student, so that one person cannot hold many of
  the engine's parallel slots while classmates wait.
- The daily quota counts prompt + generated tokens (what costs engine time) and resets
  at midnight in the course's timezone. It is checked before a request and charged
  after it (a request that starts under the quota may end slightly above it). Its
  counter is a `DailyTokens`: in memory (one process), or the service's database
  (`store.UsageStore`), where every replica of the service reads and adds to the same
  count, and a request's charge is committed with its usage row.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Protocol
from zoneinfo import ZoneInfo


class DailyTokens(Protocol):
    """Where the tokens charged to each student per local day are counted."""

    def tokens_used(self, user: str, day: str) -> int: ...

    def add_tokens(self, user: str, day: str, tokens: int) -> None: ...


class MemoryDailyTokens:
    """One process's counter (tests, a service without a database)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], int] = {}

    def tokens_used(self, user: str, day: str) -> int:
        with self._lock:
            return self._tokens.get((user, day), 0)

    def add_tokens(self, user: str, day: str, tokens: int) -> None:
        with self._lock:
            self._tokens[(user, day)] = self._tokens.get((user, day), 0) + tokens


class QuotaExceeded(Exception):
    """A student's limit is reached (HTTP 429, `retry_after` seconds)."""

    status = 429

    def __init__(self, message: str, retry_after: int, limit: str) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))
        self.limit = limit  # "rate", "concurrency" or "daily_tokens" (metrics label)


@dataclass
class QuotaSettings:
    # Requests per minute for each feature; 0 or missing: unlimited.
    requests_per_minute: dict[str, float] = field(
        default_factory=lambda: {"completion": 60.0, "explain_cell": 6.0, "explain_error": 6.0}
    )
    burst_seconds: float = 20.0  # a full bucket holds this many seconds' worth of requests
    max_in_flight: int = 2
    daily_tokens: int = 200_000  # 0: unlimited
    timezone: str = "UTC"
    exempt_groups: tuple[str, ...] = ()


@dataclass
class _Bucket:
    level: float
    stamp: float


class Quotas:
    def __init__(
        self,
        settings: QuotaSettings,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        daily: DailyTokens | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._in_flight: dict[str, int] = {}
        self.daily: DailyTokens = daily or MemoryDailyTokens()

    def exempt(self, groups: Iterable[str]) -> bool:
        return bool(set(groups) & set(self.settings.exempt_groups))

    @contextmanager
    def admit(self, user: str, feature: str, groups: Iterable[str] = ()) -> Iterator[None]:
        """Hold one of the student's in-flight places for the `with` block, or raise
        `QuotaExceeded` (nothing is consumed when a check fails)."""
        if self.exempt(groups):
            yield
            return
        with self._lock:
            self._check_daily(user)
            if self._in_flight.get(user, 0) >= self.settings.max_in_flight > 0:
                raise QuotaExceeded(
                    f"{self.settings.max_in_flight} requests already in progress; wait for them",
                    retry_after=1,
                    limit="concurrency",
                )
            self._take_from_bucket(user, feature)
            self._in_flight[user] = self._in_flight.get(user, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[user] -= 1
                if not self._in_flight[user]:
                    del self._in_flight[user]

    def charge(self, user: str, tokens: int) -> None:
        """Count tokens a finished (or cancelled) request used against today's quota
        (the database path charges them with the request's row instead)."""
        if tokens > 0:
            self.daily.add_tokens(user, self.today(), tokens)

    def today(self) -> str:
        return self._local_now().date().isoformat()

    def remaining(self, user: str, groups: Iterable[str] = ()) -> dict:
        """What the student has left today (shown in `GET /usage`)."""
        used = self.daily.tokens_used(user, self.today())
        limit = 0 if self.exempt(groups) else self.settings.daily_tokens
        return {
            "daily_tokens": limit or None,
            "tokens_used_today": used,
            "tokens_left_today": max(0, limit - used) if limit else None,
            "resets_in_seconds": self._seconds_to_midnight(),
            "requests_per_minute": self.settings.requests_per_minute,
        }

    # -- internals (called with the lock held) --------------------------------------------
    def _take_from_bucket(self, user: str, feature: str) -> None:
        rate = self.settings.requests_per_minute.get(feature, 0) / 60.0  # per second
        if rate <= 0:
            return
        capacity = max(1.0, rate * self.settings.burst_seconds)
        now = self._clock()
        bucket = self._buckets.get((user, feature))
        if bucket is None:
            bucket = self._buckets[(user, feature)] = _Bucket(level=capacity, stamp=now)
        bucket.level = min(capacity, bucket.level + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.level < 1.0:
            wait = math.ceil((1.0 - bucket.level) / rate)
            per_minute = self.settings.requests_per_minute[feature]
            raise QuotaExceeded(
                f"too many {feature} requests (limit {per_minute:g} per minute); "
                f"try again in {wait} s",
                retry_after=wait,
                limit="rate",
            )
        bucket.level -= 1.0

    def _check_daily(self, user: str) -> None:
        limit = self.settings.daily_tokens
        if limit <= 0:
            return
        if self.daily.tokens_used(user, self.today()) >= limit:
            wait = self._seconds_to_midnight()
            raise QuotaExceeded(
                f"today's quota of {limit} tokens is used up; it renews at midnight "
                f"({self.settings.timezone}), in {wait // 3600} h {wait % 3600 // 60} min",
                retry_after=wait,
                limit="daily_tokens",
            )

    def _local_now(self) -> datetime:
        return self._wall().astimezone(ZoneInfo(self.settings.timezone))

    def _seconds_to_midnight(self) -> int:
        now = self._local_now()
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo)
        return max(1, math.ceil((midnight - now).total_seconds()))
