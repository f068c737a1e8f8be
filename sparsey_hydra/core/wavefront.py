"""The fused learning loop: every layer of a network steps in one set of tensor operations.

Layer ℓ's frame t needs layer ℓ−1's code for frame t and its own weights after frame t−1, and
nothing else. So at tick τ layer ℓ can learn frame τ − ℓ while layer ℓ+1 learns frame τ − ℓ − 1:
a wavefront. All MACs of all layers then form one "super layer" whose lower layer is every
layer's codes from the previous tick, and one frame costs about as many operator calls as one
layer did. Each layer still sees exactly what the frame-by-frame order gives it (same weights,
same lower codes, same dealt random draws), so codes and weights are bit-identical to
`SparseyModel.learn_frame` called frame after frame.

Only live slots are touched (see `live_slots`): which inputs of which MACs are active is known
for a whole window of ticks ahead, so each tick gathers, sums (`embedding_bag` with one bag per
MAC) and writes just those, in one contiguous range of precomputed slot tables.

It applies when the layers share their CSA parameters and have no permanence decay (the decay
clock would tick on idle layers); otherwise the model runs the per-layer loop. Layers of
different Q and K fuse too when every θ_sat is 1: their CMs are padded to the largest Q×K in
a store of the wavefront's own (copied from and back to the layers around each call), padded
cells get μ = 0 and so are never drawn, and G divides by each MAC's own Q.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F

from sparsey_hydra.core.csa import PaddedCMs, familiarity, sample_winners, selection_weights
from sparsey_hydra.core.learning_rule import PAD_ROW, HebbianRule, count_nonzero_rows
from sparsey_hydra.core.live_slots import bag_offsets, live_inputs
from sparsey_hydra.core.sparsey_layer import SparseyLayer

#: a window of ticks holds at most about this many live slots (bounded memory)
WINDOW_SLOTS = 1 << 18


def fusable(layers: Sequence[object]) -> bool:
    """Whether the wavefront reproduces these layers' frame-by-frame learning exactly."""
    if len(layers) < 2 or not all(isinstance(layer, SparseyLayer) for layer in layers):
        return False
    first = layers[0]
    if not all(layer.rule.age is None and layer.device == first.device for layer in layers):
        return False
    if all(layer.csa_params == first.csa_params and layer.rule.freeze_at == first.rule.freeze_at
           for layer in layers):
        return True
    # different Q×K: the same CSA otherwise, θ_sat = 1 everywhere (see Wavefront), and μ within
    # 2^24 of μ_floor, so the float64 CDF over padded cells stays exact (see sample_winners)
    shape_free = [replace(layer.csa_params, num_cms=1, num_neurons=1) for layer in layers]
    p = first.csa_params
    widest = max(layer.num_neurons for layer in layers)
    return p.mu_form != "compat" and (1 + p.sigmoid_chi * widest) / p.mu_floor < 2**24 and all(
        s == shape_free[0] for s in shape_free) and all(
        layer.rule.freeze_at >= layer.num_cms * layer.num_neurons for layer in layers)


class Wavefront:
    """Slot tables and a shared row store that let all layers learn in one step per tick."""

    def __init__(self, layers: Sequence[SparseyLayer], num_pixels: int) -> None:
        self.layers = list(layers)
        first = self.layers[0]
        self.device = first.device
        self.num_cms = max(layer.num_cms for layer in self.layers)
        self.num_neurons = max(layer.num_neurons for layer in self.layers)
        self.params = replace(first.csa_params, num_cms=self.num_cms,
                              num_neurons=self.num_neurons)
        self.cells = self.num_cms * self.num_neurons
        self.mac_offset = [0]
        for layer in self.layers:
            self.mac_offset.append(self.mac_offset[-1] + layer.num_macs)
        self.num_macs = self.mac_offset[-1]
        self.padded = any(layer.csa_params != first.csa_params for layer in self.layers)
        if self.padded:
            self.rule, row_offset = self._padded_rule()
        else:
            # One row store for all layers; each layer's rule works on its own slice of it.
            self.rule, row_offset = HebbianRule.combined([layer.rule for layer in self.layers])
        self.synced: list[int] | None = None  # the layers' versions the padded store holds
        # θ_sat = 1 without decay: a row freezes only when all its weights are 1, and then a
        # write of 1 changes nothing — the latch is unobservable while learning, so the loop
        # skips it and sets latch and counts from the weights after each call.
        self.latch_after = self.rule.freeze_at >= self.cells
        # Per (MAC, slot j = r·Q_low + q), all layers' MACs stacked and slots padded to the
        # widest: the store row of the slot's first lower cell, where the lower MAC's code for
        # CM q sits in the flat code table (row 0 of the table is all zeros: a pixel's "code"),
        # and the MAC, read at the live slots only.
        self.fan_in = max(layer.fan_in for layer in self.layers)
        tables = torch.zeros(3, self.num_macs, self.fan_in, dtype=torch.long)
        for ell, layer in enumerate(self.layers):
            lo, hi = self.mac_offset[ell], self.mac_offset[ell + 1]
            tables[0, lo:hi, :layer.fan_in] = layer.base.cpu() + row_offset[ell]
            if ell > 0:
                rows = 1 + self.mac_offset[ell - 1] + layer.rf_index.cpu()
                tables[1, lo:hi, :layer.fan_in] = (rows.unsqueeze(-1) * self.num_cms + torch.arange(
                    layer.lower_cms)).reshape(layer.num_macs, -1)
            tables[2, lo:hi] = torch.arange(lo, hi).unsqueeze(1)
        self.slot_tables = [t.reshape(-1).to(self.device) for t in tables]
        # per MAC and CM: q·K_max (the padded store's cell) and q·K_ℓ (the cell the layer
        # above addresses); a padded CM writes CM 0's winner again, which changes nothing
        q = torch.arange(self.num_cms)
        pad_cm, real_cm, real = [], [], []
        for layer in self.layers:
            inside = (q < layer.num_cms).expand(layer.num_macs, -1)
            pad_cm.append(torch.where(inside, q * self.num_neurons, 0))
            real_cm.append(torch.where(inside, q * layer.num_neurons, 0))
            real.append(inside)
        self.cm_offset = torch.cat(pad_cm).to(self.device)
        self.code_offset = torch.cat(real_cm).to(self.device)
        self.real_cm = torch.cat(real).to(self.device)
        self.shape = None
        if self.padded:
            k = torch.arange(self.num_neurons)
            self.cell_mask = torch.cat([
                ((q < layer.num_cms)[:, None] & (k < layer.num_neurons)[None, :]).float().expand(
                    layer.num_macs, -1, -1) for layer in self.layers]).to(self.device)
            chi = first.csa_params.sigmoid_chi
            self.shape = PaddedCMs(
                num_cms=torch.cat([torch.full((layer.num_macs,), float(layer.num_cms),
                                              dtype=torch.float64)
                                   for layer in self.layers]).to(self.device),
                chi_k=torch.cat([torch.full((layer.num_macs,), chi * layer.num_neurons)
                                 for layer in self.layers]).to(self.device))

    def _padded_rule(self) -> tuple[HebbianRule, list[int]]:
        """The wavefront's own store: every layer's rows, cells padded to Q_max×K_max."""
        offsets, total = [], 0
        for layer in self.layers:
            offsets.append(total)
            total += layer.rule.rows
        rule = HebbianRule(1, total - 1, self.cells, device=self.device)
        return rule, offsets

    def _copy_in(self) -> None:
        """Layers' weights → the padded store, unless it already holds these versions."""
        versions = [layer.rule.version for layer in self.layers]
        if self.synced == versions:
            return
        store = self.rule.store.view(-1, self.num_cms, self.num_neurons)
        lo = 0
        for layer in self.layers:
            rows = layer.rule.rows
            store[lo:lo + rows, :layer.num_cms, :layer.num_neurons] = layer.rule.store.view(
                rows, layer.num_cms, layer.num_neurons)
            lo += rows

    def _copy_out(self) -> None:
        """The padded store → each layer's weights, counts and freeze latch (θ_sat = 1)."""
        store = self.rule.store.view(-1, self.num_cms, self.num_neurons)
        lo = 0
        for layer in self.layers:
            rule, rows = layer.rule, layer.rule.rows
            rule.store.view(rows, layer.num_cms, layer.num_neurons).copy_(
                store[lo:lo + rows, :layer.num_cms, :layer.num_neurons])
            count_nonzero_rows(rule.store, rule.counts)
            rule.counts[PAD_ROW] = 0
            rule.frozen_store.copy_(rule.counts >= rule.freeze_at)
            rule.frozen_store[PAD_ROW] = True
            rule.version += 1
            lo += rows
        self.synced = [layer.rule.version for layer in self.layers]

    def learn(self, pixels_on: torch.Tensor, activity: list[tuple[torch.Tensor, torch.Tensor]],
              uniforms: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Learn F frames (pixels_on F×P); per layer the winners F×M×Q and G F×M (raw)."""
        frames = pixels_on.shape[0]
        depth = len(self.layers)
        ticks = frames + depth - 1
        dev, g_all, q = self.device, self.num_macs, self.num_cms
        n_safe = torch.ones(ticks, g_all, device=dev)
        uniform = torch.zeros(ticks, g_all, q, device=dev)
        per_tick = torch.zeros(ticks, dtype=torch.long, device=dev)
        for ell, ((a, n), u) in enumerate(zip(activity, uniforms, strict=True)):
            lo, hi = self.mac_offset[ell], self.mac_offset[ell + 1]
            n_safe[ell:ell + frames, lo:hi] = n.clamp(min=1.0)
            uniform[ell:ell + frames, lo:hi, :u.shape[-1]] = u
            per_tick[ell:ell + frames] += (n * a).sum(dim=1).long()
        table = torch.zeros(1 + g_all, q, dtype=torch.long, device=dev)
        flat_table, codes_table = table.view(-1), table[1:]
        cells_out = torch.empty(ticks, g_all, q, dtype=torch.long, device=dev)
        g_out = torch.empty(ticks, g_all, device=dev)
        if self.padded:
            self._copy_in()
        p, store, shape = self.params, self.rule.store, self.shape
        for t0, t1 in self._windows(per_tick):
            base, source, mac, offsets, starts, ends = self._window(
                t0, t1, frames, pixels_on, activity)
            for tick in range(t0, t1):
                s, e = starts[tick - t0], ends[tick - t0]
                rows = base[s:e] + flat_table.index_select(0, source[s:e])
                u = F.embedding_bag(rows, store, offsets[tick - t0], mode="sum")
                v, g = familiarity(u, n_safe[tick], p, shape)
                mu = selection_weights(v, g, p, shape)
                if shape is not None:
                    mu.mul_(self.cell_mask)  # padded cells are never drawn
                winners = sample_winners(mu, uniform[tick])
                cells = winners + self.cm_offset
                if shape is not None:
                    cells = torch.where(self.real_cm, cells, cells[:, :1])
                self._update(rows, cells.index_select(0, mac[s:e]))
                torch.add(winners, self.code_offset, out=codes_table)
                cells_out[tick] = winners
                g_out[tick] = g
        self.rule.version += 1
        if self.padded:
            self._copy_out()
        else:
            if self.latch_after:
                self._set_latch()
            for layer in self.layers:
                layer.rule.version += 1  # their slices of the shared store changed
        cells_per_layer, g_per_layer = [], []
        for ell in range(depth):
            lo, hi = self.mac_offset[ell], self.mac_offset[ell + 1]
            cells_per_layer.append(cells_out[ell:ell + frames, lo:hi, :self.layers[ell].num_cms])
            g_per_layer.append(g_out[ell:ell + frames, lo:hi])
        return cells_per_layer, g_per_layer

    def _windows(self, per_tick: torch.Tensor) -> list[tuple[int, int]]:
        """Consecutive tick ranges of at most about WINDOW_SLOTS live slots each."""
        totals = per_tick.cumsum(0).tolist()
        windows, start, used = [], 0, 0
        for tick, total in enumerate(totals):
            if tick > start and total - used > WINDOW_SLOTS:
                windows.append((start, tick))
                start, used = tick, totals[tick - 1]
        windows.append((start, len(totals)))
        return windows

    def _window(self, t0: int, t1: int, frames: int, pixels_on: torch.Tensor,
                activity: list[tuple[torch.Tensor, torch.Tensor]]):
        """The live slots of ticks [t0, t1), tick after tick, each tick's MACs in order.

        Returns per slot its base row, code-table source and MAC (int32), per tick the bag
        offsets of every MAC (relative to the tick's first slot), and each tick's slot range.
        """
        dev, width = self.device, t1 - t0
        live = torch.zeros(width, self.num_macs, self.fan_in, dtype=torch.bool, device=dev)
        grid = torch.zeros(width, self.num_macs, dtype=torch.int32, device=dev)
        for ell, layer in enumerate(self.layers):
            f0, f1 = max(t0 - ell, 0), min(t1 - ell, frames)
            if f0 >= f1:
                continue
            lower = pixels_on[f0:f1] if ell == 0 else activity[ell - 1][0][f0:f1]
            mask, counts = live_inputs(layer.rf_index, activity[ell][0][f0:f1], lower,
                                       layer.lower_cms)
            lo, hi = self.mac_offset[ell], self.mac_offset[ell + 1]
            ticks = slice(f0 + ell - t0, f1 + ell - t0)
            live[ticks, lo:hi, :layer.fan_in].unflatten(-1, (-1, layer.lower_cms)).copy_(
                mask.unsqueeze(-1))
            grid[ticks, lo:hi] = counts
        # one nonzero puts the slots in (tick, MAC, slot) order: each tick's in one range
        slot = live.view(-1).nonzero().squeeze(1).remainder_(self.num_macs * self.fan_in)
        base, source, mac = (t.index_select(0, slot) for t in self.slot_tables)
        starts = bag_offsets(grid)
        tick_start = starts[:, 0]
        offsets = (starts - tick_start.unsqueeze(1)).long()
        ends = (tick_start + grid.sum(dim=1, dtype=torch.int32)).tolist()
        return base, source, mac, offsets, tick_start.tolist(), ends

    def _update(self, rows: torch.Tensor, cells: torch.Tensor) -> None:
        """W[row, c] ← 1 for every live slot × its MAC's winners (the slots' MACs are active).

        rows: L store rows; cells: L×Q the winner cells of each slot's MAC. A row appears at
        most once per tick (one slot per input cell and MAC).
        """
        rule = self.rule
        flat = rule.store.view(-1)
        if self.latch_after:
            pos = cells.add_((rows * self.cells).unsqueeze(-1)).view(-1)  # cells: a fresh copy
            flat.scatter_(0, pos, rule.ones(pos.numel()))
            return
        # Frozen rows learn nothing: their writes go to the pad row, zeroed afterwards.
        rows = torch.where(rule.frozen_store.index_select(0, rows), PAD_ROW, rows)
        pos = ((rows * self.cells).unsqueeze(-1) + cells).view(-1)
        old = flat.index_select(0, pos).view(cells.shape).sum(dim=-1)
        flat.scatter_(0, pos, rule.ones(pos.numel()))
        rule.counts.index_add_(0, rows, cells.shape[-1] - old)
        rule.store[PAD_ROW].zero_()
        rule.counts[PAD_ROW] = 0
        rule.frozen_store.index_copy_(0, rows, rule.counts.index_select(0, rows) >= rule.freeze_at)
        rule.frozen_store[PAD_ROW] = True

    def _set_latch(self) -> None:
        """Counts and freeze latch from the weights (θ_sat = 1: frozen ⇔ the row is full)."""
        rule = self.rule
        count_nonzero_rows(rule.store, rule.counts)
        rule.frozen_store.copy_(rule.counts >= rule.freeze_at)
        for layer in self.layers:
            layer.rule.frozen_store[PAD_ROW] = True  # every layer's own pad row
