"""match_accuracy: eval code vs the code of the nearest stored training input (Jaccard)."""

from __future__ import annotations

import torch
from pydantic import Field

from sparsey_hydra.core.sparsey_layer import LayerOutput
from sparsey_hydra.metrics.base import Metric, MetricParams, Phase
from sparsey_hydra.metrics.training_memory import TrainingMemory, code_jaccard, input_jaccard


class MatchAccuracyParams(MetricParams):
    name: str = "match_accuracy"
    #: stored training items; None keeps every training item (the reference)
    approximation_batch_size: int | None = Field(default=None, ge=1)


class MatchAccuracy(Metric):
    """Training fills the memory (undefined there); eval scores, both-inactive MACs match (B15)."""

    name = "match_accuracy"
    phases = ("eval",)

    def __init__(self, params: MatchAccuracyParams) -> None:
        super().__init__(params)
        self.memory = TrainingMemory(params.approximation_batch_size)

    def compute(self, outs: list[LayerOutput], images: torch.Tensor,
                phase: Phase) -> list[torch.Tensor] | None:
        if phase == "train":
            self.memory.add(images, outs)
            return None
        b = images.shape[0]
        if len(self.memory) == 0:
            return [torch.full(o.active.shape, float("nan")) for o in outs]
        stored_x, stored_codes = self.memory.stacked()
        nearest = input_jaccard(images.reshape(b, -1).float().cpu(), stored_x).argmax(1)
        result = []
        for o, sc in zip(outs, stored_codes, strict=True):
            codes = o.codes.cpu().to(torch.int32)
            result.append(code_jaccard(codes, sc[nearest], both_empty=1.0))
        return result
