"""The job database: one file, its planning, its queue and its reports in one object."""

from __future__ import annotations

from .history import RunHistory
from .leases import Leases
from .planning import Planning
from .reports import Reports


class JobDatabase(Planning, Leases, Reports, RunHistory):
    """The SQLite job database. Thread-safe: one connection, used under a lock.

    Args:
        path: The database file; its folder is created when missing.
    """


__all__ = ["JobDatabase"]
