"""Exact sets of codes as sorted int64 tensors: no hashing, so no collisions (spec B13).

A code (the Q winner indices of one MAC) is packed bit-exactly into one int64 together with its
MAC index. Codes too wide for 62 bits are packed group by group and the groups are interned to
dense ids, which are then packed again — still exact. Membership is a `searchsorted`; new keys go
into a small sorted buffer that is merged into the main array now and then, so adding stays
cheap however large the set grows.
"""

from __future__ import annotations

import math

import torch

KEY_BITS = 62  # stay clear of the sign bit
ID_BITS = 31


def _insert(keys: torch.Tensor, ids: torch.Tensor, new_keys: torch.Tensor,
            new_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge sorted `new_keys` (absent from `keys`) into sorted `keys`, carrying the ids."""
    if new_keys.numel() == 0:
        return keys, ids
    pos = torch.searchsorted(keys, new_keys) + torch.arange(new_keys.numel(),
                                                            device=keys.device)
    total = keys.numel() + new_keys.numel()
    out_k = torch.empty(total, dtype=keys.dtype, device=keys.device)
    out_i = torch.empty(total, dtype=ids.dtype, device=keys.device)
    old = torch.ones(total, dtype=torch.bool, device=keys.device)
    old[pos] = False
    out_k[pos], out_i[pos] = new_keys, new_ids
    out_k[old], out_i[old] = keys, ids
    return out_k, out_i


def _find(keys: torch.Tensor, ids: torch.Tensor,
          query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(found mask, id where found) of each query key in sorted `keys`."""
    if keys.numel() == 0:
        return torch.zeros_like(query, dtype=torch.bool), torch.zeros_like(query)
    at = torch.searchsorted(keys, query).clamp(max=keys.numel() - 1)
    return keys[at] == query, ids[at]


class KeyInterner:
    """int64 key → dense id (0, 1, 2, … in order of first appearance), exact."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        empty = torch.empty(0, dtype=torch.long, device=device)
        self._main = (empty, empty)
        self._recent = (empty, empty)
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def intern(self, keys: torch.Tensor, distinct: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, fresh): fresh marks the first occurrence of each key never seen before.

        `distinct=True` promises that `keys` has no duplicates (one frame's MAC keys), which
        skips the `unique`.
        """
        if keys.numel() == 0:
            return keys.clone(), torch.zeros_like(keys, dtype=torch.bool)
        positions = torch.arange(keys.numel(), device=keys.device)
        if distinct:
            uniq, inv, first = keys, None, positions
        else:
            uniq, inv = torch.unique(keys, return_inverse=True)
            first = torch.full((uniq.numel(),), keys.numel(), dtype=torch.long,
                               device=keys.device).scatter_reduce(0, inv, positions, "amin")
        in_main, id_main = _find(*self._main, uniq)
        in_recent, id_recent = _find(*self._recent, uniq)
        new = ~(in_main | in_recent)
        uid = torch.where(in_main, id_main, id_recent)
        n_new = int(new.sum())
        if n_new:
            new_keys = uniq[new]
            # ids follow the order of first appearance in `keys`
            rank = (torch.arange(n_new, device=keys.device) if distinct
                    else torch.argsort(torch.argsort(first[new])))
            new_ids = self.size + rank
            uid[new] = new_ids
            order = torch.argsort(new_keys) if distinct else slice(None)  # unique() sorts
            self._recent = _insert(*self._recent, new_keys[order], new_ids[order])
            self.size += n_new
            if self._recent[0].numel() > max(4096, 8 * math.isqrt(self._main[0].numel())):
                self._main = _insert(*self._main, *self._recent)
                empty = self._recent[0][:0]
                self._recent = (empty, empty)
        if inv is None:
            return uid, new
        return uid[inv], new[inv] & (first[inv] == positions)


class CodeSet:
    """The distinct (MAC, code) pairs of one layer; `add` says which are new."""

    def __init__(self, num_macs: int, num_cms: int, num_neurons: int,
                 device: torch.device | str = "cpu") -> None:
        self.bits = max(1, (num_neurons - 1).bit_length())
        self.mac_bits = max(1, (num_macs - 1).bit_length())
        self.num_cms = num_cms
        self.per_group = max(1, KEY_BITS // self.bits)
        self.device = torch.device(device)
        self.wide = num_cms * self.bits + self.mac_bits > KEY_BITS
        self.keys = KeyInterner(device)
        n_groups = math.ceil(num_cms / self.per_group)
        self.group_ids = [KeyInterner(device) for _ in range(n_groups)] if self.wide else []
        self.fold_ids = [KeyInterner(device) for _ in range(max(0, n_groups - 1))]

    def _pack(self, codes: torch.Tensor) -> torch.Tensor:
        """Pack ≤ KEY_BITS worth of winner indices (…×q) into one int64 each."""
        shifts = torch.arange(codes.shape[-1], device=codes.device) * self.bits
        return (codes.long() << shifts).sum(-1)

    def add(self, macs: torch.Tensor, codes: torch.Tensor, distinct: bool = False
            ) -> torch.Tensor:
        """Add (MAC index n, code n×Q) pairs in order; True where the pair is new."""
        if not self.wide:
            key = self._pack(codes) | (macs.long() << (self.num_cms * self.bits))
            return self.keys.intern(key, distinct)[1]
        ids = None
        for g, interner in enumerate(self.group_ids):
            part = codes[:, g * self.per_group:(g + 1) * self.per_group]
            gid = interner.intern(self._pack(part))[0]
            ids = gid if ids is None else self.fold_ids[g - 1].intern((ids << ID_BITS) | gid)[0]
        return self.keys.intern((macs.long() << ID_BITS) | ids, distinct)[1]
