"""match_accuracy: does recognition give an input the code of its nearest training input?

For eval item b: s* = argmax_s J(x_b, x̃_s) over the stored training inputs, and
MA_ℓ[b, m] = J(y_{ℓ,b,m}, ỹ_{ℓ,s*,m}) (spec §5). Reference choices (B15): the memory holds
every training item by default, and a MAC inactive in both codes is a match (1). Training
only fills the memory, so the metric is undefined there (None, not sparseypy's 0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field

from sparsey_hydra.core.sparsey_layer import LayerOutput
from sparsey_hydra.metrics.base import Metric, MetricParams, Phase
from sparsey_hydra.metrics.training_memory import code_jaccard, input_jaccard, shared_memory

if TYPE_CHECKING:
    from sparsey_hydra.core.model import SparseyModel


class MatchAccuracyParams(MetricParams):
    name: str = "match_accuracy"
    #: stored training items; None keeps every training item (the reference)
    approximation_batch_size: int | None = Field(default=None, ge=1)


class MatchAccuracy(Metric):
    name = "match_accuracy"
    batchable = True
    phases = ("eval",)

    def __init__(self, params: MatchAccuracyParams) -> None:
        super().__init__(params)
        self.memory = shared_memory(None, params.approximation_batch_size)

    def bind(self, model: SparseyModel, shared: dict[str, Any] | None = None) -> None:
        self.memory = shared_memory(shared, self.params.approximation_batch_size, model.seed)
        self.device = model.device

    def compute(self, outs: list[LayerOutput], images: torch.Tensor,
                phase: Phase) -> list[torch.Tensor] | None:
        if phase == "train":
            self.memory.add(images, outs)
            return None
        stored_x, stored_codes = self.memory.view(outs)
        if stored_x is None or stored_x.shape[0] == 0:  # nothing learned: undefined
            return [torch.full(o.active.shape, float("nan"), device=o.active.device)
                    for o in outs]
        x = images.reshape(images.shape[0], -1).to(stored_x.device, torch.float32)
        nearest = input_jaccard(x, stored_x, self.memory.input_sizes[:stored_x.shape[0]]
                                ).argmax(1)
        return [code_jaccard(o.codes, sc[nearest], both_empty=1.0)
                for o, sc in zip(outs, stored_codes, strict=True)]

    def state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"], getattr(self, "device", "cpu"))
