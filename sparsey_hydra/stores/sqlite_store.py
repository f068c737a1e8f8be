"""The `sqlite` adapter: the embedded default store, one file, no server, no account."""

from __future__ import annotations

from sparsey_hydra.stores.base import StoreParams
from sparsey_hydra.stores.sql_store import SQLITE_HINT, SqlStore


class SqliteParams(StoreParams):
    """`system.stores.<key>` for `name: sqlite`; any SQLAlchemy URL works, SQLite needs none.

    A relative file (`sqlite:///sparsey.db`) lives in the directory the command was launched
    from, so every run started there shares it.
    """

    url: str = "sqlite:///sparsey.db"


def open_sqlite(params: SqliteParams, key: str = "system.stores.sqlite") -> SqlStore:
    """Open (creating file, folder and tables as needed) the SQLite store."""
    return SqlStore(params.url, data_resolution=params.data_resolution, key=f"{key}.url",
                    hint=SQLITE_HINT)


__all__ = ["SqliteParams", "open_sqlite"]
