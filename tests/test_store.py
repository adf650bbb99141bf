"""The usage store on real databases: SQLite files and a real PostgreSQL server
(conftest_db.py). Several service processes are real processes here."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy

from jupyter_copilot.hub.quotas import QuotaExceeded, Quotas, QuotaSettings
from jupyter_copilot.policy import CoursePolicyDocument, example_policy
from jupyter_copilot.store import (
    DatabasePolicy,
    RequestRecord,
    UsageStore,
    current_revision,
    head_revision,
    history,
    migrate_json_state,
    rows_to_csv,
)
from jupyter_copilot.store.tables import metadata

pytestmark = pytest.mark.timeout(300)


def test_migrations_create_every_table_from_an_empty_database(db_url):
    store = UsageStore.open(db_url)
    assert current_revision(store.engine) == head_revision() == "0001"
    names = set(sqlalchemy.inspect(store.engine).get_table_names())
    assert set(metadata.tables) <= names and "alembic_version" in names
    # The tables the migration made are the ones the code uses (no create_all drift).
    for table in metadata.tables.values():
        columns = {c["name"] for c in sqlalchemy.inspect(store.engine).get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name
    UsageStore.open(db_url).close()  # a second start migrates nothing and fails nothing
    store.close()


def test_the_old_json_state_is_imported_once(db_url, tmp_path):
    state = tmp_path / "copilot-state.json"
    since = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc).timestamp()
    store = UsageStore.open(db_url, timezone="Europe/Paris")
    today = store.today()
    state.write_text(json.dumps({
        "usage": {"since": since, "busy_seconds": 12.0, "counters": [
            {"user": "alice", "feature": "completion", "requests": 40, "cancelled": 3,
             "errors": 0, "prompt_tokens": 4000, "cached_tokens": 1000,
             "generated_tokens": 300, "engine_seconds": 9.5},
            {"user": "bob", "feature": "explain_cell", "requests": 2, "cancelled": 0,
             "errors": 1, "prompt_tokens": 600, "cached_tokens": 0,
             "generated_tokens": 200, "engine_seconds": 4.0},
        ]},
        "quotas": {"day": today, "tokens_today": {"alice": 1234, "bob": 56}},
    }))  # fmt: skip
    assert migrate_json_state(store, state) == 2
    assert not state.exists() and (tmp_path / "copilot-state.json.migrated").exists()
    totals = store.totals()
    assert totals["requests"] == 42 and totals["prompt_tokens"] == 4600
    assert totals["generated_tokens"] == 500 and totals["engine_seconds"] == pytest.approx(13.5)
    assert store.tokens_used("alice", today) == 1234 and store.tokens_used("bob", today) == 56
    rows, _ = store.export_user("alice")
    assert rows[0]["outcome"] == "imported" and rows[0]["day"] == "2026-11-30"
    # Put back (a second replica, or a restore from backup): not imported twice.
    (tmp_path / "copilot-state.json.migrated").rename(state)
    assert migrate_json_state(store, state) == 0
    assert store.totals()["requests"] == 42
    store.close()


def test_report_sums_equal_the_requests_made(db_url):
    store = UsageStore.open(db_url, timezone="Europe/Paris")
    rng = random.Random(12)
    made = []
    start = datetime(2026, 11, 23, 7, 0, tzinfo=timezone.utc)
    users = {"alice": ["l1-python"], "bob": ["l1-python", "l2-data"], "dan": ["l2-data"],
             "eve": []}  # fmt: skip
    for i in range(300):
        user = rng.choice(sorted(users))
        rec = RequestRecord(
            user=user, feature=rng.choice(["completion", "explain_cell", "explain_error"]),
            groups=users[user], prompt_tokens=rng.randint(0, 900),
            generated_tokens=rng.randint(0, 90), engine_seconds=rng.random() * 3,
            at=start + timedelta(hours=i * 0.7),
        )  # fmt: skip
        store.record(rec)
        made.append(rec)
    for group in ("l1-python", "l2-data"):
        mine = [r for r in made if group in r.groups]
        for by in (["day"], ["user"], ["feature"], ["day", "feature"]):
            rows = store.report(by=by, group=group)
            assert {r["group"] for r in rows} == {group}
            assert sum(r["requests"] for r in rows) == len(mine)
            assert sum(r["prompt_tokens"] for r in rows) == sum(r.prompt_tokens for r in mine)
            assert sum(r["generated_tokens"] for r in rows) == sum(r.generated_tokens for r in mine)
            assert sum(r["engine_seconds"] for r in rows) == pytest.approx(
                sum(r.engine_seconds for r in mine), abs=1e-3)  # fmt: skip
    # Days are the service's local days; from/to are inclusive.
    day = store.day_of(made[100].at)
    rows = store.report(by=["day"], start=day, end=day, by_group=False)
    assert rows == [r for r in rows if r["day"] == day] and len(rows) == 1
    assert rows[0]["requests"] == sum(1 for r in made if store.day_of(r.at) == day)
    # Energy: engine seconds x the configured factors.
    total = store.totals()
    assert total["wh"] == pytest.approx(total["engine_seconds"] * store.factors.watts / 3600, 1e-4)
    # Per-student rows are pseudonyms, stable and not the name.
    by_user = store.report(by=["user"], by_group=False)
    assert {r["user"] for r in by_user} == {store.pseudonym_of(u) for u in users if any(
        m.user == u for m in made)}  # fmt: skip
    assert not {r["user"] for r in by_user} & set(users)
    named = store.report(by=["user"], by_group=False, pseudonymise=False)
    assert sum(r["requests"] for r in named) == len(made)
    csv_text = rows_to_csv(store.report(by=["day", "feature"], group="l2-data"))
    assert csv_text.splitlines()[0].startswith("day,feature,group,requests")
    store.close()


def test_export_and_erasure_of_one_student(db_url):
    store = UsageStore.open(db_url)
    for user in ("alice", "alice", "bob"):
        store.record(RequestRecord(user, "completion", ["l1"], prompt_tokens=10,
                                   generated_tokens=2))  # fmt: skip
    rows, quota = store.export_user("alice")
    assert len(rows) == 2 and all(r["user"] == "alice" and r["groups"] == ["l1"] for r in rows)
    assert quota == [{"day": store.today(), "tokens": 24}]
    assert set(rows[0]) >= {"at", "feature", "mode", "prompt_tokens", "generated_tokens", "wh"}
    assert store.erase_user("alice") == 2
    assert store.export_user("alice")[0] == []
    assert store.totals()["requests"] == 1  # bob's row stays
    assert store.report(by=["user"], pseudonymise=False)[0]["user"] == "bob"
    # Today's counter stays until midnight: erasure is no way around the quota.
    assert store.tokens_used("alice", store.today()) == 24
    store.close()


def test_rows_older_than_the_retention_period_are_purged(db_url):
    store = UsageStore.open(db_url)
    now = datetime.now(timezone.utc)
    for age in (400, 200, 1):
        store.record(RequestRecord("alice", "completion", ["l1"], prompt_tokens=1,
                                   at=now - timedelta(days=age)))  # fmt: skip
    assert store.purge(365) == 1
    assert store.totals()["requests"] == 2
    assert store.purge(0) == 0  # 0: keep forever
    store.close()


def test_policy_versions_are_the_history_and_the_newest_is_in_force(db_url):
    store = UsageStore.open(db_url)
    first = DatabasePolicy(store, check_interval=0.0)
    other_replica = DatabasePolicy(UsageStore.open(db_url), check_interval=0.0)
    first.replace(CoursePolicyDocument.model_validate(example_policy()), author="prof")
    changed = example_policy()
    changed["rules"] = changed["rules"][:1]
    first.replace(CoursePolicyDocument.model_validate(changed), author="assistant")
    assert len(other_replica.document().rules) == 1  # seen by the other process's source
    versions = history(store)
    assert [v["author"] for v in versions] == ["assistant", "prof"]
    assert "- rule 'L1 exam'" in versions[0]["summary"]
    assert "+ rule 'L1 hints only'" in versions[1]["summary"]
    # A version that does not validate (hand edit) turns everything off: fail closed.
    with store.engine.begin() as conn:
        conn.execute(sqlalchemy.text(
            "INSERT INTO copilot_policy_versions (at, author, summary, document) "
            "VALUES (:at, 'dba', '', '{\"rules\": 3}')"), {"at": datetime(2026, 1, 1)})  # fmt: skip
    broken = other_replica.document()
    assert set(broken.default.values()) == {"off"} and other_replica.error
    store.close()


# --- several processes on one database -------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import sys, time
    from jupyter_copilot.hub.quotas import QuotaExceeded, Quotas, QuotaSettings
    from jupyter_copilot.store import RequestRecord, UsageStore

    url, name, count, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = UsageStore.open(url)
    quotas = Quotas(QuotaSettings(requests_per_minute={}, max_in_flight=0,
                                  daily_tokens=limit), daily=store)
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    admitted = refused = 0
    for i in range(count):
        try:
            with quotas.admit("alice", "completion"):
                rid = store.record(RequestRecord("alice", "completion", ["l1"],
                                                 prompt_tokens=7, generated_tokens=3))
        except QuotaExceeded:
            refused += 1
            continue
        admitted += 1
        print("committed", rid, flush=True)
    print("done", admitted, refused, flush=True)
    """
)


def _workers(url: str, tmp_path, n: int, count: int, limit: int) -> list[subprocess.Popen]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = [
        subprocess.Popen([sys.executable, str(script), url, f"w{i}", str(count), str(limit)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
        for i in range(n)
    ]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    return procs


def test_two_service_processes_enforce_one_daily_quota(db_url, tmp_path):
    UsageStore.open(db_url).close()  # migrated once, before the replicas start
    limit = 1000  # 100 requests of 10 tokens
    procs = _workers(db_url, tmp_path, n=2, count=120, limit=limit)
    admitted = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0
        done = out.strip().splitlines()[-1].split()
        admitted += int(done[1])
    store = UsageStore.open(db_url)
    used = store.tokens_used("alice", store.today())
    # Every charge counted (no lost update) and equal to the committed rows.
    assert used == 10 * admitted == 10 * store.totals()["requests"]
    # One quota for both: a check and its charge are not one step, so each process
    # may start one request while the other's last charge commits; never more.
    assert limit <= used <= limit + 10 * len(procs)
    quotas = Quotas(QuotaSettings(daily_tokens=limit), daily=store)
    with pytest.raises(QuotaExceeded):
        with quotas.admit("alice", "completion"):
            pass
    store.close()


def test_kill_9_mid_traffic_loses_nothing_committed(db_url, tmp_path):
    UsageStore.open(db_url).close()
    procs = _workers(db_url, tmp_path, n=2, count=100_000, limit=0)
    committed: set[int] = set()
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline or len(committed) < 20:
        for proc in procs:
            line = proc.stdout.readline()
            if line.startswith("committed"):
                committed.add(int(line.split()[1]))
    for proc in procs:
        os.kill(proc.pid, signal.SIGKILL)  # mid-traffic: a transaction may be open
    for proc in procs:
        proc.wait(30)
        committed.update(int(line.split()[1]) for line in proc.stdout if
                         line.startswith("committed"))  # fmt: skip
    store = UsageStore.open(db_url)  # a restart: recovery of the WAL / the server's log
    with store.engine.connect() as conn:
        stored = {r for (r,) in conn.execute(sqlalchemy.text("SELECT id FROM copilot_requests"))}
    assert committed <= stored
    # Rows and quota charges are one transaction: they agree even after the kill.
    assert store.tokens_used("alice", store.today()) == 10 * len(stored)
    store.close()


def test_an_unreachable_database_refuses_with_503_not_500(tmp_path):
    from jupyter_copilot.store.usage_store import StoreUnavailable

    store = UsageStore(sqlalchemy.create_engine(f"sqlite:///{tmp_path}/missing/dir/x.sqlite"))
    quotas = Quotas(QuotaSettings(daily_tokens=100), daily=store)
    with pytest.raises(StoreUnavailable) as caught:
        with quotas.admit("alice", "completion"):
            pass
    assert caught.value.status == 503 and caught.value.retry_after == 5


def test_two_replicas_starting_at_once_on_an_empty_database(db_url, tmp_path):
    script = tmp_path / "start.py"
    script.write_text("import sys\nfrom jupyter_copilot.store import UsageStore\n"
                      "UsageStore.open(sys.argv[1]).close()\nprint('ok')\n")  # fmt: skip
    procs = [subprocess.Popen([sys.executable, str(script), db_url], stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]  # fmt: skip
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == "ok"
    store = UsageStore.open(db_url)
    assert current_revision(store.engine) == head_revision()
    store.close()
