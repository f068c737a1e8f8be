"""Dataset config → preprocessed train/eval tensors, with every file problem as one line."""

from __future__ import annotations

from typing import Any

import torch

from sparsey_hydra.config_schema import DATASET_COMMON, DatasetConfig
from sparsey_hydra.data.image_set import ImageSet
from sparsey_hydra.data.preprocess import build_pipeline, preprocess_all
from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.plugins import Registry


def load_image_set(registry: Registry, values: dict[str, Any], key: str) -> ImageSet:
    values = {k: v for k, v in values.items() if k not in DATASET_COMMON}
    dtype = values.pop("type")
    comp = registry.get("dataset", dtype, key=f"{key}.type")
    params = registry.build_params("dataset", dtype, values, key=key)
    images = comp.factory(params)
    if len(images) == 0:
        raise SparseyConfigError(f"{key}: the dataset is empty; check {key}.path")
    return images


def load_splits(registry: Registry, dataset: DatasetConfig, transforms: list[dict[str, Any]],
                seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, train labels, eval images, eval labels), preprocessed to one H×W."""
    pipeline = build_pipeline(registry, transforms)
    data = load_image_set(registry, dataset.model_dump(), "dataset")
    x = preprocess_all(data.images, pipeline, data.names)
    y = torch.tensor(data.labels, dtype=torch.long)
    if dataset.shuffle:
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        x, y = x[order], y[order]
    if dataset.eval is not None:
        ev = load_image_set(registry, dict(dataset.eval), "dataset.eval")
        ex = preprocess_all(ev.images, pipeline, ev.names)
        ey = torch.tensor(ev.labels, dtype=torch.long)
        if ex.shape[1:] != x.shape[1:]:
            raise SparseyConfigError(
                f"dataset.eval: items are {tuple(ex.shape[1:])} after preprocessing but the "
                f"training items are {tuple(x.shape[1:])}; add a `resize` transform")
        return x, y, ex, ey
    n_eval = int(round(len(x) * dataset.eval_fraction))
    if n_eval >= len(x):
        raise SparseyConfigError(
            f"dataset.eval_fraction: {dataset.eval_fraction} leaves no training items "
            f"out of {len(x)}; lower it")
    cut = len(x) - n_eval
    return x[:cut], y[:cut], x[cut:], y[cut:]
