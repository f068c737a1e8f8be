"""Sequential Hebbian learning with saturation freezing and permanence decay (spec §4).

The weights of a layer live in one row store of shape (1 + M·N)×QK: row 1 + m·N + n is the
bundle from input cell n to MAC m, and row 0 is an all-zero padding row. A MAC's active inputs
are then a list of row indices (0 = none), so familiarity is a gather-and-sum over just those
rows (`torch.embedding_bag`) and learning is a scatter into just those rows — no dense M×N×QK
work per frame. Row 0 doubles as the sink for masked writes and is zeroed after each update.
"""

from __future__ import annotations

import math

import torch

VIRGIN_AGE = 2**30
PAD_ROW = 0
#: float16 holds every integer up to 2^11 exactly: a binary store summed over at most this many
#: rows gives exact u in any order, at half float32's memory traffic
HALF_EXACT_SUM = 2**11


def store_dtype(permanence_steps: int | None, max_rows_summed: int,
                device: torch.device | str = "cpu") -> torch.dtype:
    """float16 where W stays binary (no decay: weights only go 0 → 1) and u ≤ 2^11, so u is
    exact; float32 otherwise (decayed weights are fractions). MPS keeps float32."""
    binary = permanence_steps is None
    if binary and max_rows_summed <= HALF_EXACT_SUM and torch.device(device).type != "mps":
        return torch.float16
    return torch.float32


def shared_dtype(rules: list[HebbianRule]) -> torch.dtype:
    """The dtype of one store holding all `rules`' rows: theirs if they agree, else float32."""
    dtypes = {r.dtype for r in rules}
    return dtypes.pop() if len(dtypes) == 1 else torch.float32


def permanence(age: torch.Tensor, steps: int, convexity: float) -> torch.Tensor:
    """g(t) = (T + c)(T − t) / (T·(T − t + c)) for t < T, and 0 for t ≥ T."""
    t = age.to(torch.float64)
    T, c = float(steps), float(convexity)
    left = (T - t).clamp(min=0.0)
    g = (T + c) * left / (T * (left + c)).clamp(min=1e-300)
    return torch.where(t < T, g, torch.zeros_like(g)).to(torch.float32)


def count_nonzero_rows(store: torch.Tensor, out: torch.Tensor) -> None:
    """out[i] = nonzero weights in row i (float), about a million weights at a time: no
    temporary as large as the store is made."""
    block = max(1, (1 << 20) // max(store.shape[-1], 1))
    for lo in range(0, store.shape[0], block):
        out[lo:lo + block].copy_(torch.count_nonzero(store[lo:lo + block], dim=-1))


def freeze_count(saturation_threshold: float, cells: int) -> int:
    """Smallest number of nonzero weights in a row that reaches θ_sat (a row has QK)."""
    k = max(1, math.floor((saturation_threshold - 1e-9) * cells) - 1)
    while k / cells < saturation_threshold - 1e-9:
        k += 1
    return k


class HebbianRule:
    """Owns a layer's learning state: the row store, the per-row freeze latch, the ages.

    Rows (m, n) freeze once ≥ θ_sat of their QK weights are nonzero (per source cell →
    target MAC bundle, [SC]); frozen rows never change again, decay included.
    """

    def __init__(self, num_macs: int, input_size: int, cells: int,
                 saturation_threshold: float = 1.0, permanence_steps: int | None = None,
                 permanence_convexity: float = 1.0, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        if dtype != torch.float32 and permanence_steps is not None:
            raise ValueError("a decaying store holds fractions: it must be float32")
        self.dtype = dtype
        self.rows = 1 + num_macs * input_size
        self.shape = (num_macs, input_size, cells)
        self.cells = cells
        self.device = torch.device(device)
        self._store: torch.Tensor | None = None  # allocated on first use (see `store`)
        self._frozen: torch.Tensor | None = None
        self._counts: torch.Tensor | None = None
        self.compact = self.device.type == "cpu"  # nonzero() would sync a GPU
        self._ones_buffer = torch.ones(0, device=device, dtype=dtype)
        self.version = 0  # bumped by every change of W (caches of W check it)
        self.freeze_at = freeze_count(saturation_threshold, cells)
        self.permanence_steps = permanence_steps
        self.permanence_convexity = permanence_convexity
        self.age: torch.Tensor | None = None
        if permanence_steps is not None:
            start = min(permanence_steps, VIRGIN_AGE)
            self.age = torch.full((self.rows, cells), start, dtype=torch.int32, device=device)

    # The row store, latch and counts are allocated lazily, so a model that fuses its layers
    # into one shared store (the wavefront) never holds each layer's copy as well.
    @property
    def store(self) -> torch.Tensor:
        """(1 + M·N)×QK weights, row 0 the zero pad row."""
        if self._store is None:
            self._store = torch.zeros(self.rows, self.cells, device=self.device,
                                      dtype=self.dtype)
        return self._store

    @property
    def frozen_store(self) -> torch.Tensor:
        """(1 + M·N) freeze latch; the pad row is always frozen (never learns)."""
        if self._frozen is None:
            self._frozen = torch.zeros(self.rows, dtype=torch.bool, device=self.device)
            self._frozen[PAD_ROW] = True
        return self._frozen

    @property
    def counts(self) -> torch.Tensor:
        """Nonzero weights per row (float: exact far beyond any QK), for the freeze test."""
        if self._counts is None:
            self._counts = torch.zeros(self.rows, device=self.device)
        return self._counts

    @classmethod
    def combined(cls, rules: list[HebbianRule]) -> tuple[HebbianRule, list[int]]:
        """One rule over all `rules`' rows, stacked; each given rule becomes a view of it.

        Returns the combined rule and each rule's first row in it. Every rule's own pad row
        stays zero and frozen, so rows of any rule can be mixed in one update.
        """
        offsets, total = [], 0
        for r in rules:
            offsets.append(total)
            total += r.rows
        first = rules[0]
        whole = cls(1, total - 1, first.cells, device=first.device, dtype=shared_dtype(rules))
        whole.freeze_at = first.freeze_at
        whole.compact = first.compact
        for r, lo in zip(rules, offsets, strict=True):
            hi = lo + r.rows
            for name in ("_store", "_frozen", "_counts"):
                own = getattr(r, name)
                part = getattr(whole, name.lstrip("_").replace("frozen", "frozen_store"))[lo:hi]
                if own is not None:
                    part.copy_(own)  # (exact: a float16 store holds 0 and 1 only)
                elif name == "_frozen":
                    part[PAD_ROW] = True
                setattr(r, name, part)
            r.dtype = whole.dtype
        return whole, offsets

    @property
    def weights(self) -> torch.Tensor:
        """W as M×N×QK (a view of the row store)."""
        return self.store[1:].view(self.shape)

    @property
    def frozen(self) -> torch.Tensor:
        """The freeze latch as M×N (a view)."""
        return self.frozen_store[1:].view(self.shape[:2])

    def update(self, rows: torch.Tensor, inactive: torch.Tensor, cells: torch.Tensor) -> None:
        """One frame: decay clock ticks, then W[row, c] ← 1 for active inputs × winners.

        rows: M×J store rows of each MAC's active inputs (0 = padding); inactive: M×1 bool;
        cells: M×Q winner cell indices (q·K + k).
        """
        store, flat = self.store, self.store.view(-1)
        self.version += 1
        if self.age is not None:
            self.age.add_(1).clamp_(max=self.permanence_steps)
            decayed = permanence(self.age, self.permanence_steps, self.permanence_convexity)
            store.copy_(torch.where(self.frozen_store[:, None], store, decayed))
        num_macs, fan_in = rows.shape
        frozen = self.frozen_store.index_select(0, rows.view(-1)).view(num_macs, fan_in)
        learns = ~(frozen | inactive)
        if self.compact:
            # On the CPU only the learning slots are touched (a fraction of the padded table).
            slot = learns.view(-1).nonzero().squeeze(1)
            rows = rows.view(-1).index_select(0, slot).long()
            cells = cells.index_select(0, torch.div(slot, fan_in, rounding_mode="floor"))
        else:
            rows = rows.masked_fill(~learns, PAD_ROW).view(-1).long()
            cells = cells.repeat_interleave(fan_in, dim=0)
        pos = ((rows * self.cells).unsqueeze(-1) + cells).view(-1)
        if self.age is None:
            # Without decay a weight never returns to 0: count the new nonzeros incrementally.
            old = flat.index_select(0, pos).view(-1, cells.shape[-1]).sum(
                dim=-1, dtype=torch.float32)
            self.write_ones(pos)
            self.counts.index_add_(0, rows, cells.shape[-1] - old)
        else:
            self.write_ones(pos)
            self.age.view(-1).index_fill_(0, pos, 0)
            self.counts.index_copy_(0, rows, (store.index_select(0, rows) > 0).sum(
                dim=-1, dtype=torch.float32))
        if not self.compact:
            store[PAD_ROW].zero_()  # the masked writes went to the pad row
            self.counts[PAD_ROW] = 0
        # Only rows that learnt can reach θ_sat (they were not frozen: the latch is set here).
        self.frozen_store.index_copy_(0, rows, self.counts.index_select(0, rows) >= self.freeze_at)
        self.frozen_store[PAD_ROW] = True

    def latch_from_weights(self) -> None:
        """Counts from W and the latch from the counts: right when a row can only freeze by
        filling (θ_sat = 1 without decay), where the latch is W's to tell."""
        count_nonzero_rows(self.store, self.counts)
        self.counts[PAD_ROW] = 0
        self.frozen_store.copy_(self.counts >= self.freeze_at)
        self.frozen_store[PAD_ROW] = True

    def write_ones(self, pos: torch.Tensor) -> None:
        """W.flat[pos] ← 1. float32: `scatter_` from a reusable buffer of ones (fastest);
        float16: `index_fill_` (the CPU's float16 `scatter_` copies the whole store)."""
        flat = self.store.view(-1)
        if self.dtype == torch.float32:
            flat.scatter_(0, pos, self.ones(pos.numel()))
        else:
            flat.index_fill_(0, pos, 1.0)

    def ones(self, n: int) -> torch.Tensor:
        """A reusable source of n ones for the scatter (no allocation per frame)."""
        if self._ones_buffer.numel() < n or self._ones_buffer.dtype != self.dtype:
            self._ones_buffer = torch.ones(max(n, 2 * self._ones_buffer.numel()),
                                           device=self.store.device, dtype=self.dtype)
        return self._ones_buffer[:n]

    def state(self) -> dict[str, torch.Tensor]:
        # the model file holds float32 whatever the store's dtype (one file format)
        st = {"weights": self.weights.float(), "frozen": self.frozen}
        if self.age is not None:
            st["age"] = self.age[1:].view(self.shape)
        return st

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.version += 1
        self.weights.copy_(state["weights"])
        self.frozen.copy_(state["frozen"])
        if self.age is not None:
            self.age[1:].view(self.shape).copy_(state["age"])
        count_nonzero_rows(self.store, self.counts)
        self.counts[PAD_ROW] = 0
