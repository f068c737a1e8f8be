"""The stores a run writes to (one or more) and the one it reads from, chosen in `system`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparsey_hydra.plugins import Registry


def _anchor_sqlite(url: str, launch_dir: Path) -> str:
    """A relative SQLite file lives in the directory the command was launched from."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rel = url.removeprefix("sqlite:///")
        if rel and rel != ":memory:":
            return f"sqlite:///{(launch_dir / rel).resolve()}"
    return url


def open_store(store_cfg: dict[str, Any], registry: Registry, launch_dir: Path,
               key: str = "system.store") -> Any:
    """Build one store from its config mapping (`name` + the adapter's parameters)."""
    values = dict(store_cfg)
    name = values.pop("name")
    if isinstance(values.get("url"), str):
        values["url"] = _anchor_sqlite(values["url"], launch_dir)
    comp = registry.get("store", name, key=f"{key}.name")
    return comp.factory(registry.build_params("store", name, values, key=key))


class StoreSet:
    """Fans every write out to all configured stores; reads come from one of them."""

    def __init__(self, stores: list[Any], read_index: int = 0) -> None:
        self.stores = stores
        self.reader = stores[read_index]

    def start_experiment(self, name: str, kind: str, config: dict[str, Any], seed: int
                         ) -> list[int]:
        return [s.start_experiment(name, kind, config, seed) for s in self.stores]

    def log_steps(self, ids: list[int], rows: list[tuple]) -> None:
        for s, i in zip(self.stores, ids, strict=True):
            s.log_steps(i, rows)

    def finish_experiment(self, ids: list[int], status: str, summary: dict[str, Any] | None,
                          error: str | None = None) -> None:
        for s, i in zip(self.stores, ids, strict=True):
            s.finish_experiment(i, status, summary, error=error)

    def next_model_version(self, name: str) -> int:
        return max(s.next_model_version(name) for s in self.stores)

    def add_model(self, name: str, version: int, path: str, sha256: str, config: dict[str, Any],
                  metrics_summary: dict[str, Any] | None, ids: list[int]) -> None:
        for s, i in zip(self.stores, ids, strict=True):
            s.add_model(name, version, path, sha256, config, metrics_summary, i)


def open_stores(system: Any, registry: Registry, launch_dir: Path) -> StoreSet:
    """The run's stores from `system.store` (more adapters come through `system`)."""
    return StoreSet([open_store(system.store.model_dump(), registry, launch_dir)])
