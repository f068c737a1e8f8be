"""The fused learning loop: every layer of a network steps in one set of tensor operations.

Layer ℓ's frame t needs layer ℓ−1's code for frame t and its own weights after frame t−1, and
nothing else. So at tick τ layer ℓ can learn frame τ − ℓ while layer ℓ+1 learns frame τ − ℓ − 1:
a wavefront. All MACs of all layers then form one "super layer" whose lower layer is the
input image plus every layer's codes from the previous tick, and one frame costs about as many
operator calls as one layer did. Each layer still sees exactly what the frame-by-frame order
gives it (same weights, same lower codes, same dealt random draws), so codes and weights are
bit-identical to `SparseyModel.learn_frame` called frame after frame.

It applies when the layers share their CSA parameters (hence Q and K) and freeze threshold and
have no permanence decay (the decay clock would tick on idle layers); otherwise the model runs
the per-layer loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sparsey_hydra.core.csa import familiarity, sample_winners, selection_weights
from sparsey_hydra.core.learning_rule import HebbianRule
from sparsey_hydra.core.sparsey_layer import SparseyLayer

#: the code table's "no input here" value; int32 tables halve the per-tick index traffic
NONE32 = -(1 << 30)


def fusable(layers: Sequence[object]) -> bool:
    """Whether the wavefront reproduces these layers' frame-by-frame learning exactly."""
    if len(layers) < 2 or not all(isinstance(layer, SparseyLayer) for layer in layers):
        return False
    first = layers[0]
    return all(layer.csa_params == first.csa_params
               and layer.rule.age is None
               and layer.rule.freeze_at == first.rule.freeze_at
               and layer.device == first.device for layer in layers)


class Wavefront:
    """Index tables and a shared row store that let all layers learn in one step per tick."""

    def __init__(self, layers: Sequence[SparseyLayer], num_pixels: int) -> None:
        self.layers = list(layers)
        first = self.layers[0]
        self.device = first.device
        self.params = first.csa_params
        self.num_cms = first.num_cms
        self.num_pixels = num_pixels
        self.mac_offset = [0]
        for layer in self.layers:
            self.mac_offset.append(self.mac_offset[-1] + layer.num_macs)
        self.num_macs = self.mac_offset[-1]
        # One row store for all layers; each layer's rule keeps working on its own slice.
        self.rule, row_offset = HebbianRule.combined([layer.rule for layer in self.layers])
        fan_in = max(layer.fan_in for layer in self.layers)
        self.pad_row = num_pixels + self.num_macs  # the code table's always-INACTIVE row
        base = torch.zeros(self.num_macs, fan_in, dtype=torch.long)
        source = torch.full((self.num_macs, fan_in), self.pad_row * self.num_cms,
                            dtype=torch.long)
        for ell, layer in enumerate(self.layers):
            lo, hi = self.mac_offset[ell], self.mac_offset[ell + 1]
            base[lo:hi, :layer.fan_in] = layer.base.cpu() + row_offset[ell]
            rf = layer.rf_index.cpu()
            if ell == 0:
                rows = torch.where(rf == layer.lower_macs, self.pad_row, rf)
            else:
                below = num_pixels + self.mac_offset[ell - 1]
                rows = torch.where(rf == layer.lower_macs, self.pad_row, below + rf)
            cm = torch.arange(layer.lower_cms)
            source[lo:hi, :layer.fan_in] = (rows.unsqueeze(-1) * self.num_cms + cm).reshape(
                layer.num_macs, layer.fan_in)
        if int(base.max()) >= -NONE32:
            raise ValueError("network too large for the fused loop's int32 row tables")
        self.base = base.to(self.device, torch.int32)
        self.source = source.reshape(-1).to(self.device, torch.int32)
        self.fan_in = fan_in
        self.cm_offset = first.cm_offset

    def learn(self, pixels: torch.Tensor, activity: list[tuple[torch.Tensor, torch.Tensor]],
              uniforms: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Learn F frames; returns per layer the winner cells F×M×Q and G F×M (raw)."""
        frames = pixels.shape[0]
        depth = len(self.layers)
        ticks = frames + depth - 1
        dev, g_all, q = self.device, self.num_macs, self.num_cms
        active = torch.zeros(ticks, g_all, dtype=torch.bool, device=dev)
        n_safe = torch.ones(ticks, g_all, device=dev)
        uniform = torch.zeros(ticks, g_all, q, device=dev)
        for ell, ((a, n), u) in enumerate(zip(activity, uniforms, strict=True)):
            lo, hi = self.mac_offset[ell], self.mac_offset[ell + 1]
            active[ell:ell + frames, lo:hi] = a
            n_safe[ell:ell + frames, lo:hi] = n.clamp(min=1.0)
            uniform[ell:ell + frames, lo:hi] = u
        inactive = ~active.unsqueeze(-1)
        pixels = torch.where(pixels >= 0, 0, NONE32).to(torch.int32)
        table = torch.full((self.pad_row + 1, q), NONE32, dtype=torch.int32, device=dev)
        flat_table = table.view(-1)
        pixel_column = table[:self.num_pixels, 0]
        codes_column = table[self.num_pixels:self.pad_row]
        none = torch.tensor(NONE32, dtype=torch.int32, device=dev)
        cells_out = torch.empty(ticks, g_all, q, dtype=torch.long, device=dev)
        g_out = torch.empty(ticks, g_all, device=dev)
        p, rule, base, source = self.params, self.rule, self.base, self.source
        for tick in range(ticks):
            if tick < frames:
                pixel_column.copy_(pixels[tick])
            elif tick == frames:
                pixel_column.fill_(NONE32)
            rows = (base + flat_table.index_select(0, source).view(g_all, -1)).clamp_(min=0)
            u = torch.nn.functional.embedding_bag(rows, rule.store, mode="sum")
            v, g = familiarity(u, n_safe[tick], p)
            cells = sample_winners(selection_weights(v, g, p), uniform[tick]) + self.cm_offset
            rule.update(rows, inactive[tick], cells)
            torch.where(inactive[tick], none, cells.to(torch.int32), out=codes_column)
            cells_out[tick] = cells
            g_out[tick] = g
        for layer in self.layers:
            layer.rule.version += 1  # their slices of the shared store changed
        cells_per_layer, g_per_layer = [], []
        for ell in range(depth):
            lo, hi = self.mac_offset[ell], self.mac_offset[ell + 1]
            cells_per_layer.append(cells_out[ell:ell + frames, lo:hi])
            g_per_layer.append(g_out[ell:ell + frames, lo:hi])
        return cells_per_layer, g_per_layer
