"""What a metric is: one B×M tensor per layer per step, or None where the phase leaves it undefined.

A metric sees each frame after the forward pass and before the weight update (spec §4/§5). It
returns float values per MAC (NaN where a MAC has no value, e.g. G of an inactive MAC); the
trainer reduces them as the entry's `reduction` says and logs them at the `system.resolution`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict

from sparsey_hydra.core.sparsey_layer import LayerOutput

if TYPE_CHECKING:
    from sparsey_hydra.core.model import SparseyModel

Phase = Literal["train", "eval"]
Reduction = Literal["none", "layerwise_mean", "layerwise_sum", "mean", "sum", "highest_layer",
                    "highest_layer_mean"]
BestValue = Literal["max_by_layerwise_mean", "min_by_layerwise_mean"]


class MetricParams(BaseModel):
    """Keys every metric entry of `trainer.metrics` accepts (pydantic rejects anything else)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    save: bool = True
    reduction: Reduction = "layerwise_mean"
    best_value: BestValue = "max_by_layerwise_mean"


class Metric:
    """Base class: `compute` runs after each forward pass and before the weight update."""

    name = "metric"
    #: phases in which the metric is defined; elsewhere `compute` returns None
    phases: tuple[Phase, ...] = ("train", "eval")
    #: True: the metric reads only the frame's outputs (`active`, `codes`, `g`, `y`, `v`, `x`)
    #: and its own state, never the weights, so the trainer may hand it a block of
    #: consecutive frames as one batch after the fact; in training it must then treat the
    #: batch's frames in order, each seeing the state left by the ones before it.
    batchable: bool = False

    def __init__(self, params: MetricParams) -> None:
        self.params = params

    def bind(self, model: SparseyModel, shared: dict[str, Any] | None = None) -> None:
        """Called once before the first frame: read the geometry, share state with others.

        `shared` lets metrics that need the same state (the training memory) hold one copy.
        """

    def compute(self, outs: list[LayerOutput], images: torch.Tensor,
                phase: Phase) -> list[torch.Tensor] | None:
        """One float tensor B×M per layer (NaN for a MAC where it is undefined), or None."""
        raise NotImplementedError

    def extras(self) -> dict[str, list[torch.Tensor]]:
        """Layer-level series from the last `compute` (name → one B tensor per layer)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What evaluation of a saved model needs from training (kept beside the model file)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""


def layer_means(values: list[torch.Tensor]) -> list[float | None]:
    """Mean over frames and MACs per layer, ignoring NaN; None when nothing is defined."""
    means: list[float | None] = []
    for v in values:
        ok = ~torch.isnan(v)
        means.append(float(v[ok].mean()) if bool(ok.any()) else None)
    return means
