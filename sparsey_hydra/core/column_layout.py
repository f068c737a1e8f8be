"""W as blocks for recognition frames last: one bfloat16 matmul per group of MACs.

A layer's dense layout (every MAC × every lower cell) is mostly zeros: a MAC sees only its
RF. Grouping g consecutive MACs and keeping only the union of their RFs' lower MACs gives
G = ⌈M/g⌉ blocks of (g·QK)×(U·C_low) — one batched matmul — at the price of gathering each
group's U lower MACs' outputs first. The group size is chosen per layer from the geometry
alone by a cost model: multiply-adds plus `GATHER_COST` per gathered input; g = M (one
group over every lower MAC, no gather) is the plain dense layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: a gathered input element (a copy) costs about as much as this many multiply-adds of the
#: bfloat16 matmul (measured on the benchmark networks, 2-core CPU)
GATHER_COST = 48


@dataclass(frozen=True)
class ColumnGroups:
    """Which lower MACs each group of `size` consecutive MACs reads (the geometry part)."""

    size: int  # g, MACs per group (the last group is padded with empty MACs)
    width: int  # U, lower MACs per group
    sources: torch.Tensor | None  # G×U lower MAC ids per group; None: all, in order (dense)
    slot: torch.Tensor  # M×R: each RF entry's slot in its group's U (U for RF padding)

    @property
    def groups(self) -> int:
        return 1 if self.sources is None else self.sources.shape[0]


def group_macs(rf_index: torch.Tensor, lower_macs: int, lower_cells: int,
               cells: int) -> ColumnGroups:
    """The cheapest grouping of a layer's MACs (rf_index: M×R, padded with `lower_macs`):
    g = 1, 2, 4, … or all of them, by multiply-adds + GATHER_COST × gathered inputs."""
    macs = rf_index.shape[0]
    dense = ColumnGroups(macs, lower_macs, None, rf_index.clone())
    best, best_cost = dense, macs * cells * lower_macs * lower_cells
    size = 1
    while size < macs:
        grouping = _groups(rf_index, lower_macs, size)
        inputs = grouping.groups * grouping.width * lower_cells
        cost = inputs * (size * cells + GATHER_COST)
        if cost < best_cost:
            best, best_cost = grouping, cost
        size *= 2
    return best


def _groups(rf_index: torch.Tensor, lower_macs: int, size: int) -> ColumnGroups:
    """Groups of `size` consecutive MACs, each reading the union of its members' RFs."""
    macs, r_max = rf_index.shape
    groups = -(-macs // size)
    group_of = torch.arange(macs) // size
    seen = torch.zeros(groups, lower_macs + 1, dtype=torch.bool)
    seen[group_of.unsqueeze(1), rf_index] = True
    seen[:, lower_macs] = False  # RF padding
    width = max(int(seen.sum(dim=1).max()), 1)
    where = torch.where(seen, seen.cumsum(dim=1) - 1, width)  # slot of lower MAC j in group
    grp, j = seen.nonzero(as_tuple=True)
    # padding slots read a real lower MAC (any: their weights are all zero)
    sources = torch.zeros(groups, width, dtype=torch.long)
    sources[grp, where[grp, j]] = j
    return ColumnGroups(size, width, sources, where[group_of.unsqueeze(1), rf_index])


def column_weights(groups: ColumnGroups, weights: torch.Tensor, rf_index: torch.Tensor,
                   lower_cells: int, cells: int) -> torch.Tensor:
    """G×(g·QK)×(U·C_low) bfloat16 blocks of W (M×(R·C_low)×QK): block row (m, c), column
    (slot of j, c_low) holds MAC m's weight from lower cell c_low of RF MAC j."""
    macs, r_max = rf_index.shape
    g, width = groups.size, groups.width
    blocks = torch.zeros(groups.groups, g, cells, width + 1, lower_cells,
                         dtype=torch.bfloat16, device=weights.device)
    m = torch.arange(macs, device=weights.device).unsqueeze(1).expand(-1, r_max)
    slot = groups.slot.to(weights.device)
    w = weights.view(macs, r_max, lower_cells, cells).transpose(2, 3)  # M×R×QK×C_low
    blocks[m // g, m % g, :, slot, :] = w.to(torch.bfloat16)
    return blocks[..., :width, :].reshape(groups.groups, g * cells, width * lower_cells)


class GatherBuffer:
    """One buffer for every layer's gathered inputs, reused from block to block and call to
    call: the largest temporary of recognition frames last (a group reads overlapping RFs),
    which freshly allocated faulted in new pages each time (up to a third of the time)."""

    def __init__(self) -> None:
        self._buffer: torch.Tensor | None = None

    def take(self, numel: int, like: torch.Tensor) -> torch.Tensor:
        """`numel` elements of `like`'s dtype and device (contents undefined)."""
        buf = self._buffer
        if buf is None or buf.numel() < numel or buf.dtype != like.dtype \
                or buf.device != like.device:
            buf = self._buffer = torch.empty(numel, dtype=like.dtype, device=like.device)
        return buf[:numel]
