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
            return
        version = int(row[0])
        while version < SCHEMA_VERSION and version in MIGRATIONS:
            with self._tx() as db:
                # Another process may have migrated it meanwhile: read it again, locked.
                current = db.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
                if int(current[0]) == version:
                    for statement in MIGRATIONS[version]:
                        db.execute(statement)
                    db.execute("UPDATE meta SET value=? WHERE name='schema'", (str(version + 1),))
                version = max(version + 1, int(current[0]))
        if version != SCHEMA_VERSION:
            raise ConfigError(
                f"the job database {self.path} has schema {version}, this version uses "
                f"{SCHEMA_VERSION}",
                hint="use another --db file for this version",
            )

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
