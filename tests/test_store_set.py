"""StoreSet on real stores: data_resolution, a store failing mid-run, config checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from services import PostgresServer, free_port, start_firestore_emulator

from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.plugins import get_registry
from sparsey_hydra.stores.sql_store import SqlStore
from sparsey_hydra.stores.store_set import StoreSet, check_store_config, open_stores

ROWS = [("train", 0, 1, "m", 0.5), ("train", 1, 1, "m", 0.75)]
SUMMARY = {"train": {"frames": 2}, "layers": [{"layer": 1, "g": 0.5}]}


def _system(stores: dict[str, Any], writes: list[str], read: str | None = None
            ) -> dict[str, Any]:
    return {"stores": stores, "write_stores": writes, "read_store": read or writes[0]}


def _sqlite(tmp_path: Path, name: str = "s.db", **extra: Any) -> dict[str, Any]:
    return {"name": "sqlite", "url": f"sqlite:///{tmp_path / name}", **extra}


def _open(tmp_path: Path, system: dict[str, Any], warnings: list[str] | None = None
          ) -> StoreSet:
    stores = open_stores(system, get_registry(), tmp_path)
    if warnings is not None:
        stores._warn = warnings.append
    return stores


def test_data_resolution_per_store(tmp_path: Path, postgres_server: PostgresServer,
                                   pg_database: str, firestore_env: dict[str, Any]) -> None:
    system = _system({"nothing": _sqlite(tmp_path, data_resolution=0),
                      "summaries": postgres_server.store_config(pg_database, data_resolution=1),
                      "steps": {**firestore_env, "data_resolution": 2}},
                     ["nothing", "summaries", "steps"], read="steps")
    stores = _open(tmp_path, system)
    try:
        run = stores.start_hpo_run("study", {"n": 1})
        ids = stores.start_experiment("e", "train", {"a": 1}, 3, hpo_run=run)
        stores.log_steps(ids, ROWS)
        stores.add_model("m", stores.next_model_version("m"), "p.pt", "0" * 64, {}, SUMMARY, ids)
        stores.finish_experiment(ids, "completed", SUMMARY)
        stores.finish_hpo_run(run, "completed", {"best": 0})
        nothing, summaries, steps = (stores.writers[k] for k in ("nothing", "summaries", "steps"))
        assert ids["nothing"] is None and run["nothing"] is None
        assert nothing.list_experiments() == [] and nothing.list_hpo_runs() == []
        assert nothing.get_model("m")["experiment_id"] is None  # models are always kept

        assert summaries.get_experiment(ids["summaries"])["summary"] == SUMMARY
        assert summaries.step_metrics(ids["summaries"]) == []
        assert summaries.get_experiment(ids["summaries"])["hpo_run_id"] == run["summaries"]
        assert summaries.get_model("m")["experiment_id"] == ids["summaries"]

        assert steps.get_experiment(ids["steps"])["summary"] == SUMMARY
        assert [r["value"] for r in steps.step_metrics(ids["steps"])] == [0.5, 0.75]
        assert steps.get_hpo_run(run["steps"])["summary"] == {"best": 0}
        assert stores.reader is steps
        assert stores.describe(ids) == f"summaries={ids['summaries']}, steps={ids['steps']}"
    finally:
        stores.close()


def test_store_failing_mid_run_leaves_the_others_complete(
        tmp_path: Path, postgres_server: PostgresServer, pg_database: str) -> None:
    """PostgreSQL loses its step table mid-run: SQLite keeps everything and says so."""
    system = _system({"sqlite": _sqlite(tmp_path),
                      "postgresql": postgres_server.store_config(pg_database)},
                     ["sqlite", "postgresql"])
    warnings: list[str] = []
    stores = _open(tmp_path, system, warnings)
    try:
        ids = stores.start_experiment("e", "train", {}, 0)
        stores.log_steps(ids, ROWS[:1])
        with postgres_server.connect(pg_database) as conn:
            conn.execute("ALTER TABLE step_metrics RENAME TO step_metrics_gone")
        stores.log_steps(ids, ROWS[1:])  # postgresql fails here; sqlite goes on
        assert list(stores.failed) == ["postgresql"]
        assert len(warnings) == 1 and "store 'postgresql' failed during log_steps" in warnings[0]
        stores.log_steps(ids, ROWS[1:])  # a dropped store is not tried again
        stores.add_model("m", stores.next_model_version("m"), "p", "0" * 64, {}, None, ids)
        stores.finish_experiment(ids, "completed", SUMMARY)

        good = stores.writers["sqlite"].get_experiment(ids["sqlite"])
        assert good["status"] == "completed" and good["summary"] == SUMMARY
        assert good["error"].startswith("incomplete in store(s) postgresql (log_steps: ")
        assert len(stores.writers["sqlite"].step_metrics(ids["sqlite"])) == 3
        assert stores.writers["sqlite"].get_model("m")["version"] == 1

        bad = stores.writers["postgresql"].get_experiment(ids["postgresql"])
        assert bad["status"] == "failed" and bad["summary"] is None
        assert bad["error"].startswith("this store failed mid-run (log_steps: ")
        assert bad["error"].endswith("the complete one is in: sqlite")
        with pytest.raises(SparseyConfigError, match="unknown model 'm'"):
            stores.writers["postgresql"].get_model("m")  # dropped before add_model
    finally:
        stores.close()


def test_firestore_emulator_dying_mid_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    emulator = start_firestore_emulator()  # our own: this test kills it
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulator.host)
    system = _system({"sqlite": _sqlite(tmp_path),
                      "firestore": {"name": "firestore", "project_id": "dies", "timeout_s": 2}},
                     ["sqlite", "firestore"])
    warnings: list[str] = []
    stores = _open(tmp_path, system, warnings)
    try:
        ids = stores.start_experiment("e", "train", {}, 0)
        stores.log_steps(ids, ROWS[:1])
        emulator.stop()
        stores.log_steps(ids, ROWS[1:])
        stores.finish_experiment(ids, "completed", SUMMARY)
        assert list(stores.failed) == ["firestore"] and len(warnings) == 1
        good = stores.writers["sqlite"].get_experiment(ids["sqlite"])
        assert good["status"] == "completed"
        assert "incomplete in store(s) firestore (log_steps: " in good["error"]
        assert len(stores.writers["sqlite"].step_metrics(ids["sqlite"])) == 2
    finally:
        stores.close()
        emulator.stop()


def test_every_store_failing_stops_the_run(tmp_path: Path, postgres_server: PostgresServer,
                                           pg_database: str) -> None:
    stores = _open(tmp_path, _system({"pg": postgres_server.store_config(pg_database)}, ["pg"]),
                   [])
    try:
        ids = stores.start_experiment("e", "train", {}, 0)
        with postgres_server.connect(pg_database) as conn:
            conn.execute("DROP TABLE step_metrics")
        with pytest.raises(SparseyConfigError, match=r"system.write_stores: every store failed "
                                                     r"\(pg: log_steps: .*step_metrics"):
            stores.log_steps(ids, ROWS)
    finally:
        stores.close()


def test_a_store_refusing_the_first_write_stops_before_training(
        tmp_path: Path, postgres_server: PostgresServer, pg_database: str) -> None:
    system = _system({"sqlite": _sqlite(tmp_path),
                      "postgresql": postgres_server.store_config(pg_database)},
                     ["sqlite", "postgresql"])
    stores = _open(tmp_path, system, [])
    try:
        with postgres_server.connect(pg_database) as conn:
            conn.execute("ALTER TABLE experiments RENAME TO experiments_gone")
        with pytest.raises(SparseyConfigError) as info:
            stores.start_experiment("e", "train", {}, 0)
        assert str(info.value).startswith("system.stores.postgresql: cannot record the run "
                                          "(start_experiment: ")
        (orphan,) = stores.writers["sqlite"].list_experiments()
        assert orphan["status"] == "failed"
        assert orphan["error"] == "store 'postgresql' failed at start"
    finally:
        stores.close()


def test_versions_are_numbered_past_every_store(tmp_path: Path) -> None:
    system = _system({"a": _sqlite(tmp_path, "a.db"), "b": _sqlite(tmp_path, "b.db")}, ["a", "b"])
    first = SqlStore(f"sqlite:///{tmp_path / 'b.db'}")
    for v in (1, 2, 3):
        first.add_model("m", v, "p", "0" * 64, {}, None, None)
    first.close()
    stores = _open(tmp_path, system)
    try:
        assert stores.next_model_version("m") == 4  # b has 3 versions, a none
        stores.add_model("m", 4, "p4", "4" * 64, {}, None, {"a": None, "b": None})
        assert [m["version"] for m in stores.writers["a"].list_models()] == [4]
    finally:
        stores.close()


def test_read_store_outside_the_write_stores_is_only_read(tmp_path: Path) -> None:
    archive = SqlStore(f"sqlite:///{tmp_path / 'archive.db'}")
    archive.add_model("old", 1, "p", "0" * 64, {}, None, None)
    archive.close()
    system = _system({"new": _sqlite(tmp_path, "new.db"),
                      "archive": _sqlite(tmp_path, "archive.db")}, ["new"], read="archive")
    stores = _open(tmp_path, system)
    try:
        assert stores.reader.get_model("old")["version"] == 1
        stores.start_experiment("e", "train", {}, 0)
        assert stores.reader.list_experiments() == []
        assert list(stores.writers) == ["new"]
    finally:
        stores.close()


def test_unreachable_store_at_open_closes_the_others(tmp_path: Path,
                                                     postgres_server: PostgresServer) -> None:
    bad = postgres_server.store_config("postgres", port=free_port(), connect_timeout=2)
    system = _system({"sqlite": _sqlite(tmp_path), "pg": bad}, ["sqlite", "pg"])
    with pytest.raises(SparseyConfigError, match=r"^system.stores.pg: cannot open "):
        open_stores(system, get_registry(), tmp_path)


@pytest.mark.parametrize(("system", "message"), [
    (_system({"s": {"name": "sqlite"}}, [], read="s"),
     "system.write_stores: name at least one store, e.g. [sqlite]"),
    (_system({"s": {"name": "sqlite"}}, ["s", "pg"], read="s"),
     "system.write_stores.1: unknown store 'pg'; system.stores defines: s"),
    (_system({"s": {"name": "sqlite"}}, ["s", "s"]), "system.write_stores.1: 's' is listed twice"),
    (_system({"s": {"name": "sqlite"}}, ["s"], read="x"),
     "system.read_store: unknown store 'x'; system.stores defines: s"),
    (_system({"s": {"url": "sqlite://"}}, ["s"]),
     "system.stores.s: needs a 'name' (sqlite, postgresql or firestore)"),
    (_system({"s": {"name": "mongo"}}, ["s"]), "system.stores.s.name: unknown store 'mongo'"),
    (_system({"s": {"name": "sqlite", "data_resolution": 5}}, ["s"]),
     "system.stores.s.data_resolution: "),
    (_system({"s": {"name": "firestore", "batch_size": 0}}, ["s"]),
     "system.stores.s.batch_size: "),
])
def test_store_config_errors_name_the_key(system: dict[str, Any], message: str) -> None:
    with pytest.raises(SparseyConfigError) as info:
        check_store_config(system, get_registry())
    assert str(info.value).startswith(message)
