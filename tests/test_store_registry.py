"""The model registry through each store: load by name, refuse tampered or unsafe files."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from services import REPO

from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.model_registry import file_sha256, load_registered_model
from sparsey_hydra.network import build_model
from sparsey_hydra.plugins import get_registry
from sparsey_hydra.stores.store_set import open_stores

NETWORK = yaml.safe_load((REPO / "conf" / "network" / "mnist_small.yaml").read_text())


@pytest.fixture(params=["sqlite", "postgresql", "firestore"])
def store_set(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A StoreSet whose only store (written and read) is the adapter under test."""
    kind = request.param
    if kind == "sqlite":
        cfg: dict[str, Any] = {"name": "sqlite", "url": f"sqlite:///{tmp_path / 'r.db'}"}
    elif kind == "postgresql":
        server = request.getfixturevalue("postgres_server")
        cfg = server.store_config(server.create_database())
    else:
        cfg = request.getfixturevalue("firestore_env")
    stores = open_stores({"stores": {kind: cfg}, "write_stores": [kind], "read_store": kind},
                         get_registry(), tmp_path)
    yield stores
    stores.close()


def _register(stores: Any, path: Path, name: str = "digits") -> int:
    version = stores.next_model_version(name)
    ids = stores.start_experiment("train", "train", {}, 0)
    stores.add_model(name, version, str(path), file_sha256(path), {"network": NETWORK},
                     {"acc": 1.0}, ids)
    return version


def _trained(tmp_path: Path) -> Path:
    model = build_model(NETWORK, (8, 8), 3, "cpu", get_registry())
    frames = torch.zeros(2, 8, 8).bernoulli_(0.3, generator=torch.Generator().manual_seed(0))
    model.learn_batch(frames)
    return model.save(tmp_path / "models" / "v1.pt", {"network": NETWORK, "seed": 3})


def test_load_by_name_then_refuse_a_tampered_file(store_set: Any, tmp_path: Path) -> None:
    path = _trained(tmp_path)
    version = _register(store_set, path)
    model, config, record = load_registered_model(store_set.reader, "digits", None,
                                                  get_registry())
    assert record["version"] == version and config["seed"] == 3
    assert model.frames_learned == 2 and len(model.layers) == 3
    # a StoreSet works too (its read store is used)
    assert load_registered_model(store_set, "digits", version, get_registry())[2] == record

    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(SparseyConfigError) as info:
        load_registered_model(store_set.reader, "digits", version, get_registry())
    msg = str(info.value)
    assert msg.startswith(f"model file '{path}' does not match its registered sha256")
    assert msg.endswith("it was modified: retrain or restore it") and "\n" not in msg


def test_a_file_that_would_run_code_is_never_unpickled(store_set: Any, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[Any, ...]:
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pt"
    torch.save({"state": Exploit(), "config": {}}, path)  # a valid torch file, hash and all
    assert pickle.loads(pickle.dumps(Exploit())) is None and marker.exists()  # it really would
    marker.unlink()
    _register(store_set, path, name="evil")
    with pytest.raises(SparseyConfigError) as info:
        load_registered_model(store_set.reader, "evil", None, get_registry())
    assert str(info.value) == (f"model file '{path}' holds objects other than tensors and plain "
                               "data, which are never unpickled; retrain the model or restore "
                               "its original file")
    assert not marker.exists()


def test_missing_file_and_unknown_name(store_set: Any, tmp_path: Path) -> None:
    path = _trained(tmp_path)
    _register(store_set, path)
    path.unlink()
    with pytest.raises(SparseyConfigError, match=r"model_name: digits v1 points to .*which does "
                                                 r"not exist"):
        load_registered_model(store_set.reader, "digits", 1, get_registry())
    with pytest.raises(SparseyConfigError, match=r"unknown model 'other'; known models: digits"):
        load_registered_model(store_set.reader, "other", None, get_registry())
