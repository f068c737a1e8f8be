"""Registered models: name → version → weights file, verified by hash before loading.

The registry records (config, metrics summary, sha256, path) live in every write store; the
weights file lives on disk (and as a W&B artifact). A file changed since it was registered
is refused, and loading goes through `torch.load(weights_only=True)`, so a file can never
run code by unpickling arbitrary objects.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any

from sparsey_hydra.core.model import SparseyModel
from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.network import load_model
from sparsey_hydra.plugins import Registry


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_registered_model(store: Any, name: str, version: int | None, registry: Registry,
                          device: Any = "cpu") -> tuple[SparseyModel, dict[str, Any],
                                                        dict[str, Any]]:
    """(model, the config stored in its file, the registry record); refuses a tampered file.

    `store` is any store, or a `StoreSet` (its read store is used).
    """
    store = getattr(store, "reader", store)
    record = store.get_model(name, version)
    path = Path(record["path"])
    if not path.is_file():
        raise SparseyConfigError(
            f"model_name: {name} v{record['version']} points to '{path}', which does not exist")
    digest = file_sha256(path)
    if digest != record["sha256"]:
        raise SparseyConfigError(
            f"model file '{path}' does not match its registered sha256 (expected "
            f"{record['sha256'][:12]}…, got {digest[:12]}…); it was modified: "
            "retrain or restore it")
    try:
        model, config = load_model(str(path), registry, device)
    except SparseyConfigError:
        raise
    except pickle.UnpicklingError:
        raise SparseyConfigError(
            f"model file '{path}' holds objects other than tensors and plain data, which are "
            "never unpickled; retrain the model or restore its original file") from None
    except Exception as exc:  # a corrupt file must not become a traceback
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SparseyConfigError(f"model file '{path}' cannot be loaded: {reason}") from None
    return model, config, record
