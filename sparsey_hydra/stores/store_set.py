"""The stores a run writes to (one or more) and the one it reads from, chosen in `system`.

`system.stores` defines named store entries (`name` picks the adapter, the other keys are its
parameters); `system.write_stores` lists the entries every record is written to and
`system.read_store` the one that reads (e.g. evaluate's model lookup). Every store is opened
before training starts, so an unreachable one is a one-line error with nothing trained.

A store that fails mid-run is dropped from the fan-out with a warning: the others still get
the complete record, whose `error` then names the store that missed writes, and the failed
store's own record is marked failed if it can still be reached. Only when every store has
failed does the run stop.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.plugins import Registry
from sparsey_hydra.stores.base import StepRow, first_line
from sparsey_hydra.tracking.secrets import redact_url

Ids = dict[str, Any]  # store key -> that store's id of one record (None: not recorded there)


def _anchor_sqlite(url: str, launch_dir: Path) -> str:
    """A relative SQLite file lives in the directory the command was launched from."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rel = url.removeprefix("sqlite:///")
        if rel and rel != ":memory:":
            return f"sqlite:///{(launch_dir / rel).resolve()}"
    return url


def _store_params(store_cfg: Mapping[str, Any], registry: Registry, key: str) -> tuple[Any, Any]:
    """(component, validated params) of one `system.stores` entry; opens nothing."""
    if not isinstance(store_cfg, Mapping):
        raise SparseyConfigError(f"{key}: expected a mapping with a 'name' (e.g. name: sqlite)")
    values = dict(store_cfg)
    name = values.pop("name", None)
    if name is None:
        raise SparseyConfigError(f"{key}: needs a 'name' (sqlite, postgresql or firestore)")
    comp = registry.get("store", str(name), key=f"{key}.name")
    return comp, registry.build_params("store", str(name), values, key=key)


def open_store(store_cfg: Mapping[str, Any], registry: Registry, launch_dir: Path,
               key: str = "system.stores.sqlite") -> Any:
    """Build one store from its config mapping (`name` + the adapter's parameters)."""
    values = dict(store_cfg) if isinstance(store_cfg, Mapping) else store_cfg
    if isinstance(values, dict) and isinstance(values.get("url"), str):
        values["url"] = _anchor_sqlite(values["url"], launch_dir)
    comp, params = _store_params(values, registry, key)
    if "key" in inspect.signature(comp.factory).parameters:
        return comp.factory(params, key=key)
    return comp.factory(params)


def _system_parts(system: Any) -> tuple[Mapping[str, Any], list[str], str]:
    get = system.get if isinstance(system, Mapping) else lambda k: getattr(system, k)
    return get("stores") or {}, list(get("write_stores") or []), get("read_store")


def check_store_config(system: Any, registry: Registry) -> None:
    """Validate `system.stores` / `write_stores` / `read_store` without opening anything."""
    stores, writes, read = _system_parts(system)
    defined = ", ".join(sorted(stores)) or "none"
    if not writes:
        raise SparseyConfigError("system.write_stores: name at least one store, e.g. [sqlite]")
    for i, k in enumerate(writes):
        if k not in stores:
            raise SparseyConfigError(f"system.write_stores.{i}: unknown store '{k}'; "
                                     f"system.stores defines: {defined}")
        if writes.index(k) != i:
            raise SparseyConfigError(f"system.write_stores.{i}: '{k}' is listed twice")
    if read not in stores:
        raise SparseyConfigError(f"system.read_store: unknown store '{read}'; "
                                 f"system.stores defines: {defined}")
    for k in dict.fromkeys([*writes, read]):
        _store_params(stores[k], registry, f"system.stores.{k}")


class StoreSet:
    """Fans every write out to the write stores; `reader` is the store that reads."""

    def __init__(self, writers: Mapping[str, Any], reader: Any, read_key: str,
                 extra: Iterable[Any] = (), warn: Callable[[str], None] | None = None) -> None:
        self.writers = dict(writers)
        self.reader = reader
        self.read_key = read_key
        self.failed: dict[str, str] = {}  # store key -> "operation: reason"
        self._extra = list(extra)  # opened only to read; closed with the set
        self._written = False
        self._warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))

    @property
    def stores(self) -> list[Any]:
        """The write stores, in `system.write_stores` order."""
        return list(self.writers.values())

    def healthy(self) -> list[str]:
        return [k for k in self.writers if k not in self.failed]

    def _each(self, op: str, targets: Iterable[str], fn: Callable[[str, Any], Any]) -> Ids:
        """Run `fn` on each target store; a failing store is dropped, the others go on."""
        out: Ids = {}
        for k in targets:
            if k in self.failed:
                continue
            try:
                out[k] = fn(k, self.writers[k])
            except Exception as exc:
                reason = redact_url(first_line(exc))
                self.failed[k] = f"{op}: {reason}"
                self._warn(f"store '{k}' failed during {op} ({reason}); "
                           "the other stores keep the complete record")
        if not self.healthy():
            reasons = "; ".join(f"{k}: {r}" for k, r in self.failed.items())
            raise SparseyConfigError(f"system.write_stores: every store failed ({reasons})")
        return out

    def _first_write(self, op: str, ids: Ids, finish: Callable[[str, Any, Any, str], None]
                     ) -> None:
        """Nothing is trained yet: a store failing its first write stops the run here."""
        if self._written:
            return
        self._written = True
        if self.failed:
            k, reason = next(iter(self.failed.items()))
            for other, rid in ids.items():
                if rid is not None:
                    try:
                        finish(other, self.writers[other], rid, f"store '{k}' failed at start")
                    except Exception:
                        pass  # best effort; the error below is what the user needs
            raise SparseyConfigError(
                f"system.stores.{k}: cannot record the run ({reason}); fix the store or "
                "remove it from system.write_stores")

    # -- HPO runs ----------------------------------------------------------------------------

    def start_hpo_run(self, name: str, config: dict[str, Any]) -> Ids:
        ids = {k: None for k in self.writers}
        ids.update(self._each("start_hpo_run",
                              [k for k, s in self.writers.items() if s.data_resolution >= 1],
                              lambda k, s: s.start_hpo_run(name, config)))
        self._first_write("start_hpo_run", ids,
                          lambda k, s, i, e: s.finish_hpo_run(i, "failed", None, error=e))
        return ids

    def finish_hpo_run(self, ids: Ids, status: str, summary: dict[str, Any] | None,
                       error: str | None = None) -> None:
        self._finish(ids, status, summary, error,
                     lambda s, i, st, su, e: s.finish_hpo_run(i, st, su, error=e))

    # -- experiments -------------------------------------------------------------------------

    def start_experiment(self, name: str, kind: str, config: dict[str, Any], seed: int,
                         hpo_run: Ids | None = None) -> Ids:
        """Start the record in every write store; `hpo_run` is `start_hpo_run`'s result."""
        ids = {k: None for k in self.writers}
        ids.update(self._each(
            "start_experiment",
            [k for k, s in self.writers.items() if s.data_resolution >= 1],
            lambda k, s: s.start_experiment(
                name, kind, config, seed,
                **({"hpo_run_id": hpo_run[k]} if hpo_run and hpo_run.get(k) is not None
                   else {}))))
        self._first_write("start_experiment", ids,
                          lambda k, s, i, e: s.finish_experiment(i, "failed", None, error=e))
        return ids

    def log_steps(self, ids: Ids, rows: list[StepRow]) -> None:
        """Step rows go only to stores with data_resolution 2."""
        if not rows:
            return
        self._each("log_steps",
                   [k for k, s in self.writers.items()
                    if s.data_resolution >= 2 and ids.get(k) is not None],
                   lambda k, s: s.log_steps(ids[k], rows))

    def finish_experiment(self, ids: Ids, status: str, summary: dict[str, Any] | None,
                          error: str | None = None) -> None:
        self._finish(ids, status, summary, error,
                     lambda s, i, st, su, e: s.finish_experiment(i, st, su, error=e))

    def _finish(self, ids: Ids, status: str, summary: dict[str, Any] | None,
                error: str | None, close: Callable[..., None]) -> None:
        """Healthy stores get the full record (noting any failed store); failed ones 'failed'."""
        self._each("finish", [k for k in self.writers if ids.get(k) is not None],
                   lambda k, s: close(s, ids[k], status, summary,
                                      _join(error, self.failure_note())))
        for k, reason in self.failed.items():
            if ids.get(k) is None:
                continue
            try:
                close(self.writers[k], ids[k], "failed", None,
                      f"this store failed mid-run ({reason}); its record is incomplete, the "
                      f"complete one is in: {', '.join(self.healthy())}")
            except Exception:
                pass  # still unreachable: the healthy stores' records say what happened

    def failure_note(self) -> str | None:
        """One line naming the stores that missed writes, or None when all are complete."""
        if not self.failed:
            return None
        return "incomplete in store(s) " + "; ".join(f"{k} ({r})" for k, r in self.failed.items())

    # -- models ------------------------------------------------------------------------------

    def next_model_version(self, name: str) -> int:
        """One past the highest version any write store knows, so no store gets a clash."""
        versions = self._each("next_model_version", self.writers,
                              lambda k, s: s.next_model_version(name))
        return max(versions.values())

    def add_model(self, name: str, version: int, path: str, sha256: str, config: dict[str, Any],
                  metrics_summary: dict[str, Any] | None, ids: Ids) -> None:
        """Models and their registry entries go to every write store, whatever its resolution."""
        self._each("add_model", self.writers,
                   lambda k, s: s.add_model(name, version, path, sha256, config,
                                            metrics_summary, ids.get(k)))

    # -- misc --------------------------------------------------------------------------------

    def describe(self, ids: Ids) -> str:
        """The record's id in each store, for the end-of-run printout."""
        shown = [f"{k}={i}" for k, i in ids.items() if i is not None]
        return ", ".join(shown) if shown else "not recorded (data_resolution 0)"

    def close(self) -> None:
        for s in [*self.writers.values(), *self._extra]:
            try:
                s.close()
            except Exception:
                pass  # closing is best effort; the data is already written


def _join(*parts: str | None) -> str | None:
    kept = [p for p in parts if p]
    return "; ".join(kept) if kept else None


def open_stores(system: Any, registry: Registry, launch_dir: Path,
                read_store: str | None = None) -> StoreSet:
    """Open every write store and the read store; any failure closes the rest and raises."""
    check_store_config(system, registry)
    stores, writes, read = _system_parts(system)
    read = read_store or read
    if read not in stores:
        raise SparseyConfigError(f"system.read_store: unknown store '{read}'; "
                                 f"system.stores defines: {', '.join(sorted(stores))}")
    opened: dict[str, Any] = {}
    try:
        for k in dict.fromkeys([*writes, read]):
            opened[k] = open_store(stores[k], registry, launch_dir, key=f"system.stores.{k}")
    except BaseException:
        for s in opened.values():
            try:
                s.close()
            except Exception:
                pass
        raise
    writers = {k: opened[k] for k in writes}
    extra = [] if read in writers else [opened[read]]
    return StoreSet(writers, opened[read], read, extra=extra)


__all__ = ["StoreSet", "check_store_config", "open_store", "open_stores"]
