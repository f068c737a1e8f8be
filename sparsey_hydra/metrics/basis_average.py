"""basis_average: the mean input each MAC saw through its projected RF while active (spec §5).

BA_ℓ[m, p] = Σ_t a_{t,m}·x_t[p]·Π_ℓ[m, p] / Σ_t a_{t,m} (0 for a never-active MAC) is an M×P
image per layer; `averages()` returns it and the plots draw it. The value logged per MAC and
step is its mean over the projected RF — the fraction of the RF's pixels that were on, on
average, when the MAC fired — so it fits the B×M contract. Training only; eval gives None.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from sparsey_hydra.core.sparsey_layer import LayerOutput
from sparsey_hydra.metrics.base import Metric, Phase
from sparsey_hydra.metrics.projection import projected_fields

if TYPE_CHECKING:
    from sparsey_hydra.core.model import SparseyModel


class BasisAverage(Metric):
    name = "basis_average"
    batchable = True
    phases = ("train",)

    def bind(self, model: SparseyModel, shared: dict[str, Any] | None = None) -> None:
        self.input_shape = model.input_shape
        self.fields = projected_fields(model)
        self.field_size = [f.sum(1) for f in self.fields]
        self.sums = [torch.zeros_like(f) for f in self.fields]  # Σ_t a·x, M×P
        self.active = [torch.zeros_like(s) for s in self.field_size]  # Σ_t a, M
        self.on_in_field = [torch.zeros_like(s) for s in self.field_size]  # Σ_t a·|x ∧ Π|, M

    def compute(self, outs: list[LayerOutput], images: torch.Tensor,
                phase: Phase) -> list[torch.Tensor] | None:
        if phase != "train":
            return None
        if not hasattr(self, "fields"):
            raise RuntimeError("BasisAverage.bind(model) must run before compute")
        x = images.reshape(images.shape[0], -1).to(self.fields[0].device, torch.float32)
        values = []
        for ell, out in enumerate(outs):
            a = out.active.float()
            self.sums[ell] += a.T @ x
            seen = self.active[ell] + a.cumsum(0)
            on = self.on_in_field[ell] + (a * (x @ self.fields[ell].T)).cumsum(0)
            self.active[ell], self.on_in_field[ell] = seen[-1], on[-1]
            values.append(torch.where(seen > 0, on / (seen * self.field_size[ell]).clamp(min=1),
                                      torch.zeros_like(on)))
        return values

    def averages(self) -> list[torch.Tensor]:
        """BA_ℓ per layer as M×H×W images (0 for a MAC that was never active)."""
        out = []
        for s, f, n in zip(self.sums, self.fields, self.active, strict=True):
            ba = torch.where(n[:, None] > 0, s * f / n.clamp(min=1)[:, None], torch.zeros_like(s))
            out.append(ba.reshape(-1, *self.input_shape).cpu())
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"averages": self.averages(),
                "fields": [f.reshape(-1, *self.input_shape).cpu() for f in self.fields]}
