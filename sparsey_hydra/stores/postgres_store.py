"""The `postgresql` adapter: the same SQL store on a lab's PostgreSQL server.

The URL is built from separate config keys so that the password never has to be written into
the config: it is read at open time from the environment variable that `password_env` names,
handed to the driver inside a `sqlalchemy.URL`, and masked in every message.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field, model_validator
from sqlalchemy.engine import URL

from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.stores.base import StoreParams
from sparsey_hydra.stores.sql_store import SqlStore


class PostgresParams(StoreParams):
    """`system.stores.<key>` for `name: postgresql`."""

    host: str = "127.0.0.1"
    port: int = Field(default=5432, ge=1, le=65535)
    database: str = "sparsey"
    user: str = "sparsey"
    password_env: str | None = "SPARSEY_PG_PASSWORD"  # the variable's NAME; null = no password
    driver: str = "psycopg"  # SQLAlchemy driver: postgresql+<driver>
    connect_timeout: int = Field(default=10, ge=1)
    options: dict[str, str] = Field(default_factory=dict)  # extra libpq keys, e.g. sslmode

    @model_validator(mode="before")
    @classmethod
    def _no_password_in_config(cls, values: Any) -> Any:
        if isinstance(values, dict) and ("password" in values or "url" in values):
            bad = "password" if "password" in values else "url"
            raise ValueError(
                f"'{bad}' does not belong in the config (it would be recorded); put the "
                "password in an environment variable and give its NAME as password_env"
            )
        return values


def postgres_url(params: PostgresParams, key: str) -> URL:
    """The connection URL, password taken from the environment (never from the config)."""
    password = None
    if params.password_env:
        password = os.environ.get(params.password_env)
        if password is None:
            raise SparseyConfigError(
                f"{key}.password_env: environment variable ${params.password_env} is not set; "
                f"export {params.password_env}=<password> (the password is read only from the "
                "environment) or set password_env=null for a server that needs none"
            )
    return URL.create(
        f"postgresql+{params.driver}",
        username=params.user,
        password=password,
        host=params.host,
        port=params.port,
        database=params.database,
        query=dict(params.options),
    )


def open_postgres(params: PostgresParams, key: str = "system.stores.postgresql") -> SqlStore:
    """Connect (creating missing tables); an unreachable server is a one-line error."""
    env = f"${params.password_env}" if params.password_env else "no password"
    hint = (f"check {key}.host/port/database/user ({params.user}@{params.host}:{params.port}/"
            f"{params.database}, password from {env}) and that the server is running")
    return SqlStore(postgres_url(params, key), data_resolution=params.data_resolution,
                    key=key, hint=hint, connect_args={"connect_timeout": params.connect_timeout})


__all__ = ["PostgresParams", "open_postgres", "postgres_url"]
