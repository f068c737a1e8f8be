"""The stored training pairs (input, codes) that match accuracy and SISC compare against.

The reference keeps every training item (B15); with a capacity it keeps a uniform reservoir
sample of the training items rather than sparseypy's skewed refresh. Items are stored in
preallocated buffers that double when full, so adding stays O(1) amortised.

Both metrics share one memory. A frame is added *after* it was scored: `add` only stages it,
and it is committed when the next frame arrives or someone reads the memory for another frame.
"""

from __future__ import annotations

from typing import Any

import torch

from sparsey_hydra.core.sparsey_layer import LayerOutput


def input_jaccard(x: torch.Tensor, stored: torch.Tensor,
                  stored_sizes: torch.Tensor | None = None) -> torch.Tensor:
    """J between each input (B×P) and each stored input (S×P): B×S, 0 when both are empty."""
    inter = x @ stored.T
    sizes = stored.sum(1) if stored_sizes is None else stored_sizes
    union = x.sum(1, keepdim=True) + sizes[None, :] - inter
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


def one_hot_codes(codes: torch.Tensor, k: int) -> torch.Tensor:
    """Codes (…×M×Q, −1 = inactive) as binary cell vectors …×M×(Q·K)."""
    y = torch.zeros(*codes.shape, k, device=codes.device)
    y.scatter_(-1, codes.clamp(min=0).long().unsqueeze(-1), 1.0)
    y = y * (codes >= 0).unsqueeze(-1)
    return y.reshape(*codes.shape[:-1], codes.shape[-1] * k)


def code_jaccard_matrix(codes: torch.Tensor, stored: torch.Tensor, k: int) -> torch.Tensor:
    """J between every code (B×M×Q) and every stored code (S×M×Q) of the same MAC: M×B×S.

    The overlaps |y ∧ y'| are one batched matmul of the binary cell vectors over the MACs.
    With both codes active the union is 2Q − overlap; with either inactive the overlap is 0,
    so J = overlap / (2Q − overlap) holds everywhere (0 when both are empty, as in §5).
    """
    q = codes.shape[-1]
    same = torch.bmm(one_hot_codes(codes, k).transpose(0, 1),
                     one_hot_codes(stored, k).permute(1, 2, 0))
    # 1 / (2Q/overlap − 1), in place (M×B×S is the largest tensor of the metric): 0 → 0
    return same.reciprocal_().mul_(2 * q).sub_(1.0).reciprocal_()


class TrainingMemory:
    """Every training item by default, or a uniform reservoir of `capacity` items."""

    def __init__(self, capacity: int | None = None, seed: int = 0) -> None:
        self.capacity = capacity
        self.size = 0
        self.seen = 0  # training items offered so far
        self.inputs: torch.Tensor | None = None  # S×P float 0/1
        self.input_sizes: torch.Tensor | None = None  # S
        self.codes: list[torch.Tensor] = []  # per layer S×M×Q int32, −1 = inactive
        self.generator = torch.Generator().manual_seed(seed)
        self._pending: tuple[list[LayerOutput], torch.Tensor] | None = None
        self._state: tuple[int, dict[str, Any]] | None = None

    def __len__(self) -> int:
        pending = 0 if self._pending is None else self._pending[1].shape[0]
        return self.size + pending

    def add(self, images: torch.Tensor, outs: list[LayerOutput]) -> None:
        """Stage a training batch; adding the same `outs` twice (two metrics) stores it once."""
        if self._pending is not None and self._pending[0] is outs:
            return
        self._commit()
        self._pending = (outs, images)

    def view(self, current: list[LayerOutput] | None = None
             ) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """(inputs S×P, codes per layer S×M×Q) stored before the frame `current`."""
        if self._pending is not None and self._pending[0] is not current:
            self._commit()
        if self.inputs is None:
            return None, []
        return self.inputs[:self.size], [c[:self.size] for c in self.codes]

    def stacked(self) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """Everything stored, the staged batch included."""
        return self.view(None)

    def _commit(self) -> None:
        if self._pending is None:
            return
        outs, images = self._pending
        self._pending = None
        device = outs[0].codes.device
        x = images.reshape(images.shape[0], -1).to(device, torch.float32)
        codes = [o.codes.to(torch.int32) for o in outs]
        if self.inputs is None:
            self.inputs = x.new_zeros(0, x.shape[1])
            self.input_sizes = x.new_zeros(0)
            self.codes = [c.new_zeros(0, *c.shape[1:]) for c in codes]
        slots = self._slots(x.shape[0])
        keep = torch.tensor([s >= 0 for s in slots], dtype=torch.bool)
        if not bool(keep.any()):
            return
        where = torch.tensor([s for s in slots if s >= 0], dtype=torch.long, device=device)
        self._grow(int(where.max()) + 1)
        keep = keep.to(device)
        self.inputs[where] = x[keep]
        self.input_sizes[where] = x[keep].sum(1)
        for buf, c in zip(self.codes, codes, strict=True):
            buf[where] = c[keep]
        self.size = max(self.size, int(where.max()) + 1)

    def _slots(self, n: int) -> list[int]:
        """The slot of each new item (−1: not kept); reservoir sampling once full."""
        slots = []
        for _ in range(n):
            if self.capacity is None or self.seen < self.capacity:
                slots.append(self.seen)
            else:
                j = int(torch.randint(self.seen + 1, (1,), generator=self.generator))
                slots.append(j if j < self.capacity else -1)
            self.seen += 1
        return slots

    def _grow(self, needed: int) -> None:
        assert self.inputs is not None and self.input_sizes is not None
        have = self.inputs.shape[0]
        if needed <= have:
            return
        new = max(needed, 2 * have, 64)
        if self.capacity is not None:
            new = min(new, self.capacity)
        extra = new - have
        self.inputs = torch.cat([self.inputs, self.inputs.new_zeros(extra, self.inputs.shape[1])])
        self.input_sizes = torch.cat([self.input_sizes, self.input_sizes.new_zeros(extra)])
        self.codes = [torch.cat([c, c.new_full((extra, *c.shape[1:]), -1)]) for c in self.codes]

    def state_dict(self) -> dict[str, Any]:
        """Cached until the memory changes, so metrics sharing it save one copy."""
        x, codes = self.stacked()
        if self._state is None or self._state[0] != self.seen:
            self._state = (self.seen, {
                "capacity": self.capacity, "seen": self.seen,
                "inputs": None if x is None else x.bool().cpu(),
                "codes": [c.cpu() for c in codes], "generator": self.generator.get_state()})
        return self._state[1]

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        self._pending = None
        self.seen = int(state["seen"])
        self.generator.set_state(state["generator"])
        if state["inputs"] is None:
            self.inputs, self.input_sizes, self.codes, self.size = None, None, [], 0
            return
        self.inputs = state["inputs"].to(device, torch.float32)
        self.input_sizes = self.inputs.sum(1)
        self.codes = [c.to(device, torch.int32) for c in state["codes"]]
        self.size = self.inputs.shape[0]


def shared_memory(shared: dict[str, Any] | None, capacity: int | None,
                  seed: int = 0) -> TrainingMemory:
    """One memory per capacity among the metrics bound to the same run."""
    if shared is None:
        return TrainingMemory(capacity, seed)
    return shared.setdefault(("training_memory", capacity), TrainingMemory(capacity, seed))
