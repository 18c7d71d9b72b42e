"""The job database file: opened in WAL mode, its schema version checked, and one connection
shared under a lock by every part of the database."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from s3longbow.errors import ConfigError

from .schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION


class SqliteFile:
    """One job database file: its connection, used under a lock, and its transactions.

    Args:
        path: The database file; its folder is created when missing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=30
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._conn.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(
                f"cannot open the job database {path}: {exc}",
                hint="pass --db with a writable path, or delete a corrupt file",
            ) from None
        self._lock = threading.Lock()
        self._check_version()

    def _check_version(self) -> None:
        row = self._conn.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
        if row is None:
            self._conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) < SCHEMA_VERSION:
            self._migrate()
        elif int(row[0]) != SCHEMA_VERSION:
            raise ConfigError(
                f"the job database {self.path} has schema {row[0]}, this version uses "
                f"{SCHEMA_VERSION}",
                hint="use another --db file for this version (or the newer Longbow that wrote it)",
            )

    def _migrate(self) -> None:
        """Bring a file of an older schema up to this one, in one transaction (another
        process opening the same file meanwhile waits, then finds it done)."""
        with self._tx() as db:
            version = int(db.execute("SELECT value FROM meta WHERE name='schema'").fetchone()[0])
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[step]:
                    db.execute(statement)
            db.execute("UPDATE meta SET value=? WHERE name='schema'", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _one(self, sql: str, params: tuple[object, ...]) -> Any:
        """The first row of a query, or None. Rows carry no types: the caller states the
        shape its query selects (`row: RunRow | None = self._one(...)`)."""
        with self._lock:
            return self._conn.execute(sql, params).fetchone()
