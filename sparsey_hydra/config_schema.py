"""Pydantic models for the composed config tree; every error names its key (exit code 2)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.network import validate_layers
from sparsey_hydra.plugins import Registry, format_validation_error

DATASET_COMMON = ("eval_fraction", "eval", "shuffle")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetConfig(BaseModel):
    """Common split keys; the rest belong to the dataset type's own parameter model."""

    model_config = ConfigDict(extra="allow")

    type: str
    eval_fraction: float = Field(default=0.2, ge=0, lt=1)
    eval: dict[str, Any] | None = None
    shuffle: bool = True

    def type_params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class PreprocessingConfig(_Strict):
    transforms: list[dict[str, Any]] = Field(default_factory=list)


class NetworkConfig(_Strict):
    name: str = "network"
    num_layers: int | None = None
    layers: list[dict[str, Any]]


class TrainerConfig(_Strict):
    num_epochs: int = Field(default=1, ge=0)
    batch_size: int = Field(default=1, ge=1)
    eval_batch_size: int = Field(default=16, ge=1)
    progress: bool = True
    print_metric_values: bool = False
    metrics: list[dict[str, Any]] = Field(default_factory=list)


def _default_stores() -> dict[str, dict[str, Any]]:
    return {"sqlite": {"name": "sqlite", "url": "sqlite:///sparsey.db"}}


class WandbConfig(_Strict):
    mode: Literal["offline", "online", "disabled"] = "offline"
    project: str = "sparsey-hydra"
    entity: str | None = None
    api_key_env: str = "WANDB_API_KEY"
    dir: str | None = None


class ResolutionConfig(_Strict):
    """How much of each step is logged: model (one value per frame and metric), layer, or mac
    (every MAC); each level includes the coarser ones."""

    wandb: Literal["model", "layer", "mac"] = "layer"
    store: Literal["model", "layer", "mac"] = "mac"


class SystemConfig(_Strict):
    device: str = "auto"
    num_threads: int | None = Field(default=None, ge=1)
    model_dir: str = "models"
    # Named store entries (`name` = adapter, other keys its parameters; checked by the
    # adapter's own model in validate_config), the ones written and the one read.
    stores: dict[str, dict[str, Any]] = Field(default_factory=_default_stores)
    write_stores: list[str] = Field(default_factory=lambda: ["sqlite"])
    read_store: str = "sqlite"
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    resolution: ResolutionConfig = Field(default_factory=ResolutionConfig)


class AppConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    task: Literal["train", "evaluate"] | None = None
    seed: int = 0
    model_name: str | None = None
    model_version: int | None = Field(default=None, ge=1)
    dataset: DatasetConfig
    preprocessing: PreprocessingConfig
    network: NetworkConfig
    trainer: TrainerConfig
    system: SystemConfig
    hpo: dict[str, Any] | None = None


def validate_config(tree: dict[str, Any], registry: Registry) -> AppConfig:
    """Validate the whole composed tree, components included, before anything is written."""
    try:
        cfg = AppConfig(**tree)
    except ValidationError as exc:
        raise SparseyConfigError(format_validation_error(exc, "")) from None
    registry.build_params("dataset", cfg.dataset.type, cfg.dataset.type_params(), key="dataset")
    registry.get("dataset", cfg.dataset.type, key="dataset.type")
    if cfg.dataset.eval is not None:
        ev = dict(cfg.dataset.eval)
        etype = ev.pop("type", None)
        if etype is None:
            raise SparseyConfigError("dataset.eval: needs a 'type' (e.g. type: image_folder)")
        for k in DATASET_COMMON:
            ev.pop(k, None)
        registry.build_params("dataset", etype, ev, key="dataset.eval")
    for i, t in enumerate(cfg.preprocessing.transforms):
        if "name" not in t:
            raise SparseyConfigError(f"preprocessing.transforms.{i}: needs a 'name'")
        params = {k: v for k, v in t.items() if k != "name"}
        registry.build_params("transform", t["name"], params,
                              key=f"preprocessing.transforms.{i}")
    validate_layers(cfg.network.model_dump(), registry)
    seen = set()
    for i, m in enumerate(cfg.trainer.metrics):
        if "name" not in m:
            raise SparseyConfigError(f"trainer.metrics.{i}: needs a 'name'")
        if m["name"] in seen:
            raise SparseyConfigError(f"trainer.metrics.{i}: metric '{m['name']}' is listed twice")
        seen.add(m["name"])
        registry.build_params("metric", m["name"], dict(m), key=f"trainer.metrics.{i}")
    from sparsey_hydra.stores.store_set import check_store_config

    check_store_config(cfg.system, registry)
    if cfg.hpo is not None:  # the study, and the metrics its objective reads
        from sparsey_hydra.hpo.config import validate_hpo

        validate_hpo(cfg.hpo, cfg.trainer.metrics, registry)
    return cfg
