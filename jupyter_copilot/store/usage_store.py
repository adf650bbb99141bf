"""Per-request usage rows, daily token quotas, reports, export and erasure.

Every write is one short transaction that starts with a write, so that two service
processes on one database never deadlock and a request's row and its quota charge
are committed together (or not at all). Reports are aggregated by the database.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from ..engines.base import EngineUnavailable
from ..usage import EnergyFactors
from .database import open_database, upgrade
from .tables import daily_tokens, request_groups, requests, settings

# What a report may be split on (`by=`); `group` is always one of the keys, since a
# student in two courses counts in both (sums across groups would count twice).
DIMENSIONS = ("day", "user", "feature", "group", "mode", "outcome")
SUMS = ("requests", "prompt_tokens", "cached_tokens", "generated_tokens", "engine_seconds",
        "wh", "gco2e")  # fmt: skip
MAX_REPORT_ROWS = 100_000  # a year of 300 students x 3 features by day: ~330k; by user: fewer


class StoreUnavailable(EngineUnavailable):
    """The database cannot be reached: requests are refused (503) rather than served
    without counting them against the quota."""

    def __init__(self, exc: Exception) -> None:
        super().__init__(f"the usage database is unavailable ({type(exc).__name__})", 5)


class ReportError(ValueError):
    """A report's parameters are wrong (HTTP 400, with the parameter's name)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class RequestRecord:
    """What one request cost, as stored (never code or text)."""

    user: str
    feature: str
    groups: Sequence[str] = ()
    mode: str = "on"
    outcome: str = "ok"
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    engine_seconds: float = 0.0
    requests: int = 1
    at: datetime | None = None  # UTC; default now
    # The engine seconds the energy estimate counts: on a batched engine, this
    # request's share of the busy wall time (usage.py); default: `engine_seconds`.
    energy_seconds: float | None = None

    @property
    def charged_tokens(self) -> int:
        """What the daily quota counts: prompt tokens the engine computed + output."""
        return max(0, self.prompt_tokens - self.cached_tokens) + self.generated_tokens


@dataclass
class UsageStore:
    """The service's database: `UsageStore.open(url)` migrates it to the newest schema."""

    engine: Engine
    timezone: str = "UTC"
    factors: EnergyFactors = field(default_factory=EnergyFactors)

    @classmethod
    def open(cls, url: str, timezone: str = "UTC", factors: EnergyFactors | None = None):
        engine = open_database(url)
        upgrade(engine)
        return cls(engine, timezone, factors or EnergyFactors())

    def close(self) -> None:
        self.engine.dispose()

    # -- days ---------------------------------------------------------------------------------
    def day_of(self, moment: datetime) -> str:
        return moment.astimezone(ZoneInfo(self.timezone)).date().isoformat()

    def today(self) -> str:
        return self.day_of(datetime.now(timezone.utc))

    # -- writing ------------------------------------------------------------------------------
    def record(self, rec: RequestRecord, charge_quota: bool = True) -> int:
        """Store one request and charge its tokens to the student's day, atomically."""
        at = rec.at or datetime.now(timezone.utc)
        day = self.day_of(at)
        energy_seconds = rec.engine_seconds if rec.energy_seconds is None else rec.energy_seconds
        wh = self.factors.watt_hours(energy_seconds)
        row = {
            "at": at.astimezone(timezone.utc).replace(tzinfo=None), "day": day,
            "user": rec.user, "feature": rec.feature, "mode": rec.mode, "outcome": rec.outcome,
            "requests": rec.requests, "prompt_tokens": rec.prompt_tokens,
            "cached_tokens": rec.cached_tokens, "generated_tokens": rec.generated_tokens,
            "engine_seconds": rec.engine_seconds, "wh": wh,
            "gco2e": self.factors.grams_co2e(energy_seconds),
        }  # fmt: skip
        with self.engine.begin() as conn:
            request_id = conn.execute(insert(requests).values(**row)).inserted_primary_key[0]
            groups = sorted(set(rec.groups))
            if groups:
                conn.execute(
                    insert(request_groups), [{"request_id": request_id, "group": g} for g in groups]
                )
            tokens = rec.charged_tokens
            if charge_quota and tokens:
                self._add_tokens(conn, rec.user, day, tokens)
        return int(request_id)

    def _add_tokens(self, conn, user: str, day: str, tokens: int) -> None:
        """`tokens = tokens + n` in one statement: two replicas never lose an update."""
        dialect = conn.dialect.name
        if dialect in ("sqlite", "postgresql"):
            module = sqlite if dialect == "sqlite" else postgresql
            stmt = module.insert(daily_tokens).values(user=user, day=day, tokens=tokens)
            stmt = stmt.on_conflict_do_update(
                index_elements=["user", "day"],
                set_={"tokens": daily_tokens.c.tokens + stmt.excluded.tokens},
            )
            conn.execute(stmt)
            return
        bump = (
            update(daily_tokens)
            .where(daily_tokens.c.user == user, daily_tokens.c.day == day)
            .values(tokens=daily_tokens.c.tokens + tokens)
        )
        if conn.execute(bump).rowcount == 0:
            try:
                with conn.begin_nested():
                    conn.execute(insert(daily_tokens).values(user=user, day=day, tokens=tokens))
            except IntegrityError:  # another replica inserted it first
                conn.execute(bump)

    def add_tokens(self, user: str, day: str, tokens: int) -> None:
        with self.engine.begin() as conn:
            self._add_tokens(conn, user, day, tokens)

    def tokens_used(self, user: str, day: str) -> int:
        try:
            with self.engine.connect() as conn:
                value = conn.execute(
                    select(daily_tokens.c.tokens).where(
                        daily_tokens.c.user == user, daily_tokens.c.day == day
                    )
                ).scalar()
        except OperationalError as exc:
            raise StoreUnavailable(exc) from None
        return int(value or 0)

    # -- reports ------------------------------------------------------------------------------
    def report(
        self,
        by: Iterable[str] = ("day", "feature"),
        group: str | None = None,
        user: str | None = None,
        start: str | None = None,
        end: str | None = None,
        pseudonymise: bool = True,
        by_group: bool = True,
    ) -> list[dict]:
        """Sums per `by` (+ group), for days `start`..`end` (inclusive, YYYY-MM-DD).
        `by_group=False` (no `group` filter): each request once, groups not split."""
        dims = _dimensions(by, by_group or group is not None)
        for name, value in (("from", start), ("to", end)):
            if value is not None:
                _check_day(name, value)
        group_col = request_groups.c.group.label("group")
        columns = {
            "day": requests.c.day, "user": requests.c.user, "feature": requests.c.feature,
            "mode": requests.c.mode, "outcome": requests.c.outcome, "group": group_col,
        }  # fmt: skip
        keys = [columns[d] for d in dims]
        sums = [func.coalesce(func.sum(getattr(requests.c, s)), 0).label(s) for s in SUMS]
        joined = "group" in dims or group is not None
        query = select(*keys, *sums).select_from(
            requests.outerjoin(request_groups, request_groups.c.request_id == requests.c.id)
            if joined
            else requests
        )
        if group is not None:
            query = query.where(request_groups.c.group == group)
        if user is not None:
            query = query.where(requests.c.user == user)
        if start:
            query = query.where(requests.c.day >= start)
        if end:
            query = query.where(requests.c.day <= end)
        query = query.group_by(*keys).order_by(*keys).limit(MAX_REPORT_ROWS)
        with self.engine.connect() as conn:
            result = conn.execute(query).mappings().all()
            key = self._pseudonym_key(conn) if pseudonymise and "user" in dims else b""
        rows = []
        for item in result:
            row = {d: item[d] for d in dims}
            if "group" in row and row["group"] is None:
                row["group"] = ""  # a student in no group
            if key:
                row["user"] = pseudonym(key, row["user"])
            for s in SUMS:
                value = item[s]
                row[s] = round(float(value), 6) if s in ("engine_seconds", "wh", "gco2e") else int(value)
            rows.append(row)
        return rows

    def totals(self, **filters) -> dict:
        """One row of sums over everything the filters select (groups not split)."""
        by_outcome = [
            func.coalesce(func.sum(case((requests.c.outcome == o, requests.c.requests), else_=0)),
                          0).label(name)
            for name, o in (("cancelled", "cancelled"), ("errors", "error"))
        ]  # fmt: skip
        query = select(
            *[func.coalesce(func.sum(getattr(requests.c, s)), 0).label(s) for s in SUMS],
            *by_outcome,
        )
        if filters.get("user") is not None:
            query = query.where(requests.c.user == filters["user"])
        if filters.get("start"):
            query = query.where(requests.c.day >= filters["start"])
        if filters.get("end"):
            query = query.where(requests.c.day <= filters["end"])
        with self.engine.connect() as conn:
            item = conn.execute(query).mappings().one()
        out = {s: (round(float(item[s]), 6) if s in ("engine_seconds", "wh", "gco2e")
                   else int(item[s])) for s in SUMS}  # fmt: skip
        out.update(cancelled=int(item["cancelled"]), errors=int(item["errors"]))
        return out

    def groups(self) -> list[str]:
        with self.engine.connect() as conn:
            return [g for (g,) in conn.execute(select(request_groups.c.group).distinct())]

    def _pseudonym_key(self, conn) -> bytes:
        value = conn.execute(
            select(settings.c.value).where(settings.c.name == "pseudonym_key")
        ).scalar()
        if value is None:
            return self._create_pseudonym_key()
        return bytes.fromhex(value)

    def _create_pseudonym_key(self) -> bytes:
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(settings).values(name="pseudonym_key", value=secrets.token_hex(32))
                )
        except IntegrityError:  # another replica made it first: use theirs
            pass
        with self.engine.connect() as conn:
            return bytes.fromhex(
                conn.execute(
                    select(settings.c.value).where(settings.c.name == "pseudonym_key")
                ).scalar_one()
            )

    def pseudonym_of(self, user: str) -> str:
        with self.engine.connect() as conn:
            return pseudonym(self._pseudonym_key(conn), user)

    # -- RGPD: export, erasure, retention ----------------------------------------------------
    def export_user(self, user: str) -> tuple[list[dict], list[dict]]:
        """Every stored row about `user` (oldest first, with its groups), and the
        student's daily quota counters."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(requests).where(requests.c.user == user).order_by(requests.c.id)
            ).mappings().all()
            groups: dict[int, list[str]] = {}
            ids = [r["id"] for r in rows]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for rid, grp in conn.execute(
                    select(request_groups.c.request_id, request_groups.c.group).where(
                        request_groups.c.request_id.in_(chunk)
                    )
                ):
                    groups.setdefault(rid, []).append(grp)
            quota = conn.execute(
                select(daily_tokens.c.day, daily_tokens.c.tokens).where(daily_tokens.c.user == user)
            ).all()
        out = []
        for r in rows:
            item = dict(r)
            item["at"] = r["at"].replace(tzinfo=timezone.utc).isoformat()
            item["groups"] = sorted(groups.get(r["id"], []))
            out.append(item)
        return out, [{"day": d, "tokens": int(t)} for d, t in quota]

    def erase_user(self, user: str, keep_today_quota: bool = True) -> int:
        """Delete every row about `user`; returns the number of requests erased.
        Today's quota counter stays (until the day ends) so that erasure is not a
        way around the daily quota; it holds a number, not what was asked."""
        with self.engine.begin() as conn:
            ids = select(requests.c.id).where(requests.c.user == user).scalar_subquery()
            conn.execute(delete(request_groups).where(request_groups.c.request_id.in_(ids)))
            erased = conn.execute(delete(requests).where(requests.c.user == user)).rowcount
            quota = delete(daily_tokens).where(daily_tokens.c.user == user)
            if keep_today_quota:
                quota = quota.where(daily_tokens.c.day != self.today())
            conn.execute(quota)
        return int(erased or 0)

    def purge(self, retention_days: int, now: datetime | None = None) -> int:
        """Delete requests older than `retention_days` (0: keep everything)."""
        if retention_days <= 0:
            return 0
        now = now or datetime.now(timezone.utc)
        cutoff = (now - timedelta(days=retention_days)).astimezone(timezone.utc).replace(tzinfo=None)
        cutoff_day = self.day_of(now - timedelta(days=retention_days))
        with self.engine.begin() as conn:
            old = select(requests.c.id).where(requests.c.at < cutoff).scalar_subquery()
            conn.execute(delete(request_groups).where(request_groups.c.request_id.in_(old)))
            purged = conn.execute(delete(requests).where(requests.c.at < cutoff)).rowcount
            conn.execute(delete(daily_tokens).where(daily_tokens.c.day < cutoff_day))
        return int(purged or 0)

    # -- settings -------------------------------------------------------------------------------
    def get_setting(self, name: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(settings.c.value).where(settings.c.name == name)).scalar()

    def set_setting(self, name: str, value: str) -> bool:
        """Set `name` once; False when it was already set (another replica won)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(settings).values(name=name, value=value))
        except IntegrityError:
            return False
        return True


def pseudonym(key: bytes, user: str) -> str:
    """A stable, non-reversible name for `user` (same student, same pseudonym)."""
    digest = hmac.new(key, user.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"student-{digest[:10]}"


def _dimensions(by: Iterable[str], by_group: bool = True) -> list[str]:
    dims = []
    for name in by:
        name = name.strip()
        if not name:
            continue
        if name not in DIMENSIONS:
            raise ReportError("by", f"cannot split by {name!r} (one of: {', '.join(DIMENSIONS)})")
        if name not in dims:
            dims.append(name)
    if by_group and "group" not in dims:
        dims.append("group")
    return dims


def _check_day(name: str, value: str) -> None:
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ReportError(name, f"{name}={value!r} is not a date (YYYY-MM-DD)") from None
    if len(value) != 10:
        raise ReportError(name, f"{name}={value!r} is not a date (YYYY-MM-DD)")


def rows_to_csv(rows: list[dict], columns: Sequence[str] | None = None) -> str:
    """The same rows as CSV (header from the first row's keys, or `columns`)."""
    out = io.StringIO()
    names = list(columns or (rows[0].keys() if rows else ("day", "group", "feature", *SUMS)))
    writer = csv.DictWriter(out, fieldnames=names, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return out.getvalue()


def _cell(value):
    """Lists joined with `|`; text that a spreadsheet would run as a formula
    (a group named `=HYPERLINK(...)`) is quoted with a leading apostrophe."""
    if isinstance(value, list):
        value = "|".join(value)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
