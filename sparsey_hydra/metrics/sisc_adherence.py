"""sisc_adherence: do similar inputs get similar codes? Cosine (sparseypy) or Pearson (B16)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from sparsey_hydra.core.sparsey_layer import LayerOutput
from sparsey_hydra.metrics.base import Metric, MetricParams, Phase
from sparsey_hydra.metrics.training_memory import TrainingMemory, code_jaccard, input_jaccard


class SiscAdherenceParams(MetricParams):
    name: str = "sisc_adherence"
    method: Literal["cosine", "pearson"] = "cosine"
    approximation_batch_size: int | None = Field(default=None, ge=1)


class SiscAdherence(Metric):
    """Compares input similarities with code similarities over the stored training items."""

    name = "sisc_adherence"

    def __init__(self, params: SiscAdherenceParams) -> None:
        super().__init__(params)
        self.memory = TrainingMemory(params.approximation_batch_size)

    def compute(self, outs: list[LayerOutput], images: torch.Tensor,
                phase: Phase) -> list[torch.Tensor]:
        b = images.shape[0]
        if len(self.memory) == 0:
            result = [torch.zeros(o.active.shape) for o in outs]
        else:
            stored_x, stored_codes = self.memory.stacked()
            s_in = input_jaccard(images.reshape(b, -1).float().cpu(), stored_x)  # B×S
            result = []
            for o, sc in zip(outs, stored_codes, strict=True):
                s_code = code_jaccard(o.codes.cpu().to(torch.int32)[:, None], sc[None])  # B×S×M
                result.append(self._score(s_code, s_in[..., None]))
        if phase == "train":
            self.memory.add(images, outs)  # after scoring
        return result

    def _score(self, s_code: torch.Tensor, s_in: torch.Tensor) -> torch.Tensor:
        if self.params.method == "pearson":
            s_code = s_code - s_code.mean(1, keepdim=True)
            s_in = s_in - s_in.mean(1, keepdim=True)
        dot = (s_code * s_in).sum(1)
        norm = s_code.norm(dim=1) * s_in.norm(dim=1)
        return dot / norm.clamp(min=1e-8)
