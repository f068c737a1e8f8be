"""The one store interface every adapter (sqlite, postgresql, firestore, plugins) implements.

A run writes the same records to every store in `system.write_stores` through a `StoreSet`,
so the adapters must agree on what goes in and what comes back: ids are opaque (ints in SQL,
document ids in Firestore), configs and summaries round-trip as plain JSON values, times are
timezone-aware UTC, and a NaN step value reads back as None.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

STATUSES = ("running", "completed", "failed")

# (phase, step, layer, metric, value): one metric value of one layer at one step.
StepRow = tuple[str, int, int, str, float | None]

DATA_RESOLUTIONS = {0: "nothing", 1: "summaries", 2: "every step"}


class StoreParams(BaseModel):
    """Parameters every adapter has.

    `data_resolution` says how much of each experiment a store keeps: 0 nothing, 1 the
    experiment record with its summary, 2 that plus every step's metric values. HPO runs
    follow experiments (kept from 1); models and the model registry are always kept, since
    evaluating by name needs them.
    """

    model_config = ConfigDict(extra="forbid")

    data_resolution: Literal[0, 1, 2] = Field(default=2)


@runtime_checkable
class Store(Protocol):
    """What `StoreSet` and `load_registered_model` call on an adapter."""

    data_resolution: int

    def start_hpo_run(self, name: str, config: dict[str, Any]) -> Any: ...

    def finish_hpo_run(self, hpo_run_id: Any, status: str, summary: dict[str, Any] | None,
                       error: str | None = None) -> None: ...

    def get_hpo_run(self, hpo_run_id: Any) -> dict[str, Any]: ...

    def list_hpo_runs(self) -> list[dict[str, Any]]: ...

    def start_experiment(self, name: str, kind: str, config: dict[str, Any], seed: int,
                         hpo_run_id: Any = None) -> Any: ...

    def log_steps(self, experiment_id: Any, rows: Iterable[StepRow]) -> None: ...

    def finish_experiment(self, experiment_id: Any, status: str,
                          summary: dict[str, Any] | None, error: str | None = None) -> None: ...

    def get_experiment(self, experiment_id: Any) -> dict[str, Any]: ...

    def list_experiments(self, hpo_run_id: Any = None) -> list[dict[str, Any]]: ...

    def step_metrics(self, experiment_id: Any) -> list[dict[str, Any]]: ...

    def next_model_version(self, name: str) -> int: ...

    def add_model(self, name: str, version: int, path: str, sha256: str,
                  config: dict[str, Any], metrics_summary: dict[str, Any] | None,
                  experiment_id: Any) -> None: ...

    def get_model(self, name: str, version: int | None = None) -> dict[str, Any]: ...

    def list_models(self) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


def check_status(status: str) -> None:
    """Every adapter accepts the same statuses."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")


def first_line(exc: BaseException) -> str:
    """The driver's own message, one line, without SQLAlchemy's SQL echo or gRPC details."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def scrub(text: str, *secrets: str | None) -> str:
    """`text` with every given secret value masked (drivers may echo what they were given)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


__all__ = [
    "DATA_RESOLUTIONS",
    "STATUSES",
    "Store",
    "StepRow",
    "StoreParams",
    "check_status",
    "first_line",
    "scrub",
]
