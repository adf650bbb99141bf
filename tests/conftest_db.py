"""Real databases for the store tests (loaded by tests/conftest.py's `pytest_plugins`):

- `sqlite_url`: a fresh SQLite file per test.
- `postgres_url`: a throwaway PostgreSQL cluster (Debian's `postgresql`: initdb +
  pg_ctl) in a temp folder, on a free port and its own unix socket, started once per
  session and owned by an unprivileged user when the tests run as root (postgres
  refuses to run as root). `scripts/test` installs the package on a clean machine;
  where it cannot be found the tests that need it are skipped, saying why.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest


def find_pg_bin() -> Path | None:
    for name in ("initdb", "pg_ctl"):
        if not shutil.which(name):
            break
    else:
        return Path(os.path.realpath(shutil.which("initdb"))).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_owner(owner: str | None, argv: list[str]) -> list[str]:
    if owner is None:
        return argv
    runuser = shutil.which("runuser") or shutil.which("su")
    if runuser and runuser.endswith("runuser"):
        return [runuser, "-u", owner, "--", *argv]
    return ["su", owner, "-s", "/bin/sh", "-c", " ".join(argv)]


@pytest.fixture(scope="session")
def postgres_server():
    """`postgresql+psycopg://...` of a fresh cluster's `postgres` database."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'jupyterlab-campus-copilot[postgres]')")
    pg_bin = find_pg_bin()
    if pg_bin is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; scripts/test "
                    "does it when run as root)")  # fmt: skip
    from jupyter_copilot.bench.llama_server import free_port

    owner = None
    if os.geteuid() == 0:
        owner = "postgres" if _has_user("postgres") else "nobody"
    folder = Path(tempfile.mkdtemp(prefix="copilot-pg-"))
    data, sock = folder / "data", folder / "sock"
    sock.mkdir()
    if owner:
        info = pwd.getpwnam(owner)
        for path in (folder, sock):
            os.chown(path, info.pw_uid, info.pw_gid)
    port = free_port()
    run = lambda argv, **kw: subprocess.run(_as_owner(owner, argv), check=True,  # noqa: E731
                                            capture_output=True, timeout=120, **kw)  # fmt: skip
    try:
        run([str(pg_bin / "initdb"), "-D", str(data), "-U", "copilot", "-A", "trust",
             "-E", "UTF8", "--no-sync"])  # fmt: skip
        opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=on"
        run([str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w",
             "-t", "60", "-o", opts, "start"])  # fmt: skip
    except subprocess.CalledProcessError as exc:
        log = (folder / "log").read_text() if (folder / "log").exists() else ""
        raise RuntimeError(f"cannot start PostgreSQL: {exc.stderr.decode()[-2000:]}{log[-2000:]}")
    try:
        yield f"postgresql+psycopg://copilot@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_owner(owner, [str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "fast",
                                         "-w", "stop"]), capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture
def postgres_url(postgres_server):
    """A new empty database on the session's cluster, for one test."""
    import sqlalchemy

    name = "t" + uuid.uuid4().hex[:12]
    admin = sqlalchemy.create_engine(postgres_server + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    yield f"{postgres_server}/{name}"


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'copilot-service.sqlite'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request):
    """Each test that takes it runs on SQLite and on a real PostgreSQL server."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return request.getfixturevalue(name)
