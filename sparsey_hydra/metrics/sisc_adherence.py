"""sisc_adherence: do similar inputs get similar codes? (spec §5, B16)

Against the stored training items 𝒮: s_in[b] = (J(x_b, x̃_s))_s and
s_code[ℓ, b, m] = (J(y_{ℓ,b,m}, ỹ_{ℓ,s,m}))_s. `method: cosine` is sparseypy's
⟨s_code, s_in⟩ / max(‖s_code‖·‖s_in‖, 1e−8), which is ≥ 0 and scale-blind; `method: pearson`
centres both vectors first, so it tests "more similar input → more similar code". The other
method is logged beside it as `sisc_adherence_<other>` (the spec asks for both; they share
every sum). The value is 0 while 𝒮 is empty; in training a frame is scored before it joins 𝒮.
Both phases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field

from sparsey_hydra.core.sparsey_layer import LayerOutput
from sparsey_hydra.metrics.base import Metric, MetricParams, Phase
from sparsey_hydra.metrics.training_memory import (
    code_jaccard_matrix,
    input_jaccard,
    shared_memory,
)

if TYPE_CHECKING:
    from sparsey_hydra.core.model import SparseyModel


class SiscAdherenceParams(MetricParams):
    name: str = "sisc_adherence"
    method: Literal["cosine", "pearson"] = "cosine"
    #: stored training items; None keeps every training item (the reference)
    approximation_batch_size: int | None = Field(default=None, ge=1)


def _sums(j: torch.Tensor, s_in: torch.Tensor) -> torch.Tensor:
    """(Σ_s J, Σ_s J², Σ_s J·s_in) per frame and MAC, 3×B×M, from J (M×B×S, overwritten: it
    is the metric's largest tensor) and s_in (B×S)."""
    total, cross = j.sum(-1).T, torch.einsum("mbs,bs->bm", j, s_in)
    return torch.stack([total, j.square_().sum(-1).T, cross]).double()


class SiscAdherence(Metric):
    name = "sisc_adherence"
    batchable = True

    def __init__(self, params: SiscAdherenceParams) -> None:
        super().__init__(params)
        self.memory = shared_memory(None, params.approximation_batch_size)
        self.other = "cosine" if params.method == "pearson" else "pearson"
        self._other: list[torch.Tensor] = []

    def extras(self) -> dict[str, list[torch.Tensor]]:
        return {f"{self.name}_{self.other}": self._other}

    def bind(self, model: SparseyModel, shared: dict[str, Any] | None = None) -> None:
        self.memory = shared_memory(shared, self.params.approximation_batch_size, model.seed)
        self.device = model.device

    def compute(self, outs: list[LayerOutput], images: torch.Tensor,
                phase: Phase) -> list[torch.Tensor]:
        """Training frames of one batch are sequential: frame t is compared with 𝒮 and with
        the batch's frames before t, then the batch joins 𝒮."""
        b = images.shape[0]
        device = outs[0].codes.device
        x = images.reshape(b, -1).to(device, torch.float32)
        stored_x, stored_codes = self.memory.view(outs)
        n_stored = 0 if stored_x is None else stored_x.shape[0]
        causal = phase == "train" and b > 1
        if n_stored == 0 and not causal:  # 𝒮 is empty
            result = [torch.zeros(o.active.shape, device=device) for o in outs]
            self._other = [r.clone() for r in result]
        else:
            self._other = []
            parts = []
            if n_stored:
                s_in = input_jaccard(x, stored_x, self.memory.input_sizes[:n_stored])
                parts.append(s_in)
            if causal:
                earlier = torch.ones(b, b, device=device).tril(-1)  # frame j < t
                s_in_batch = input_jaccard(x, x) * earlier
                parts.append(s_in_batch)
            w = torch.cat(parts, 1).double()
            sum_i, sum_ii = w.sum(1, keepdim=True), w.square().sum(1, keepdim=True)
            result = []
            for ell, o in enumerate(outs):
                k = o.num_neurons
                sums = torch.zeros(3, b, o.codes.shape[1], dtype=torch.float64, device=device)
                n = torch.zeros(b, 1, dtype=torch.float64, device=device)
                if n_stored:
                    sums += _sums(code_jaccard_matrix(o.codes, stored_codes[ell], k), s_in)
                    n += n_stored
                if causal:
                    j = code_jaccard_matrix(o.codes, o.codes, k) * earlier
                    sums += _sums(j, s_in_batch)
                    n += earlier.sum(1, keepdim=True).double()
                result.append(self._score(sums, sum_i, sum_ii, n, self.params.method))
                self._other.append(self._score(sums, sum_i, sum_ii, n, self.other))
        if phase == "train":
            self.memory.add(images, outs)  # joins 𝒮 after it was scored
        return result

    @staticmethod
    def _score(sums: torch.Tensor, sum_i: torch.Tensor, sum_ii: torch.Tensor,
               n: torch.Tensor, method: str) -> torch.Tensor:
        """Cosine or Pearson from the sums over the stored entries (B×M; 0 where 𝒮 is empty).

        Masked-out entries are 0 in both vectors, so they add nothing to any sum.
        """
        sum_c, sum_cc, dot = sums
        if method == "pearson":
            nn = n.clamp(min=1)
            dot = dot - sum_c * sum_i / nn
            sum_cc = (sum_cc - sum_c * sum_c / nn).clamp(min=0)
            sum_ii = (sum_ii - sum_i * sum_i / nn).clamp(min=0)
        norm = (sum_cc * sum_ii).sqrt()
        score = torch.where(n > 0, dot / norm.clamp(min=1e-8), torch.zeros_like(dot))
        return score.float()

    def state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"], getattr(self, "device", "cpu"))
