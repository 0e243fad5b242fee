"""Cached answers to what every prediction asks the database: who holds this API key, which task has this name,
which user has this name, and which adapter version answers that user in that task.

A hot prediction then touches no database session at all. The cache is correct, not merely fresh enough: before
answering a request it reads the database's *change stamp*, a value that changes whenever any connection of any
process commits, and empties itself when the stamp moved. A revoked key, a newly activated version (a worker's,
the CLI's, another server's) is therefore seen by the very next request. The stamp costs one tiny query on a
connection kept for it:

- SQLite: the header of the WAL index (the ``-shm`` file every connection maps; its change counter moves with
  each commit), read from memory without a query or a system call; ``PRAGMA data_version`` when the database is
  not in WAL mode;
- PostgreSQL: ``pg_current_snapshot()`` (its xmin, xmax and in-progress list change when any write commits).

Any commit empties the cache, also commits that change nothing here (a job's heartbeat); entries then refill from
the database on first use. Another database, or a stamp that cannot be read, turns caching off: every lookup goes
to the database, as before.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.engine import Engine as DatabaseEngine
from sqlmodel import Session

from localize.db.models import AdapterVersion, Task, User
from localize.services import adapters as adapter_service
from localize.services import users as user_service
from localize.services.tasks import get_task
from localize.services.users import get_user

logger = logging.getLogger(__name__)

T = TypeVar("T")
# The WAL-index header SQLite keeps at the start of the -shm file (first of two copies): version, change counter,
# page size, last valid frame, pages, checksums and salts; it changes with every commit (sqlite.org/walformat.html).
WAL_INDEX_HEADER_BYTES = 48


class CacheMiss(Exception):
    """Raised by a lookup with ``load=False`` whose answer is not cached (the caller then asks again off the event
    loop, with ``load=True``)."""


@dataclass(frozen=True)
class KeyHolder:
    """The user an API key belongs to (names and ids only: nothing attached to a database session)."""

    user_id: int
    name: str


class _Stamp:
    """Reads the database's change stamp on a connection of its own."""

    def __init__(self, database: DatabaseEngine) -> None:
        self.database = database
        self.dialect = database.dialect.name
        self._connection: Any = None
        self._wal_index: Any = None  # an mmap of the SQLite WAL index's header, when there is one
        self._wal_descriptor: int | None = None
        self._lock = threading.Lock()

    @property
    def supported(self) -> bool:
        return self.dialect in ("sqlite", "postgresql")

    def read(self) -> object:
        """The current stamp; a fresh object (never equal to an earlier one) when it cannot be read."""
        shared = self._wal_index
        if shared is not None:
            # The first copy of the WAL-index header: a memory read, so the event loop never gives up the GIL here
            # (a query would, and waits to get it back while the engine's threads run).
            return shared[:WAL_INDEX_HEADER_BYTES]
        with self._lock:
            try:
                if self._connection is None:
                    self._connection = self._connect()
                    if self._wal_index is not None:
                        return self._wal_index[:WAL_INDEX_HEADER_BYTES]
                cursor = self._connection.cursor()
                try:
                    cursor.execute("PRAGMA data_version" if self.dialect == "sqlite"
                                   else "SELECT pg_current_snapshot()::text")
                    return cursor.fetchone()[0]
                finally:
                    cursor.close()
            except Exception:  # noqa: BLE001  (a lost connection: reconnect next time, and trust nothing cached)
                logger.warning("the database's change stamp could not be read", exc_info=True)
                self._close_connection()
                return object()

    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            import mmap
            import sqlite3

            path = self.database.url.database
            connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
            connection.execute("PRAGMA data_version").fetchone()  # opens the WAL index if there is one
            if str(mode).lower() == "wal":
                # Both descriptors (ours and the one mmap keeps) stay open until close(): closing *any* descriptor
                # of a file drops every POSIX lock this process holds on it, SQLite's own included. SQLite's lock
                # on the -shm file tells other processes this one uses the WAL index; without it the next process
                # to open the database takes the index for abandoned and truncates it under this process's
                # connections (their mappings then fault: SIGBUS).
                try:
                    self._wal_descriptor = os.open(f"{path}-shm", os.O_RDONLY | os.O_CLOEXEC)
                    self._wal_index = mmap.mmap(self._wal_descriptor, WAL_INDEX_HEADER_BYTES, access=mmap.ACCESS_READ)
                except (OSError, ValueError):
                    logger.info("the WAL index of %s cannot be mapped; the change stamp is read by query", path)
            return connection
        pooled = self.database.raw_connection()
        connection = pooled.driver_connection
        pooled.detach()  # kept for good, never handed back to the pool in autocommit mode
        connection.rollback()
        connection.autocommit = True
        return connection

    def close(self) -> None:
        """At shutdown, with this process's other connections to the database about to close (see _connect)."""
        if self._wal_index is not None:
            self._wal_index.close()
            self._wal_index = None
        if self._wal_descriptor is not None:
            os.close(self._wal_descriptor)
            self._wal_descriptor = None
        self._close_connection()

    def _close_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # noqa: BLE001
                pass
            self._connection = None


class ServingLookups:
    """The cache described in the module docstring; one per runtime, shared by every request thread."""

    def __init__(self, database: DatabaseEngine, *, capacity: int = 100_000) -> None:
        self.database = database
        self.capacity = capacity
        self._stamp = _Stamp(database)
        database_name = database.url.database
        self.enabled = self._stamp.supported and not (self._stamp.dialect == "sqlite"
                                                      and database_name in (None, "", ":memory:"))
        self._lock = threading.Lock()
        self._current: object = object()
        self._keys: dict[str, KeyHolder] = {}
        self._tasks: dict[str, Task] = {}
        self._users: dict[str, User] = {}
        self._serving: dict[tuple[int, int, bool], tuple[AdapterVersion, str]] = {}

    # -- freshness ------------------------------------------------------------------------------------------------
    def refresh(self) -> object:
        """Empties the cache if anything was committed since the last call; returns the stamp now in force."""
        if not self.enabled:
            return self._current
        stamp = self._stamp.read()
        with self._lock:
            if stamp != self._current:
                self._keys.clear()
                self._tasks.clear()
                self._users.clear()
                self._serving.clear()
                self._current = stamp
        return stamp

    def close(self) -> None:
        self._stamp.close()

    # -- lookups --------------------------------------------------------------------------------------------------
    def key_holder(self, key: str, *, load: bool = True) -> KeyHolder | None:
        """The user whose API key is ``key``, or None (an unknown key is never cached: it would let anyone fill
        the cache)."""
        digest = user_service.hash_key(key)

        def fetch(session: Session) -> KeyHolder | None:
            user = user_service.authenticate(session=session, key=key)
            return None if user is None else KeyHolder(user_id=user.id, name=user.name)

        return self._get(self._keys, digest, fetch, load=load, keep=lambda holder: holder is not None)

    def task(self, name: str, *, load: bool = True) -> Task:
        return self._get(self._tasks, name, lambda session: get_task(session=session, name=name), load=load)

    def user(self, name: str, *, load: bool = True) -> User:
        return self._get(self._users, name, lambda session: get_user(session=session, name=name), load=load)

    def serving(self, task: Task, user: User, *, allow_prior: bool, load: bool = True) -> tuple[AdapterVersion, str]:
        """The version that answers ``user`` in ``task`` and where it comes from (``user`` or ``prior``)."""

        def fetch(session: Session) -> tuple[AdapterVersion, str]:
            return adapter_service.serving_version(session=session, task=task, user=user, allow_prior=allow_prior)

        return self._get(self._serving, (task.id, user.id, allow_prior), fetch, load=load)

    def _get(self, table: dict, key: Any, fetch: Callable[[Session], T], *, load: bool,
             keep: Callable[[T], bool] = lambda _: True) -> T:
        if self.enabled:
            found = table.get(key, _MISSING)
            if found is not _MISSING:
                return found
        if not load:
            raise CacheMiss(key)
        stamp = self._current
        with Session(self.database, expire_on_commit=False) as session:
            value = fetch(session)
            session.expunge_all()  # detached, with every column loaded: safe to share read-only between threads
        if self.enabled and keep(value):
            with self._lock:
                # Only if nothing was committed meanwhile: else the value may predate the change that emptied the
                # cache, and must not outlive it.
                if stamp is self._current:
                    if len(table) >= self.capacity:
                        table.clear()
                    table[key] = value
        return value


_MISSING = object()
