"""Registered models: name → version → weights file, verified by hash before loading."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from sparsey_hydra.core.model import SparseyModel
from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.network import load_model
from sparsey_hydra.plugins import Registry


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_registered_model(store: Any, name: str, version: int | None, registry: Registry,
                          device: Any = "cpu") -> tuple[SparseyModel, dict[str, Any],
                                                        dict[str, Any]]:
    """(model, the config stored in its file, the registry record); refuses a tampered file."""
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
    except Exception as exc:  # a corrupt file must not become a traceback
        raise SparseyConfigError(f"model file '{path}' cannot be loaded: {exc}") from None
    return model, config, record
