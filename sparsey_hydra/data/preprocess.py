"""Turn the configured transform list into one pipeline and stack the results into a tensor."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import torch
from pydantic import BaseModel

from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.plugins import Component

Transform = Callable[[torch.Tensor], torch.Tensor]


class TransformRegistry(Protocol):
    """The part of `plugins.Registry` the pipeline needs (lets tests pass a smaller one)."""

    def get(self, kind: str, name: str, key: str = "name") -> Component: ...

    def build_params(
        self, kind: str, name: str, values: dict[str, Any], key: str
    ) -> BaseModel: ...


def build_pipeline(
    registry: TransformRegistry, transforms_cfg: Sequence[Mapping[str, Any]] | None
) -> Transform:
    """Resolve and validate every transform now, so a bad config fails before any data loads.

    Each item is a mapping with `name` plus that transform's parameters; the returned callable
    applies them in order (an empty list is the identity, up to a float32 cast).
    """
    steps: list[Transform] = []
    for i, item in enumerate(transforms_cfg or []):
        key = f"preprocessing.transforms.{i}"
        if not isinstance(item, Mapping) or "name" not in item:
            raise SparseyConfigError(
                f"{key}: expected a mapping with a 'name' key, e.g. {{name: binarize, "
                f"threshold: 0.5}} (got {item!r})"
            )
        name = str(item["name"])
        comp = registry.get("transform", name, key=f"{key}.name")
        values = {str(k): v for k, v in item.items() if k != "name"}
        params = registry.build_params("transform", name, values, key=key)
        steps.append(comp.factory(params))

    def pipeline(image: torch.Tensor) -> torch.Tensor:
        out = image.to(torch.float32)
        for step in steps:
            out = step(out)
        return out

    return pipeline


def preprocess_all(
    images: Sequence[torch.Tensor], pipeline: Transform, names: Sequence[str] | None = None
) -> torch.Tensor:
    """Apply `pipeline` to every image and stack them into an N×H×W float32 tensor.

    The network needs one input size, so items that differ after preprocessing are a config
    error naming the first odd item (`names`, or its index when not given).
    """
    def label(i: int) -> str:
        return names[i] if names is not None else str(i)

    outs: list[torch.Tensor] = []
    for i, image in enumerate(images):
        out = pipeline(image)
        if out.dim() != 2:
            raise SparseyConfigError(
                f"preprocessing: item '{label(i)}' has shape {tuple(out.shape)} after "
                "preprocessing, expected H×W; check the transforms in preprocessing.transforms"
            )
        if outs and out.shape != outs[0].shape:
            h, w = out.shape
            h0, w0 = outs[0].shape
            raise SparseyConfigError(
                f"preprocessing: item '{label(i)}' is {h}×{w} but the first is {h0}×{w0}; "
                "add a `resize` transform"
            )
        outs.append(out.to(torch.float32))
    if not outs:
        return torch.empty((0, 0, 0), dtype=torch.float32)
    return torch.stack(outs)
