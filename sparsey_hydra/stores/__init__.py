"""Built-in result stores: sqlite (embedded default), postgresql and firestore.

Each adapter lives in its own module and is registered as a `store` component; a run's
`system.stores` entries pick an adapter by `name` and give its parameters. The postgresql
and firestore adapters import their drivers only when opened, so they cost nothing (and need
no extra installed) until a config selects them.
"""

from __future__ import annotations

from sparsey_hydra.plugins import Component
from sparsey_hydra.stores.base import Store, StoreParams
from sparsey_hydra.stores.firestore_store import FirestoreParams, open_firestore
from sparsey_hydra.stores.postgres_store import PostgresParams, open_postgres
from sparsey_hydra.stores.sql_store import SqlStore
from sparsey_hydra.stores.sqlite_store import SqliteParams, open_sqlite

SqlStoreParams = SqliteParams  # the name before the postgresql and firestore adapters

BUILTIN_STORES: list[Component] = [
    Component(
        name="sqlite",
        factory=open_sqlite,
        params=SqliteParams,
        description="Experiments, step metrics, HPO runs and the model registry in a SQLite "
        "file (any SQLAlchemy URL works).",
    ),
    Component(
        name="postgresql",
        factory=open_postgres,
        params=PostgresParams,
        description="The same tables on a PostgreSQL server; the password is read from the "
        "environment variable named by password_env.",
    ),
    Component(
        name="firestore",
        factory=open_firestore,
        params=FirestoreParams,
        description="The same records in Google Firestore (firebase-admin); the key file "
        "path is read from the variable named by credentials_env.",
    ),
]

__all__ = [
    "BUILTIN_STORES",
    "FirestoreParams",
    "PostgresParams",
    "SqlStore",
    "SqlStoreParams",
    "SqliteParams",
    "Store",
    "StoreParams",
]
