"""The serving cache's change stamp on SQLite maps the WAL index; it must leave SQLite's hold on that file alone."""
from __future__ import annotations

import subprocess
import sys

from sqlalchemy import text

from localize.db.session import make_engine
from localize.services.lookups import ServingLookups

# Whether any process holds SQLite's "DMS" lock on the -shm file (byte 128, sqlite.org/walformat.html): a process
# that finds it free takes the WAL index for abandoned and truncates it, under every other process's mappings.
PROBE = """
import fcntl, os, sys
descriptor = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 128)
    print("free")
except OSError:
    print("held")
"""


def dms_lock(shm_path: str) -> str:
    return subprocess.run([sys.executable, "-c", PROBE, shm_path], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_mapping_the_wal_index_keeps_sqlites_lock_on_it(tmp_path) -> None:
    path = tmp_path / "localize.db"
    database = make_engine(f"sqlite:///{path}")
    with database.begin() as connection:
        connection.execute(text("CREATE TABLE notes (body TEXT)"))
    lookups = ServingLookups(database)
    try:
        with database.connect() as connection:  # a pooled connection, as the API's request threads hold them
            connection.execute(text("SELECT count(*) FROM notes")).one()
            assert dms_lock(f"{path}-shm") == "held"
            lookups.refresh()  # maps the WAL index's header
            assert lookups._stamp._wal_index is not None, "the stamp is read from the mapped header here"
            assert dms_lock(f"{path}-shm") == "held"  # before the fix: "free" (closing a file drops its locks)

            # Another process writes; this one's cache sees the commit, and its connections still read.
            subprocess.run([sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
                            "c.execute(\"INSERT INTO notes VALUES ('x')\"); c.commit(); c.close()", str(path)],
                           check=True)
            assert dms_lock(f"{path}-shm") == "held"
            assert connection.execute(text("SELECT count(*) FROM notes")).scalar_one() == 1
    finally:
        lookups.close()
        database.dispose()
