"""SqlStore on real SQLite files: round trips, versioning and one-line errors."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest

from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.stores import BUILTIN_STORES, SqlStore


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def store(tmp_path: Path) -> SqlStore:
    s = SqlStore(_url(tmp_path / "results" / "sparsey.db"))  # parent folder is created
    yield s
    s.close()


def test_experiment_lifecycle_round_trip(store: SqlStore) -> None:
    config = {"model": {"layers": [{"macs": 9}]}, "lr": 0.5, "path": Path("/x")}
    exp_id = store.start_experiment("mnist", "train", config, seed=7)
    running = store.get_experiment(exp_id)
    assert running["status"] == "running"
    assert running["ended_at"] is None and running["summary"] is None
    assert running["config"] == {"model": {"layers": [{"macs": 9}]}, "lr": 0.5, "path": "/x"}
    assert running["seed"] == 7 and running["kind"] == "train" and running["name"] == "mnist"

    store.finish_experiment(exp_id, "completed", {"accuracy": 0.9})
    done = store.get_experiment(exp_id)
    assert done["status"] == "completed" and done["summary"] == {"accuracy": 0.9}
    assert done["error"] is None and done["hpo_run_id"] is None
    assert done["started_at"].tzinfo == UTC and done["ended_at"] >= done["started_at"]

    failed_id = store.start_experiment("mnist", "evaluate", {}, seed=1)
    store.finish_experiment(failed_id, "failed", None, error="boom")
    assert store.get_experiment(failed_id)["error"] == "boom"
    assert [e["id"] for e in store.list_experiments()] == [exp_id, failed_id]

    with pytest.raises(SparseyConfigError, match="unknown experiment id 999"):
        store.get_experiment(999)
    with pytest.raises(ValueError):
        store.finish_experiment(exp_id, "weird", None)


def test_step_metrics_round_trip_with_none(store: SqlStore) -> None:
    exp_id = store.start_experiment("e", "train", {}, seed=0)
    rows = [
        ("train", 0, 0, "overlap", 0.25),
        ("train", 0, 1, "overlap", None),
        ("eval", 1, 0, "accuracy", float("nan")),
        ("eval", 1, 0, "accuracy_top5", 1.0),
    ]
    store.log_steps(exp_id, rows)
    store.log_steps(exp_id, [])  # nothing to write is fine
    got = store.step_metrics(exp_id)
    assert [(r["phase"], r["step"], r["layer"], r["metric"], r["value"]) for r in got] == [
        ("train", 0, 0, "overlap", 0.25),
        ("train", 0, 1, "overlap", None),
        ("eval", 1, 0, "accuracy", None),
        ("eval", 1, 0, "accuracy_top5", 1.0),
    ]
    assert store.step_metrics(exp_id + 1) == []


def test_model_versions_increment_per_name(store: SqlStore, tmp_path: Path) -> None:
    exp_id = store.start_experiment("e", "train", {}, seed=0)
    assert store.next_model_version("a") == 1
    store.add_model("a", 1, str(tmp_path / "a1.pt"), "0" * 64, {"k": 1}, {"acc": 0.5}, exp_id)
    assert store.next_model_version("a") == 2
    store.add_model("a", 2, str(tmp_path / "a2.pt"), "1" * 64, {"k": 2}, None, None)
    assert store.next_model_version("b") == 1
    store.add_model("b", 1, str(tmp_path / "b1.pt"), "2" * 64, {}, None, None)

    latest = store.get_model("a")
    assert latest["version"] == 2 and latest["config"] == {"k": 2}
    assert latest["metrics_summary"] is None and latest["created_at"].tzinfo == UTC
    first = store.get_model("a", 1)
    assert first["metrics_summary"] == {"acc": 0.5} and first["experiment_id"] == exp_id
    assert [(m["name"], m["version"]) for m in store.list_models()] == [
        ("a", 1),
        ("a", 2),
        ("b", 1),
    ]

    with pytest.raises(SparseyConfigError, match="already exists; the next free version is 3"):
        store.add_model("a", 2, "x", "3" * 64, {}, None, None)
    with pytest.raises(SparseyConfigError, match="no version 5; known versions: 1, 2"):
        store.get_model("a", 5)


def test_get_model_unknown_name_lists_known(store: SqlStore) -> None:
    with pytest.raises(SparseyConfigError, match="known models: none registered yet"):
        store.get_model("nope")
    store.add_model("zeta", 1, "p", "0" * 64, {}, None, None)
    store.add_model("alpha", 1, "p", "0" * 64, {}, None, None)
    with pytest.raises(SparseyConfigError) as info:
        store.get_model("nope")
    assert str(info.value) == "unknown model 'nope'; known models: alpha, zeta"


@pytest.mark.parametrize(
    "make_url",
    [
        lambda tmp: "nosuchdb://x",
        lambda tmp: "not a url at all",
        lambda tmp: _url(tmp / "a_file.txt" / "sparsey.db"),  # parent is a regular file
        lambda tmp: _url(tmp),  # a folder, not a database file
    ],
)
def test_unopenable_url_is_a_one_line_config_error(tmp_path: Path, make_url) -> None:
    (tmp_path / "a_file.txt").write_text("not a folder")
    url = make_url(tmp_path)
    with pytest.raises(SparseyConfigError) as info:
        SqlStore(url)
    message = str(info.value)
    assert message.startswith(f"system.stores.sqlite.url: cannot open '{url}': ")
    assert "\n" not in message


def test_password_is_hidden_in_open_errors() -> None:
    with pytest.raises(SparseyConfigError) as info:
        SqlStore("nosuchdb://user:hunter2@localhost/db")
    assert "hunter2" not in str(info.value) and "user:***@localhost" in str(info.value)
    with pytest.raises(SparseyConfigError) as info:
        SqlStore("postgresql://user:hunter2@/db?port=notaport")  # fails while parsing
    assert "hunter2" not in str(info.value)


def test_two_stores_on_one_file_share_rows(tmp_path: Path) -> None:
    url = _url(tmp_path / "shared.db")
    first, second = SqlStore(url), SqlStore(url)
    exp_id = first.start_experiment("shared", "train", {"a": 1}, seed=3)
    second.log_steps(exp_id, [("train", 0, 0, "m", 1.5)])
    second.add_model("m", second.next_model_version("m"), "p", "0" * 64, {}, None, exp_id)
    assert second.get_experiment(exp_id)["config"] == {"a": 1}
    assert first.step_metrics(exp_id)[0]["value"] == 1.5
    assert first.next_model_version("m") == 2
    first.close()
    second.close()


def test_builtin_components(tmp_path: Path) -> None:
    by_name = {c.name: c for c in BUILTIN_STORES}
    assert sorted(by_name) == ["firestore", "postgresql", "sqlite"]
    component = by_name["sqlite"]
    assert component.params().url == "sqlite:///sparsey.db"
    assert component.params().data_resolution == 2
    params = component.params(url=_url(tmp_path / "c.db"), data_resolution=1)
    built = component.factory(params)
    assert isinstance(built, SqlStore) and built.list_experiments() == []
    assert built.data_resolution == 1
    built.close()
    with pytest.raises(ValueError):
        component.params(url="sqlite://", nope=1)
    with pytest.raises(ValueError):
        component.params(data_resolution=3)


def test_hpo_run_ids_link_trials(store: SqlStore) -> None:
    run = store.start_hpo_run("study", {"n_trials": 1})
    trial = store.start_experiment("t", "train", {}, seed=0, hpo_run_id=run)
    store.start_experiment("solo", "train", {}, seed=0)
    assert [e["id"] for e in store.list_experiments(hpo_run_id=run)] == [trial]
    with pytest.raises(SparseyConfigError, match="unknown HPO run id 77"):
        store.finish_hpo_run(77, "completed", None)


def test_old_database_gains_the_hpo_runs_table(tmp_path: Path) -> None:
    """A sparsey.db written before HPO runs existed opens and gets the new table."""
    import sqlite3

    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE experiments (id INTEGER PRIMARY KEY, name VARCHAR(255) NOT NULL,"
                " kind VARCHAR(32) NOT NULL, config TEXT NOT NULL, seed INTEGER NOT NULL,"
                " status VARCHAR(16) NOT NULL, error TEXT, started_at DATETIME NOT NULL,"
                " ended_at DATETIME, summary TEXT, hpo_run_id INTEGER)")
    con.commit()
    con.close()
    s = SqlStore(_url(db))
    assert s.list_hpo_runs() == []
    run = s.start_hpo_run("x", {})
    assert s.get_experiment(s.start_experiment("e", "train", {}, 0, hpo_run_id=run))[
        "hpo_run_id"] == run
    s.close()
