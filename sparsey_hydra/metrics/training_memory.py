"""The stored training pairs (input, codes) that match accuracy and SISC compare against."""

from __future__ import annotations

import torch

from sparsey_hydra.core.sparsey_layer import LayerOutput


def input_jaccard(x: torch.Tensor, stored: torch.Tensor) -> torch.Tensor:
    """J between each input (B×P) and each stored input (S×P): B×S, 0 when both are empty."""
    inter = x @ stored.T
    union = x.sum(1, keepdim=True) + stored.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))


def code_jaccard(codes: torch.Tensor, stored: torch.Tensor,
                 both_empty: float = 0.0) -> torch.Tensor:
    """J between codes (…×M×Q) and stored codes broadcast against them; −1 = inactive MAC.

    A code is the set of its Q winner cells, so |y ∧ y'| counts CMs with the same winner.
    """
    q = codes.shape[-1]
    act = (codes[..., 0] >= 0).float()
    sact = (stored[..., 0] >= 0).float()
    same = ((codes == stored) & (codes >= 0)).sum(-1).float()
    union = q * (act + sact) - same
    return torch.where(union > 0, same / union.clamp(min=1),
                       torch.full_like(same, both_empty))


class TrainingMemory:
    """Every training item by default, or the first `capacity` ones (exact, not sparseypy's B15)."""

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity
        self.inputs: list[torch.Tensor] = []
        self.codes: list[list[torch.Tensor]] = []

    def __len__(self) -> int:
        return len(self.inputs)

    def add(self, images: torch.Tensor, outs: list[LayerOutput]) -> None:
        flat = images.reshape(images.shape[0], -1).float().cpu()
        for b in range(flat.shape[0]):
            if self.capacity is not None and len(self.inputs) >= self.capacity:
                return
            self.inputs.append(flat[b])
            self.codes.append([o.codes[b].cpu().to(torch.int32) for o in outs])

    def stacked(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = torch.stack(self.inputs)
        layers = [torch.stack([c[ell] for c in self.codes]) for ell in range(len(self.codes[0]))]
        return x, layers
