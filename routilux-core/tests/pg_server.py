"""A throw-away PostgreSQL server for the store tests: ``initdb`` in a temporary directory,
listening only on a Unix socket there (no TCP port, so it never meets another server)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def available() -> bool:
    return _bin("initdb") is not None and _bin("pg_ctl") is not None


@contextmanager
def server() -> Iterator[str]:
    """Start a server; yield its DSN; stop it and delete its files."""
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    assert initdb and pg_ctl
    root = tempfile.mkdtemp(prefix="routilux-pg-")
    data = os.path.join(root, "data")
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        os.chmod(root, 0o755)
    run = {"check": True, "capture_output": True, "timeout": 120}
    subprocess.run([*as_user, initdb, "-D", data, "-A", "trust", "-U", "postgres",
                    "--no-sync", "-E", "UTF8"], **run)  # type: ignore[call-overload]
    opts = f"-c listen_addresses='' -k {root} -c fsync=on -c max_connections=200"
    subprocess.run([*as_user, pg_ctl, "-D", data, "-o", opts, "-l",
                    os.path.join(root, "log"), "-w", "-t", "60", "start"], **run)  # type: ignore[call-overload]
    try:
        yield f"host={root} user=postgres dbname=postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"],
                       check=False, capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
