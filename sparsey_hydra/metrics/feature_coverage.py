"""feature_coverage: the share of the input's on-pixels that reach each MAC (spec §5).

Γ_1[b, m, p] = a_{1,b,m}·[p ∈ 𝓡_1(m)] — gated by layer-1 activity, which sparseypy omits (B14) —
and Γ_ℓ[b, m, p] = a_{ℓ,b,m}·Σ_{j ∈ 𝓡_ℓ(m)} Γ_{ℓ−1}[b, j, p]. Per MAC,
FC_ℓ[b, m] = |{p : x_b[p] ∧ Γ_ℓ[b, m, p] > 0}| / |x_b|, and per layer the union
FCU_ℓ[b] = |{p : x_b[p] ∧ ∃ m: Γ_ℓ[b, m, p] > 0}| / |x_b| (logged as `feature_coverage_union`).
A blank input gives 0, not NaN. Both phases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from sparsey_hydra.core.sparsey_layer import LayerOutput
from sparsey_hydra.metrics.base import Metric, Phase
from sparsey_hydra.metrics.projection import connectivity

if TYPE_CHECKING:
    from sparsey_hydra.core.model import SparseyModel

UNION = "feature_coverage_union"


class FeatureCoverage(Metric):
    name = "feature_coverage"
    batchable = True

    def bind(self, model: SparseyModel, shared: dict[str, Any] | None = None) -> None:
        self.links = connectivity(model)
        self._union: list[torch.Tensor] = []

    def compute(self, outs: list[LayerOutput], images: torch.Tensor,
                phase: Phase) -> list[torch.Tensor]:
        if not hasattr(self, "links"):
            raise RuntimeError("FeatureCoverage.bind(model) must run before compute")
        b = images.shape[0]
        x = images.reshape(b, -1).to(self.links[0].device, torch.float32)
        n_on = x.sum(1)
        act = [o.active.float() for o in outs]

        def share(count: torch.Tensor) -> torch.Tensor:  # / |x|, and 0 for a blank input
            on = n_on.reshape(-1, *[1] * (count.dim() - 1))
            return torch.where(on > 0, count / on.clamp(min=1), torch.zeros_like(count))

        # Layer 1 is linear: FC_1 = a_1·(x Cᵀ)/|x|, and the union is the pixels of x in any
        # active MAC's RF. Above it, reach_ℓ[b, m, p] = [Γ_ℓ[b, m, p] > 0] is built from
        # reach_{ℓ−1} by one (batched) matmul, without ever forming layer 1's B×M×P.
        coverage = [share(act[0] * (x @ self.links[0].T))]
        self._union = [share(((act[0] @ self.links[0]) > 0).float().mul(x).sum(1))]
        reach: torch.Tensor | None = None
        for ell in range(1, len(outs)):
            if reach is None:
                reach = torch.matmul(self.links[1][None] * act[0][:, None, :], self.links[0])
            else:
                reach = torch.matmul(self.links[ell], reach)
            reach = ((reach > 0) & outs[ell].active[:, :, None]).float()
            coverage.append(share(torch.bmm(reach, x[:, :, None])[..., 0]))
            self._union.append(share(reach.amax(1).mul(x).sum(1)))
        return coverage

    def extras(self) -> dict[str, list[torch.Tensor]]:
        return {UNION: self._union}
