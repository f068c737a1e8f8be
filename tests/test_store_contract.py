"""The one store interface, run against each adapter on its real backend.

sqlite on a file, postgresql on the session's PostgreSQL server, firestore on the emulator:
the same calls must give the same records back, so any store can be the read store.
"""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.plugins import get_registry
from sparsey_hydra.stores.store_set import open_store

ADAPTERS = ["sqlite", "postgresql", "firestore"]


@pytest.fixture(params=ADAPTERS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    kind = request.param
    if kind == "sqlite":
        cfg: dict[str, Any] = {"name": "sqlite", "url": f"sqlite:///{tmp_path / 's.db'}"}
    elif kind == "postgresql":
        server = request.getfixturevalue("postgres_server")
        cfg = server.store_config(server.create_database())
    else:
        cfg = request.getfixturevalue("firestore_env")
    s = open_store(cfg, get_registry(), tmp_path, key=f"system.stores.{kind}")
    yield s
    s.close()


def test_experiment_lifecycle(store: Any) -> None:
    config = {"network": {"layers": [{"num_macs": 9, "rf": [0.5, 0.25]}]}, "lr": 0.5,
              "nested": [[1, 2], [3]], "none": None}
    exp_id = store.start_experiment("mnist", "train", config, seed=7)
    running = store.get_experiment(exp_id)
    assert running["status"] == "running" and running["ended_at"] is None
    assert running["summary"] is None and running["error"] is None
    assert running["config"] == config  # arrays of arrays too (Firestore forbids them natively)
    assert (running["name"], running["kind"], running["seed"]) == ("mnist", "train", 7)
    assert running["hpo_run_id"] is None

    summary = {"layers": [{"layer": 1, "g": 0.25}], "train": {"metrics": {"m": [1.5, None]}}}
    store.finish_experiment(exp_id, "completed", summary)
    done = store.get_experiment(exp_id)
    assert done["status"] == "completed" and done["summary"] == summary
    assert done["started_at"].tzinfo is not None
    assert done["started_at"].utcoffset() == UTC.utcoffset(None)
    assert done["ended_at"] >= done["started_at"]

    failed = store.start_experiment("mnist", "evaluate", {}, seed=1)
    store.finish_experiment(failed, "failed", None, error="boom")
    assert store.get_experiment(failed)["error"] == "boom"
    assert [e["id"] for e in store.list_experiments()] == [exp_id, failed]

    with pytest.raises(SparseyConfigError, match="unknown experiment id"):
        store.get_experiment("999999" if isinstance(exp_id, str) else 999999)
    with pytest.raises(ValueError, match="status must be one of"):
        store.finish_experiment(exp_id, "weird", None)


def test_step_rows_round_trip_with_none_and_nan(store: Any) -> None:
    exp_id = store.start_experiment("e", "train", {}, seed=0)
    rows = [("train", 0, 1, "overlap", 0.25), ("train", 0, 2, "overlap", None),
            ("eval", 1, 1, "accuracy", float("nan")), ("eval", 1, 1, "top5", 1.0)]
    store.log_steps(exp_id, rows[:2])
    store.log_steps(exp_id, [])
    store.log_steps(exp_id, rows[2:])
    got = [(r["phase"], r["step"], r["layer"], r["metric"], r["value"])
           for r in store.step_metrics(exp_id)]
    assert got == [("train", 0, 1, "overlap", 0.25), ("train", 0, 2, "overlap", None),
                   ("eval", 1, 1, "accuracy", None), ("eval", 1, 1, "top5", 1.0)]
    other = store.start_experiment("other", "train", {}, seed=0)
    assert store.step_metrics(other) == []


def test_hpo_runs_and_their_trials(store: Any) -> None:
    run = store.start_hpo_run("study-a", {"n_trials": 2, "params": {"x": [1, 2]}})
    solo = store.start_experiment("solo", "train", {}, seed=0)
    trials = [store.start_experiment(f"trial-{i}", "train", {"x": i}, seed=i, hpo_run_id=run)
              for i in range(2)]
    assert store.get_hpo_run(run)["status"] == "running"
    assert [e["id"] for e in store.list_experiments(hpo_run_id=run)] == trials
    assert store.get_experiment(trials[0])["hpo_run_id"] == run
    assert {e["id"] for e in store.list_experiments()} == {solo, *trials}

    store.finish_hpo_run(run, "completed", {"best": {"trial": 1, "value": 0.5}})
    rec = store.get_hpo_run(run)
    assert rec["summary"] == {"best": {"trial": 1, "value": 0.5}}
    assert rec["config"] == {"n_trials": 2, "params": {"x": [1, 2]}}
    assert rec["status"] == "completed" and rec["ended_at"] >= rec["started_at"]
    assert [r["id"] for r in store.list_hpo_runs()] == [run]
    with pytest.raises(SparseyConfigError, match="unknown HPO run id"):
        store.get_hpo_run("12345" if isinstance(run, str) else 12345)


def test_model_registry_versions(store: Any, tmp_path: Path) -> None:
    exp_id = store.start_experiment("e", "train", {}, seed=0)
    assert store.next_model_version("a/b.c") == 1  # names with '/' and '.' are fine
    store.add_model("a/b.c", 1, str(tmp_path / "a1.pt"), "0" * 64, {"k": 1}, {"acc": 0.5},
                    exp_id)
    assert store.next_model_version("a/b.c") == 2
    store.add_model("a/b.c", 2, str(tmp_path / "a2.pt"), "1" * 64, {"k": 2}, None, None)
    store.add_model("__x__", 1, "p", "2" * 64, {}, None, None)

    latest = store.get_model("a/b.c")
    assert latest["version"] == 2 and latest["config"] == {"k": 2}
    assert latest["metrics_summary"] is None and latest["sha256"] == "1" * 64
    first = store.get_model("a/b.c", 1)
    assert first["metrics_summary"] == {"acc": 0.5} and first["experiment_id"] == exp_id
    assert first["path"] == str(tmp_path / "a1.pt")
    assert [(m["name"], m["version"]) for m in store.list_models()] == [
        ("__x__", 1), ("a/b.c", 1), ("a/b.c", 2)]

    with pytest.raises(SparseyConfigError, match="already exists; the next free version is 3"):
        store.add_model("a/b.c", 2, "x", "3" * 64, {}, None, None)
    assert store.get_model("a/b.c", 2)["sha256"] == "1" * 64  # not overwritten
    with pytest.raises(SparseyConfigError, match="no version 5; known versions: 1, 2"):
        store.get_model("a/b.c", 5)
    with pytest.raises(SparseyConfigError) as info:
        store.get_model("nope")
    assert str(info.value) == "unknown model 'nope'; known models: __x__, a/b.c"


def test_unknown_model_in_an_empty_store(store: Any) -> None:
    with pytest.raises(SparseyConfigError, match="known models: none registered yet"):
        store.get_model("nope")
