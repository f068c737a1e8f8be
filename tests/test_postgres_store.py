"""The postgresql adapter against a real PostgreSQL server: credentials, errors, sharing."""

from __future__ import annotations

from pathlib import Path

import pytest
from services import PostgresServer, free_port

from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.plugins import get_registry
from sparsey_hydra.stores.postgres_store import PostgresParams, open_postgres
from sparsey_hydra.stores.store_set import open_store


def _open(server: PostgresServer, database: str, **extra: object):
    return open_store(server.store_config(database, **extra), get_registry(), Path("."),
                      key="system.stores.pg")


def test_password_comes_from_the_named_variable_and_is_never_shown(
        postgres_server: PostgresServer, pg_database: str) -> None:
    store = _open(postgres_server, pg_database)
    try:
        exp = store.start_experiment("e", "train", {"a": 1}, seed=0)
        assert store.get_experiment(exp)["config"] == {"a": 1}
        shown = f"{store.url} {store.engine!r} {store.engine.url!r}"
        assert postgres_server.password not in shown
        assert f"postgres:***@127.0.0.1:{postgres_server.port}/{pg_database}" in store.url
    finally:
        store.close()
    # the tables are real PostgreSQL tables, readable by any client
    with postgres_server.connect(pg_database) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert tables == {"experiments", "step_metrics", "models", "hpo_runs"}
        assert conn.execute("SELECT name FROM experiments").fetchone()[0] == "e"


def test_wrong_password_is_one_line_and_does_not_echo_it(
        postgres_server: PostgresServer, pg_database: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WRONG_PG_PW", "not-the-password-42")
    with pytest.raises(SparseyConfigError) as info:
        _open(postgres_server, pg_database, password_env="WRONG_PG_PW")
    msg = str(info.value)
    assert msg.startswith("system.stores.pg: cannot open ")
    assert "password authentication failed" in msg and "$WRONG_PG_PW" in msg
    assert "not-the-password-42" not in msg and "\n" not in msg


def test_unset_password_variable_names_it(postgres_server: PostgresServer,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_PG_PW", raising=False)
    with pytest.raises(SparseyConfigError) as info:
        _open(postgres_server, "postgres", password_env="NO_SUCH_PG_PW")
    assert str(info.value).startswith(
        "system.stores.pg.password_env: environment variable $NO_SUCH_PG_PW is not set; "
        "export NO_SUCH_PG_PW=<password>")


def test_unreachable_server_and_missing_database_are_one_line(
        postgres_server: PostgresServer) -> None:
    with pytest.raises(SparseyConfigError) as info:
        open_postgres(PostgresParams(port=free_port(), user="postgres",
                                     password_env=postgres_server.password_env,
                                     connect_timeout=3), key="system.stores.pg")
    msg = str(info.value)
    assert msg.startswith("system.stores.pg: cannot open 'postgresql+psycopg://postgres:***@")
    assert "Connection refused" in msg or "connection failed" in msg
    assert "check system.stores.pg.host/port/database/user" in msg and "\n" not in msg

    with pytest.raises(SparseyConfigError, match='database "no_such_db" does not exist'):
        _open(postgres_server, "no_such_db")


def test_password_or_url_in_the_config_is_refused() -> None:
    registry = get_registry()
    for bad in ({"password": "hunter2"}, {"url": "postgresql://u:hunter2@h/db"}):
        with pytest.raises(SparseyConfigError) as info:
            registry.build_params("store", "postgresql", bad, key="system.stores.pg")
        msg = str(info.value)
        assert msg.startswith("system.stores.pg: ") and "password_env" in msg
        assert "hunter2" not in msg


def test_two_processes_share_one_database(postgres_server: PostgresServer,
                                          pg_database: str) -> None:
    """HPO trials in several processes write one database: ids and versions stay unique."""
    first, second = _open(postgres_server, pg_database), _open(postgres_server, pg_database)
    try:
        a = first.start_experiment("a", "train", {}, seed=0)
        b = second.start_experiment("b", "train", {}, seed=0)
        assert a != b
        first.add_model("m", first.next_model_version("m"), "p1", "0" * 64, {}, None, a)
        second.add_model("m", second.next_model_version("m"), "p2", "1" * 64, {}, None, b)
        assert [m["path"] for m in first.list_models()] == ["p1", "p2"]
    finally:
        first.close()
        second.close()
