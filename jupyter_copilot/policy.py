"""Who may use what: features on, in hint mode, or off — decided on the server.

A student's browser never decides policy: the frontend only *shows* what the
server says (``GET /copilot/status`` -> ``features``: ``{mode, reason}``), and every
handler asks `Policy.require()` again before doing any work, so a modified frontend
gains nothing.

- :class:`Policy`: fixed modes from the server's settings (one Jupyter server).
- :class:`CoursePolicy`: the campus policy of the JupyterHub copilot service, set by
  staff in a JSON document (:class:`CoursePolicyDocument`): per feature, for everyone
  or per JupyterHub group, with optional time windows (an exam from 09:00 to 12:00 in
  the course's timezone). The document lives in a file that is re-read when it
  changes (:class:`PolicyFile`), or in memory, set through the admin API.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from datetime import time as time_of_day
from pathlib import Path
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

log = logging.getLogger("jupyter_copilot")

FeatureMode = Literal["on", "hint", "off"]
Feature = Literal["completion", "explain_cell", "explain_error", "ask"]
FEATURES = ("completion", "explain_cell", "explain_error", "ask")
# A feature a policy does not name takes the mode of another: asking a question in the
# explain panel ("ask") is governed like "explain this cell" unless staff say otherwise,
# so an exam rule written before "ask" existed still switches it off.
INHERITS = {"ask": "explain_cell"}
# When several rules apply, the most restrictive one wins: an exam rule must not be
# undone by a permissive rule that happens to come later in the file.
RESTRICTION = {"on": 0, "hint": 1, "off": 2}
DEFAULT_REASON = "set by the administrator"
# An error's details come from the student's browser and cannot be checked: the
# exercise itself, sent as an error's explanation with an invented (or empty) error,
# must not get around an explain-cell rule. So explaining an error is never more open
# than explaining a cell (an exam that turns explain-cell off turns both off). Bounded
# here, once: the server's checks, its status (what the buttons offer) and the
# schedule (the students' notifications) all go through `strictest`.
BOUNDED_BY = {"explain_error": ("explain_cell",)}


class PolicyRefusal(Exception):
    """The course policy switches this feature off for this user (HTTP 403)."""

    status = 403

    def __init__(self, feature: str, reason: str) -> None:
        super().__init__(f"{feature} is turned off: {reason}")
        self.feature = feature
        self.reason = reason


class Decision(NamedTuple):
    mode: FeatureMode
    reason: str | None = None  # why it is not "on" (shown to the student)


def strictest(decide: Callable[[str], Decision], features: Iterable[str]) -> tuple[str, Decision]:
    """The most restrictive decision among `features` and the features that bound them
    (`BOUNDED_BY`), with the feature that made it; on a tie, the first asked."""
    asked = [f for feature in features for f in (feature, *BOUNDED_BY.get(feature, ()))]
    decisions = [(feature, decide(feature)) for feature in dict.fromkeys(asked)]
    return max(decisions, key=lambda item: RESTRICTION[item[1].mode])


@dataclass
class Policy:
    """Fixed modes for everyone. Subclasses override :meth:`decide` only."""

    modes: dict[str, FeatureMode] = field(default_factory=lambda: {f: "on" for f in FEATURES})
    reasons: dict[str, str] = field(default_factory=dict)

    def decide(self, feature: str, user: str | None = None, path: str | None = None) -> Decision:
        """This feature's own mode (no bounds applied): what subclasses override."""
        if feature not in self.modes and feature in INHERITS:
            return self.decide(INHERITS[feature], user, path=path)
        return Decision(self.modes.get(feature, "on"), self.reasons.get(feature))

    def judge(self, feature: str, user: str | None = None, path: str | None = None) -> Decision:
        """What a user gets of `feature`: its mode, bounded by `BOUNDED_BY`."""
        return strictest(lambda f: self.decide(f, user, path=path), (feature,))[1]

    def mode(self, feature: str, user: str | None = None) -> FeatureMode:
        return self.judge(feature, user).mode

    def reason(self, feature: str, user: str | None = None) -> str:
        return self.judge(feature, user).reason or DEFAULT_REASON

    def require(self, feature: str, user: str | None = None, path: str | None = None) -> FeatureMode:
        # `path`: the notebook the request is about, for path-pattern rules (the
        # student's server sends it: see docs/deployment.md on how strong that is).
        return self.require_strictest((feature,), user, path=path)

    def require_strictest(self, features: Iterable[str], user: str | None = None,
                          path: str | None = None) -> FeatureMode:  # fmt: skip
        """The most restrictive of these features' modes (refused if it is "off",
        naming the feature that refused), for a request that is several at once."""
        feature, (mode, reason) = strictest(lambda f: self.decide(f, user, path=path), features)
        if mode == "off":
            raise PolicyRefusal(feature, reason or DEFAULT_REASON)
        return mode

    def features(self, user: str | None = None) -> dict:
        out = {}
        for feature in FEATURES:
            mode, reason = self.judge(feature, user)
            out[feature] = {
                "mode": mode,
                **({"reason": reason or DEFAULT_REASON} if mode != "on" else {}),
            }
        return out

    def status_features(self, user: str | None = None) -> dict:
        """What `GET status` shows of the policy (the campus policy adds its schedule)."""
        return self.features(user)


# --- the course policy document ------------------------------------------------------------

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class _Strict(BaseModel):
    # Typos in a policy file must fail loudly, not be ignored ("group" for "groups").
    model_config = ConfigDict(extra="forbid")


class TimeWindow(_Strict):
    """When a rule applies: one period (``start``/``end`` are date-times, e.g.
    ``2025-06-16T09:00``) or a weekly slot (``start``/``end`` are times of day such as
    ``09:00``, on ``days``; every day when ``days`` is empty). Times without an offset
    are in the policy's timezone; the end is excluded."""

    start: str
    end: str
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=list
    )

    @property
    def weekly(self) -> bool:
        return "T" not in self.start and len(self.start) <= 8

    @model_validator(mode="after")
    def _check(self) -> TimeWindow:
        if self.weekly:
            start, end = time_of_day.fromisoformat(self.start), time_of_day.fromisoformat(self.end)
            if end <= start:
                raise ValueError(f"window {self.start}-{self.end}: end must be after start")
        else:
            if self.days:
                raise ValueError("`days` only goes with times of day (e.g. start: '09:00')")
            if datetime.fromisoformat(self.end) <= datetime.fromisoformat(self.start):
                raise ValueError(f"window {self.start} - {self.end}: end must be after start")
        return self

    def end_if_active(self, now: datetime, tz: ZoneInfo) -> datetime | None:
        """The end of this window if `now` falls inside it, else None."""
        local = now.astimezone(tz)
        if self.weekly:
            if self.days and WEEKDAYS[local.weekday()] not in self.days:
                return None
            start = datetime.combine(local.date(), time_of_day.fromisoformat(self.start), tz)
            end = datetime.combine(local.date(), time_of_day.fromisoformat(self.end), tz)
        else:
            start, end = _aware(self.start, tz), _aware(self.end, tz)
        return end if start <= local < end else None


def _aware(text: str, tz: ZoneInfo) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


class PolicyRule(_Strict):
    """Modes for some features, for some students, possibly at some times only."""

    name: str = ""
    groups: list[str] = Field(
        default_factory=list, description="JupyterHub groups; empty: everyone"
    )
    users: list[str] = Field(default_factory=list, description="JupyterHub user names")
    except_groups: list[str] = Field(default_factory=list, description="never restricted by it")
    features: dict[Feature, FeatureMode]
    reason: str = Field("", description="shown to students, e.g. 'Exam in progress'")
    windows: list[TimeWindow] = Field(default_factory=list, description="empty: always")
    paths: list[str] = Field(
        default_factory=list,
        description="notebook path patterns (`tp-noté/**`, `*.ipynb`); empty: every notebook",
    )

    @field_validator("features")
    @classmethod
    def _no_hinted_completion(cls, value: dict) -> dict:
        if value.get("completion") == "hint":
            raise ValueError("completion is 'on' or 'off' (there is no hint mode for it)")
        return value

    def applies_to(self, user: str, groups: set[str]) -> bool:
        if groups & set(self.except_groups):
            return False
        if not self.groups and not self.users:
            return True
        return user in self.users or bool(groups & set(self.groups))

    def matches_path(self, path: str | None) -> bool:
        """A rule with `paths` applies only to a request that names a matching one."""
        if not self.paths:
            return True
        return path is not None and any(path_matches(p, path) for p in self.paths)


def path_matches(pattern: str, path: str) -> bool:
    """Glob on `/`-separated paths: `*` within one folder name, `**` across folders
    (`tp-noté/**` matches `tp-noté/a.ipynb` and `tp-noté/td1/b.ipynb`)."""
    path = path.strip("/")
    pattern = pattern.strip("/")
    return _glob(pattern.split("/"), path.split("/"))


def _glob(parts: list[str], names: list[str]) -> bool:
    from fnmatch import fnmatchcase

    if not parts:
        return not names
    if parts[0] == "**":
        return any(_glob(parts[1:], names[i:]) for i in range(len(names) + 1))
    return bool(names) and fnmatchcase(names[0], parts[0]) and _glob(parts[1:], names[1:])


class CoursePolicyDocument(_Strict):
    """The whole course policy, as staff write it (JSON). See docs/deployment.md."""

    timezone: str = Field("UTC", description="IANA name, e.g. Europe/Paris")
    default: dict[Feature, FeatureMode] = Field(default_factory=dict)
    default_reason: str = "set by the course staff"
    rules: list[PolicyRule] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r} (use an IANA name such as Europe/Paris)"
            ) from None
        return value

    @field_validator("default")
    @classmethod
    def _default_completion(cls, value: dict) -> dict:
        return PolicyRule._no_hinted_completion(value)

    def decide(self, feature: str, user: str, groups: Iterable[str], now: datetime,
               path: str | None = None) -> Decision:  # fmt: skip
        tz = ZoneInfo(self.timezone)
        mode = _named(self.default, feature) or "on"
        reason = self.default_reason if mode != "on" else None
        groups = set(groups)
        for rule in self.rules:
            wanted = _named(rule.features, feature)
            if wanted is None or RESTRICTION[wanted] <= RESTRICTION[mode]:
                continue
            if not rule.applies_to(user, groups) or not rule.matches_path(path):
                continue
            until = None
            if rule.windows:
                ends = [end for w in rule.windows if (end := w.end_if_active(now, tz))]
                if not ends:
                    continue
                until = max(ends)
            mode = wanted
            reason = rule.reason or rule.name or self.default_reason
            if until is not None:
                reason += f" (until {_until(until, now, tz)})"
        return Decision(mode, reason)


def _named(modes: dict, feature: str) -> FeatureMode | None:
    """The mode `modes` gives `feature`, or that of the feature it inherits from."""
    if feature in modes:
        return modes[feature]
    return modes.get(INHERITS.get(feature, ""))


def _until(end: datetime, now: datetime, tz: ZoneInfo) -> str:
    local_end, local_now = end.astimezone(tz), now.astimezone(tz)
    if local_end.date() == local_now.date():
        return local_end.strftime("%H:%M")
    return local_end.strftime("%Y-%m-%d %H:%M")


# --- where the document comes from ---------------------------------------------------------


class PolicyFile:
    """The course policy document, from a JSON file re-read when it changes, or held
    in memory (no file: set through the admin API, lost on restart).

    Why polling the mtime: it needs no restart, no signal and no inotify, works on
    NFS and Kubernetes ConfigMaps (which swap a symlink), and costs one `stat` per
    `check_interval` seconds. A broken edit keeps the last good policy in force and
    is reported in `error` (admin API, log), so a typo cannot open an exam; with no
    good policy yet (a missing, unreadable or broken file at start), every feature
    is off and students are told why: the service fails closed, never open.
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        initial: CoursePolicyDocument | None = None,
        check_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        default_timezone: str = "UTC",
    ) -> None:
        self.path = Path(path).expanduser() if path else None
        self.default_timezone = default_timezone  # for a file that names none
        self.check_interval = check_interval
        self._clock = clock
        self._document = initial or CoursePolicyDocument()
        self._stamp: tuple[float, int] | None = None
        self._checked_at = float("-inf")
        self.error: str | None = None
        self.loaded_at: float | None = None
        if self.path is not None:
            self._reload(force=True)

    def document(self) -> CoursePolicyDocument:
        if self.path is not None and self._clock() - self._checked_at >= self.check_interval:
            self._reload()
        return self._document

    def _reload(self, force: bool = False) -> None:
        assert self.path is not None
        self._checked_at = self._clock()
        try:
            info = self.path.stat()
        except OSError as exc:  # missing, or a directory we may not enter
            if force:  # at start: nothing known to be safe, so every feature is off
                missing = isinstance(exc, FileNotFoundError)
                self._fail_closed("the file does not exist" if missing else str(exc))
            return
        stamp = (info.st_mtime, info.st_size)
        if stamp == self._stamp and not force:
            return
        self._stamp = stamp
        try:
            data = json.loads(self.path.read_bytes())
            if isinstance(data, dict):
                data.setdefault("timezone", self.default_timezone)
            document = CoursePolicyDocument.model_validate(data)
        except (OSError, ValueError, RecursionError) as exc:
            if force or self.loaded_at is None:
                self._fail_closed(str(exc))
                return
            self.error = f"{self.path}: {exc}"
            log.error(
                "jupyter-copilot: course policy not reloaded, keeping the previous one: %s",
                self.error,
            )
            return
        self._document, self.error, self.loaded_at = document, None, time.time()
        log.info(
            "jupyter-copilot: course policy loaded from %s (%d rules)",
            self.path,
            len(document.rules),
        )

    def _fail_closed(self, why: str) -> None:
        """No policy could be read (and none was before): every feature off, saying why.
        A missing or broken file must never open what an exam rule would have closed."""
        self.error = f"{self.path}: {why}"
        self._document = CoursePolicyDocument(
            timezone=self.default_timezone,
            default={feature: "off" for feature in FEATURES},  # type: ignore[misc]
            default_reason=f"Copilot is off: the course policy cannot be read ({self.error})",
        )
        log.error("jupyter-copilot: course policy unreadable, every feature is off: %s", self.error)

    def replace(self, document: CoursePolicyDocument) -> None:
        """Set a new policy (admin API). With a file, write it atomically first."""
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".policy-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(document.model_dump_json(indent=2, exclude_defaults=True))
            os.replace(tmp, self.path)
            self._stamp = (self.path.stat().st_mtime, self.path.stat().st_size)
        self._document, self.error, self.loaded_at = document, None, time.time()


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class CoursePolicy(Policy):
    """The campus policy: a :class:`PolicyFile`'s document, applied to a hub user's
    groups (`groups_of(user)`) at the time `now()` (injectable, for tests)."""

    def __init__(
        self,
        source: PolicyFile,
        groups_of: Callable[[str], Iterable[str]] = lambda user: (),
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        super().__init__()
        self.source = source
        self.groups_of = groups_of
        self.now = now

    def decide(self, feature: str, user: str | None = None, path: str | None = None) -> Decision:
        groups = self.groups_of(user) if user else ()
        return self.source.document().decide(feature, user or "", groups, self.now(), path)

    def schedule(self, feature: str, user: str | None = None) -> dict:
        """The decision now, when it ends and what comes next (for the status item
        and the start/end notifications); see :func:`schedule`."""
        groups = self.groups_of(user) if user else ()
        return schedule(self.source.document(), feature, user or "", groups, self.now())

    def status_features(self, user: str | None = None) -> dict:
        """`features`, and under "schedule" when each feature's rule in force started,
        when it ends and what comes next (ISO times: the status item and the students'
        start/end notifications)."""
        out = self.features(user)
        plans = {}
        for feature in FEATURES:
            try:
                plan = self.schedule(feature, user)
            except Exception:  # noqa: BLE001 - a schedule is a hint, never a failure
                continue
            plans[feature] = {key: plan[key] for key in ("since", "until", "next")}
        # Beside the features (whose {mode, reason} shape clients compare as a whole).
        out["schedule"] = plans
        return out


# --- when the mode changes (notifications) ---------------------------------------------------

SCHEDULE_HORIZON_DAYS = 8  # weekly slots recur within a week: look a little beyond


def schedule(document: CoursePolicyDocument, feature: str, user: str, groups: Iterable[str],
             now: datetime) -> dict:  # fmt: skip
    """`{mode, reason, since, until, next}`: `since`/`until` bound the current mode
    (ISO times, None when unbounded within the horizon), `next` is `{at, mode,
    reason}` of the next change. Path rules are left out (they depend on the notebook,
    not the time)."""
    groups = list(groups)
    tz = ZoneInfo(document.timezone)

    def decide_at(moment: datetime) -> Decision:  # as the service judges it then
        return strictest(lambda f: document.decide(f, user, groups, moment), (feature,))[1]

    current = decide_at(now)
    boundaries = sorted(b for b in _boundaries(document, user, set(groups), now, tz))
    out: dict = {"mode": current.mode, "reason": current.reason, "since": None,
                 "until": None, "next": None}  # fmt: skip
    for moment in boundaries:
        if moment <= now:
            continue
        after = decide_at(moment)
        if after.mode != current.mode or _base(after.reason) != _base(current.reason):
            out["until"] = moment.isoformat()
            out["next"] = {"at": moment.isoformat(), "mode": after.mode, "reason": after.reason}
            break
    for moment in reversed(boundaries):
        if moment > now:
            continue
        before = decide_at(moment - _EPSILON)
        if before.mode != current.mode or _base(before.reason) != _base(current.reason):
            out["since"] = moment.isoformat()
            break
    return out


_EPSILON = timedelta(seconds=1)


def _base(reason: str | None) -> str | None:
    """A reason without its '(until HH:MM)' tail, which changes with the clock."""
    return reason.split(" (until ")[0] if reason else reason


def _boundaries(document: CoursePolicyDocument, user: str, groups: set[str], now: datetime,
                tz: ZoneInfo):  # fmt: skip
    local = now.astimezone(tz)
    for rule in document.rules:
        if rule.paths or not rule.applies_to(user, groups):
            continue
        for window in rule.windows:
            if not window.weekly:
                yield _aware(window.start, tz)
                yield _aware(window.end, tz)
                continue
            for offset in range(-SCHEDULE_HORIZON_DAYS, SCHEDULE_HORIZON_DAYS + 1):
                day = local.date() + timedelta(days=offset)
                if window.days and WEEKDAYS[day.weekday()] not in window.days:
                    continue
                yield datetime.combine(day, time_of_day.fromisoformat(window.start), tz)
                yield datetime.combine(day, time_of_day.fromisoformat(window.end), tz)


def example_policy() -> dict:
    """The example in docs/deployment.md (also a test fixture)."""
    return json.loads(
        """{
  "timezone": "Europe/Paris",
  "default": {"completion": "on", "explain_cell": "on", "explain_error": "on"},
  "rules": [
    {"name": "L1 hints only", "groups": ["l1-python"],
     "features": {"explain_cell": "hint", "explain_error": "hint"},
     "reason": "Course policy: explanations guide you without giving the answer"},
    {"name": "L1 exam", "groups": ["l1-python"], "except_groups": ["staff"],
     "features": {"completion": "off", "explain_cell": "off", "explain_error": "off"},
     "reason": "Exam in progress",
     "windows": [{"start": "2025-06-16T09:00", "end": "2025-06-16T12:00"}]},
    {"name": "Weekly quiz", "groups": ["l2-data"],
     "features": {"completion": "off"}, "reason": "Quiz",
     "windows": [{"days": ["fri"], "start": "14:00", "end": "14:30"}]}
  ]
}"""
    )


__all__ = [
    "FEATURES",
    "CoursePolicy",
    "CoursePolicyDocument",
    "Decision",
    "Policy",
    "PolicyFile",
    "PolicyRefusal",
    "PolicyRule",
    "TimeWindow",
    "path_matches",
    "schedule",
]
