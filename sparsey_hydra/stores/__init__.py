"""Built-in result stores: one SQLAlchemy-backed store, SQLite file by default."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from sparsey_hydra.plugins import Component
from sparsey_hydra.stores.sql_store import SqlStore


class SqlStoreParams(BaseModel):
    """`system.store` parameters; any SQLAlchemy URL works, SQLite needs no server."""

    model_config = ConfigDict(extra="forbid")

    url: str = "sqlite:///sparsey.db"


BUILTIN_STORES: list[Component] = [
    Component(
        name="sqlite",
        factory=lambda p: SqlStore(p.url),
        params=SqlStoreParams,
        description="Experiments, step metrics and model versions in a SQL database "
        "(SQLite file by default; any SQLAlchemy URL).",
    ),
]

__all__ = ["BUILTIN_STORES", "SqlStore", "SqlStoreParams"]
