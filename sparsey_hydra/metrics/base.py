"""What a metric is: a per-layer B×M tensor per step, or None where undefined in a phase."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict

from sparsey_hydra.core.sparsey_layer import LayerOutput

Phase = Literal["train", "eval"]
Reduction = Literal["none", "layerwise_mean", "layerwise_sum", "mean", "sum", "highest_layer",
                    "highest_layer_mean"]


class MetricParams(BaseModel):
    """Keys every metric entry of `trainer.metrics` accepts."""

    model_config = ConfigDict(extra="forbid")

    name: str
    save: bool = True
    reduction: Reduction = "layerwise_mean"
    best_value: Literal["max_by_layerwise_mean", "min_by_layerwise_mean"] = \
        "max_by_layerwise_mean"


class Metric:
    """Base class: `compute` runs after each forward pass and before the weight update."""

    name = "metric"
    #: phases in which the metric is defined; elsewhere `compute` returns None
    phases: tuple[Phase, ...] = ("train", "eval")

    def __init__(self, params: MetricParams) -> None:
        self.params = params

    def compute(self, outs: list[LayerOutput], images: torch.Tensor,
                phase: Phase) -> list[torch.Tensor] | None:
        """One float tensor B×M per layer (NaN for a MAC where it is undefined), or None."""
        raise NotImplementedError


def layer_means(values: list[torch.Tensor]) -> list[float | None]:
    """Mean over frames and MACs per layer, ignoring NaN; None when nothing is defined."""
    means: list[float | None] = []
    for v in values:
        ok = ~torch.isnan(v)
        means.append(float(v[ok].mean()) if bool(ok.any()) else None)
    return means
