"""The study lock: workers claim trials one at a time, so a shared study gets exactly
`hpo.n_trials` trials.

Counting the finished and running trials and asking Optuna for the next one must happen as
one step, or two workers seeing 11 of 12 would both start a 12th. PostgreSQL gives a
session-level advisory lock (released by the server if the worker dies); an SQLite file is
locked with `flock` (a lock separate from SQLite's own, which uses fcntl). Other databases
run without the lock: workers may then overshoot by at most one trial each.
"""

from __future__ import annotations

import fcntl
import hashlib
from typing import Any

from sqlalchemy import text


def _key(study_name: str) -> int:
    """A signed 64-bit advisory-lock key for the study."""
    digest = hashlib.sha256(f"sparsey-hpo:{study_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class StudyLock:
    """`with StudyLock(storage, name):` claims the study for one worker at a time."""

    def __init__(self, storage: Any, study_name: str) -> None:
        self._engine = storage.engine
        self._name = study_name
        self._conn: Any = None
        self._file: Any = None

    def __enter__(self) -> StudyLock:
        dialect = self._engine.dialect.name
        if dialect == "postgresql":
            self._conn = self._engine.connect()
            self._conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _key(self._name)})
        elif dialect == "sqlite":
            database = self._engine.url.database
            if database and database != ":memory:" and not database.startswith("file:"):
                self._file = open(database, "rb")  # noqa: SIM115 (held until __exit__)
                fcntl.flock(self._file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"),
                                   {"k": _key(self._name)})
            finally:
                self._conn.close()  # closing the session releases the lock in any case
                self._conn = None
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
