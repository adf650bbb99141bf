"""Who may use what: features on, in hint mode, or off — decided on the server.

A student's browser never decides policy: the frontend only *shows* what the
server says (``GET /copilot/status`` -> ``features``), and every handler asks
`Policy.mode()` again before doing any work, so a modified frontend gains nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FeatureMode = Literal["on", "hint", "off"]
FEATURES = ("completion", "explain_cell", "explain_error")


class PolicyRefusal(Exception):
    """The course policy switches this feature off for this user (HTTP 403)."""

    status = 403

    def __init__(self, feature: str, reason: str) -> None:
        super().__init__(f"{feature} is turned off: {reason}")
        self.feature = feature
        self.reason = reason


@dataclass
class Policy:
    modes: dict[str, FeatureMode] = field(default_factory=lambda: {f: "on" for f in FEATURES})
    reasons: dict[str, str] = field(default_factory=dict)

    def mode(self, feature: str, user: str | None = None) -> FeatureMode:
        return self.modes.get(feature, "on")

    def reason(self, feature: str) -> str:
        return self.reasons.get(feature, "set by the administrator")

    def require(self, feature: str, user: str | None = None) -> FeatureMode:
        mode = self.mode(feature, user)
        if mode == "off":
            raise PolicyRefusal(feature, self.reason(feature))
        return mode

    def features(self, user: str | None = None) -> dict:
        return {
            f: {"mode": self.mode(f, user), **({"reason": self.reason(f)} if self.mode(f, user) != "on" else {})}
            for f in FEATURES
        }
