"""Once, on first start: the old JSON state file (per-user counters and today's
quotas) goes into the database, then is renamed `<file>.migrated`.

The old file held sums per (user, feature) since the service started, without
dates: each sum becomes one row with `outcome="imported"` and its request count,
dated at the old counters' start, so that reports and exports still add up.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

from .usage_store import RequestRecord, UsageStore

log = logging.getLogger("jupyter_copilot.hub")
MARK = "json_state_migrated"


def migrate_json_state(store: UsageStore, path: str | Path) -> int:
    """Import `path` if present and not imported yet; returns rows imported."""
    path = Path(path).expanduser()
    if not path.is_file() or store.get_setting(MARK):
        return 0
    try:
        data = json.loads(path.read_text())
        usage, quotas = data.get("usage", {}), data.get("quotas", {})
        since = datetime.fromtimestamp(float(usage.get("since", 0) or 0), timezone.utc)
        records = [_record(row, since) for row in usage.get("counters", [])]
        tokens_today = {str(u): int(t) for u, t in (quotas.get("tokens_today") or {}).items()}
    except (OSError, ValueError, TypeError, AttributeError, KeyError) as exc:
        log.error("jupyter-copilot: cannot migrate %s, left as is: %s", path, exc)
        return 0
    # Mark first: a second replica starting at the same moment imports nothing twice.
    if not store.set_setting(MARK, f"{path} at {datetime.now(timezone.utc).isoformat()}"):
        return 0
    for record in records:
        store.record(record, charge_quota=False)
    day = quotas.get("day")
    for user, tokens in tokens_today.items():
        if day and tokens > 0:
            store.add_tokens(user, day, tokens)
    path.rename(path.with_name(path.name + ".migrated"))
    log.info("jupyter-copilot: %s migrated into the database (%d rows)", path, len(records))
    return len(records)


def _record(row: dict, since: datetime) -> RequestRecord:
    return RequestRecord(
        user=str(row["user"]),
        feature=str(row["feature"]),
        outcome="imported",
        requests=int(row.get("requests", 0)),
        prompt_tokens=int(row.get("prompt_tokens", 0)),
        cached_tokens=int(row.get("cached_tokens", 0)),
        generated_tokens=int(row.get("generated_tokens", 0)),
        engine_seconds=float(row.get("engine_seconds", 0.0)),
        at=since,
    )
