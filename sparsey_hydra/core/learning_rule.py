"""Sequential Hebbian learning with saturation freezing and permanence decay (spec §4)."""

from __future__ import annotations

import torch

VIRGIN_AGE = 2**30


def permanence(age: torch.Tensor, steps: int, convexity: float) -> torch.Tensor:
    """g(t) = (T + c)(T − t) / (T·(T − t + c)) for t < T, and 0 for t ≥ T."""
    t = age.to(torch.float64)
    T, c = float(steps), float(convexity)
    left = (T - t).clamp(min=0.0)
    g = (T + c) * left / (T * (left + c)).clamp(min=1e-300)
    return torch.where(t < T, g, torch.zeros_like(g)).to(torch.float32)


class HebbianRule:
    """Owns a layer's weights' learning state: W, per-row freeze latch, per-weight age.

    W has shape M×N×QK. Rows (m, n) freeze once ≥ θ_sat of their QK weights are nonzero
    (per source cell → target MAC bundle, [SC]); frozen rows never change again.
    """

    def __init__(
        self, weights: torch.Tensor, saturation_threshold: float = 1.0,
        permanence_steps: int | None = None, permanence_convexity: float = 1.0,
    ) -> None:
        self.weights = weights
        m, n, _ = weights.shape
        self.frozen = torch.zeros(m, n, dtype=torch.bool, device=weights.device)
        self.saturation_threshold = saturation_threshold
        self.permanence_steps = permanence_steps
        self.permanence_convexity = permanence_convexity
        self.age: torch.Tensor | None = None
        if permanence_steps is not None:
            start = min(permanence_steps, VIRGIN_AGE)
            self.age = torch.full(weights.shape, start, dtype=torch.int32, device=weights.device)

    def update(self, x: torch.Tensor, active: torch.Tensor, cells: torch.Tensor) -> None:
        """One frame: decay clock ticks, then W[m, n, c] ← 1 for active inputs × winners.

        x: M×N binary input of this frame; active: M bool; cells: M×Q winner cell indices.
        """
        w = self.weights
        rows = x.bool() & active[:, None] & ~self.frozen
        m_idx, n_idx = torch.nonzero(rows, as_tuple=True)
        if self.age is not None:
            self.age.add_(1).clamp_(max=self.permanence_steps)
            decayed = permanence(self.age, self.permanence_steps, self.permanence_convexity)
            w.copy_(torch.where(self.frozen[:, :, None], w, decayed))
        if m_idx.numel() == 0:
            return
        c_idx = cells[m_idx]  # nnz×Q
        mm = m_idx[:, None].expand_as(c_idx)
        nn_ = n_idx[:, None].expand_as(c_idx)
        w[mm, nn_, c_idx] = 1.0
        if self.age is not None:
            self.age[mm, nn_, c_idx] = 0
        filled = (w[m_idx, n_idx] > 0).sum(dim=-1).to(torch.float32) / w.shape[-1]
        newly = filled >= self.saturation_threshold - 1e-9
        self.frozen[m_idx[newly], n_idx[newly]] = True
