"""The firestore adapter on the real emulator: batching under 1 MiB, layout, credentials."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from services import free_port, write_service_account_key

from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.plugins import get_registry
from sparsey_hydra.stores.firestore_store import (
    MAX_DOC_BYTES,
    FirestoreStore,
    document_size,
    name_to_id,
    value_size,
)
from sparsey_hydra.stores.store_set import open_store


def _open(cfg: dict[str, Any], **extra: Any) -> FirestoreStore:
    return open_store({**cfg, **extra}, get_registry(), Path("."), key="system.stores.fs")


def _raw(store: FirestoreStore, collection: str) -> list[dict[str, Any]]:
    """Documents as stored, read with the plain client (not the adapter's decoding)."""
    return [{"id": d.id, **d.to_dict()} for d in store.client.collection(collection).stream()]


def test_size_formula_matches_firestores_published_example() -> None:
    # firebase.google.com/docs/firestore/storage-size: the 'tasks' example document
    fields = {"type": "Personal", "done": False, "priority": 1,
              "description": "Learn Cloud Firestore"}
    assert value_size(fields) == 71
    assert document_size("users", "jeff", {}) == 27 + 32  # name users/jeff: 6 + 5 + 16
    # the example's total (name users/jeff/tasks/my_task_id = 44) is 147 bytes
    assert 44 + value_size(fields) + 32 == 147
    assert value_size({"a": [1.0, None, "xy"], "m": {"k": True}}) == 2 + 8 + 1 + 3 + 2 + 2 + 1


def test_name_to_id_is_a_valid_document_id() -> None:
    assert name_to_id("mnist_small-digits") == "mnist_small-digits"
    assert "/" not in name_to_id("a/b")
    for bad in (".", "..", "__x__", "_"):
        out = name_to_id(bad)
        assert out not in (".", "..") and not (out.startswith("__") and out.endswith("__"))
    assert len({name_to_id(n) for n in ("a/b", "a%2Fb", "_a", "%5Fa")}) == 4


def test_steps_are_batched_by_batch_size(firestore_env: dict[str, Any]) -> None:
    store = _open(firestore_env, batch_size=3)
    try:
        exp = store.start_experiment("e", "train", {}, seed=0)
        rows = [("train", i, 1, "m", float(i)) for i in range(10)]
        store.log_steps(exp, rows[:7])
        store.log_steps(exp, rows[7:])
        docs = sorted(_raw(store, "batches"), key=lambda d: d["seq"])
        assert [d["n"] for d in docs] == [3, 3, 1, 3]
        assert [d["seq"] for d in docs] == [0, 1, 2, 3]
        assert docs[0]["id"] == f"{exp}-000000" and docs[0]["experiment_id"] == exp
        assert docs[0]["step"] == [0, 1, 2] and docs[0]["metric"] == ["m"] * 3
        assert [r["step"] for r in store.step_metrics(exp)] == list(range(10))
    finally:
        store.close()


def test_big_batches_are_split_under_one_mebibyte(firestore_env: dict[str, Any]) -> None:
    store = _open(firestore_env, batch_size=1000)
    try:
        exp = store.start_experiment("e", "train", {}, seed=0)
        long_name = "x" * 300_000  # three rows fit in 1 MiB, five do not
        rows = [("train", i, 1, f"{long_name}{i}", 0.5) for i in range(5)]
        store.log_steps(exp, rows)
        docs = _raw(store, "batches")
        assert len(docs) == 2 and sorted(d["n"] for d in docs) == [2, 3]
        for d in docs:
            data = {k: v for k, v in d.items() if k != "id"}
            assert document_size("batches", d["id"], data) <= MAX_DOC_BYTES
        assert [r["metric"] for r in store.step_metrics(exp)] == [r[3] for r in rows]

        with pytest.raises(SparseyConfigError, match="one step row is .* over Firestore's 1 MiB"):
            store.log_steps(exp, [("train", 9, 1, "y" * MAX_DOC_BYTES, 1.0)])
    finally:
        store.close()


def test_oversized_summary_is_refused_before_writing(firestore_env: dict[str, Any]) -> None:
    store = _open(firestore_env)
    try:
        exp = store.start_experiment("e", "train", {}, seed=0)
        with pytest.raises(SparseyConfigError, match="over Firestore's 1 MiB limit"):
            store.finish_experiment(exp, "completed", {"blob": "z" * MAX_DOC_BYTES})
        assert store.get_experiment(exp)["status"] == "running"
    finally:
        store.close()


def test_batch_numbers_continue_in_a_new_process(firestore_env: dict[str, Any]) -> None:
    first = _open(firestore_env, batch_size=2)
    exp = first.start_experiment("e", "train", {}, seed=0)
    first.log_steps(exp, [("train", i, 1, "m", 1.0) for i in range(3)])
    first.close()
    second = _open(firestore_env, batch_size=2)  # knows nothing of the first's counter
    try:
        second.log_steps(exp, [("train", i, 1, "m", 1.0) for i in range(3, 5)])
        assert [r["step"] for r in second.step_metrics(exp)] == [0, 1, 2, 3, 4]
        assert sorted(d["seq"] for d in _raw(second, "batches")) == [0, 1, 2]
    finally:
        second.close()


def test_collection_names_are_configurable(firestore_env: dict[str, Any]) -> None:
    names = {"hpo_runs": "lab_hpo", "experiments": "lab_exp", "batches": "lab_batches",
             "models": "lab_models", "model_registry": "lab_registry"}
    store = _open(firestore_env, collections=names)
    try:
        run = store.start_hpo_run("s", {})
        exp = store.start_experiment("e", "train", {}, seed=0, hpo_run_id=run)
        store.log_steps(exp, [("train", 0, 1, "m", 1.0)])
        store.add_model("m", 1, "p", "0" * 64, {}, None, exp)
        for coll in names.values():
            assert len(_raw(store, coll)) == 1, coll
        for default in ("hpo_runs", "experiments", "batches", "models", "model_registry"):
            assert _raw(store, default) == [], default
        registry = _raw(store, "lab_registry")[0]
        assert registry["latest_version"] == 1 and registry["versions"] == [1]
        model = _raw(store, "lab_models")[0]
        assert model["id"] == "m@v1" and json.loads(model["config"]) == {}
    finally:
        store.close()
    with pytest.raises(SparseyConfigError, match=r"system.stores.fs.collections.models: "):
        _open(firestore_env, collections={"models": "a/b"})


def test_emulator_down_is_a_one_line_error(firestore_env: dict[str, Any],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    with pytest.raises(SparseyConfigError) as info:
        _open(firestore_env, timeout_s=3)
    msg = str(info.value)
    assert msg.startswith("system.stores.fs: cannot reach Firestore (the emulator at 127.0.0.1:")
    assert msg.endswith("start the emulator or unset FIRESTORE_EMULATOR_HOST")
    assert "\n" not in msg


def test_key_file_variable_unset_without_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("MY_FS_KEY", raising=False)
    with pytest.raises(SparseyConfigError) as info:
        _open({"name": "firestore"}, credentials_env="MY_FS_KEY")
    assert str(info.value).startswith(
        "system.stores.fs.credentials_env: environment variable $MY_FS_KEY is not set; "
        "export it as the path of the service-account key file")


def test_missing_key_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("MY_FS_KEY", str(tmp_path / "gone.json"))
    with pytest.raises(SparseyConfigError) as info:
        _open({"name": "firestore"}, credentials_env="MY_FS_KEY")
    assert str(info.value).startswith(
        f"system.stores.fs.credentials_env: $MY_FS_KEY points to '{tmp_path / 'gone.json'}', "
        "which is not a file")


def test_bad_key_file_is_named_but_its_contents_never_shown(
        firestore_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bad = tmp_path / "key.json"
    bad.write_text(json.dumps({"type": "service_account", "private_key": "SECRET-KEY-BODY-77",
                               "project_id": "p"}))
    monkeypatch.setenv("MY_FS_KEY", str(bad))
    with pytest.raises(SparseyConfigError) as info:
        _open(firestore_env, credentials_env="MY_FS_KEY")
    msg = str(info.value)
    assert f"'{bad}' (from $MY_FS_KEY) is not a service-account key file" in msg
    assert "SECRET-KEY-BODY-77" not in msg


def test_valid_key_file_is_checked_and_names_the_project(
        firestore_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key = write_service_account_key(tmp_path / "key.json", "keyfile-project")
    monkeypatch.setenv("MY_FS_KEY", str(tmp_path / "key.json"))
    cfg = {k: v for k, v in firestore_env.items() if k != "project_id"}
    store = _open(cfg, credentials_env="MY_FS_KEY")
    try:
        assert store.client.project == "keyfile-project"  # taken from the key file
        exp = store.start_experiment("e", "train", {}, seed=0)
        assert store.get_experiment(exp)["status"] == "running"
        assert key["private_key_id"] not in repr(vars(store))
    finally:
        store.close()


def test_batch_documents_are_committed_in_atomic_groups(firestore_env: dict[str, Any],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each commit holds at most MAX_COMMIT_WRITES documents (500 in Firestore; 4 here)."""
    from sparsey_hydra.stores import firestore_store

    monkeypatch.setattr(firestore_store, "MAX_COMMIT_WRITES", 4)
    store = _open(firestore_env, batch_size=1)
    commits: list[int] = []
    make_batch = store.client.batch

    def counting_batch() -> Any:
        batch = make_batch()
        commit = batch.commit

        def counted(**kw: Any) -> Any:
            commits.append(len(batch._write_pbs))
            return commit(**kw)

        batch.commit = counted
        return batch

    try:
        exp = store.start_experiment("e", "train", {}, seed=0)
        monkeypatch.setattr(store.client, "batch", counting_batch)
        store.log_steps(exp, [("train", i, 1, "m", float(i)) for i in range(10)])
        store.log_steps(exp, [("eval", 0, 1, "m", None)])
        assert commits == [4, 4, 2, 1]
        assert sorted(d["seq"] for d in _raw(store, "batches")) == list(range(11))
        assert [r["step"] for r in store.step_metrics(exp)] == [*range(10), 0]
    finally:
        store.close()
