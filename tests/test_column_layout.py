"""W in blocks per group of MACs (recognition frames last, issue 7)."""

from __future__ import annotations

import pytest
import torch
from conftest import build_model, layer_params

import sparsey_hydra.core.column_layout as column_layout
from sparsey_hydra.core.column_layout import column_weights, group_macs


@pytest.mark.parametrize("gather_cost", [0, column_layout.GATHER_COST, 10**9])
def test_blocks_times_gathered_inputs_equal_the_dense_matmul(monkeypatch, gather_cost):
    """Every grouping (one MAC per group up to all of them) gives each MAC exactly its RF's
    weights: the batched matmul equals the dense layout's matmul."""
    monkeypatch.setattr(column_layout, "GATHER_COST", gather_cost)
    model = build_model((12, 12), layer_params(num_macs=9, receptive_field_radius=0.4,
                                               num_cms_per_mac=2, num_neurons_per_cm=3),
                        layer_params(num_macs=7, receptive_field_radius=0.5,
                                     num_cms_per_mac=3, num_neurons_per_cm=2))
    gen = torch.Generator().manual_seed(gather_cost % 97)
    for layer in model.layers:
        layer.rule.store.copy_((torch.rand(layer.rule.store.shape, generator=gen) < 0.4)
                               .to(layer.rule.store.dtype))
        layer.rule.store[0] = 0
        layer.rule.version += 1
        cells = layer.num_cms * layer.num_neurons
        groups = group_macs(layer.rf_index, layer.lower_macs, layer.lower_cells, cells)
        if gather_cost == 0:
            assert groups.size == 1 and groups.sources is not None
        if gather_cost == 10**9:
            assert groups.sources is None  # the plain dense layout
        lower = (torch.rand(layer.lower_macs * layer.lower_cells, 5, generator=gen) < 0.5)
        dense = layer.dense_weights().float().t() @ lower.float()
        blocks = column_weights(groups, layer.weights, layer.rf_index, layer.lower_cells,
                                cells)
        if groups.sources is None:
            u = blocks[0].float() @ lower.float()
        else:
            x = lower.float().view(layer.lower_macs, -1)[groups.sources.view(-1)]
            u = torch.bmm(blocks.float(), x.view(groups.groups, -1, 5)).view(-1, 5)
        assert torch.equal(u[:layer.num_macs * cells], dense)
        # each RF entry reads its own lower MAC through its slot
        if groups.sources is not None:
            grp = torch.arange(layer.num_macs) // groups.size
            real = layer.rf_index < layer.lower_macs
            read = groups.sources[grp.unsqueeze(1).expand_as(real)[real], groups.slot[real]]
            assert torch.equal(read, layer.rf_index[real])


def test_gather_buffer_is_reused_and_grows():
    from sparsey_hydra.core.column_layout import GatherBuffer

    buffer, like = GatherBuffer(), torch.zeros(1, dtype=torch.bfloat16)
    first = buffer.take(100, like)
    assert first.numel() == 100 and first.dtype == torch.bfloat16
    assert buffer.take(60, like).data_ptr() == first.data_ptr()  # no new allocation
    bigger = buffer.take(500, like)
    assert bigger.numel() == 500 and buffer.take(100, like).data_ptr() == bigger.data_ptr()
    assert buffer.take(10, torch.zeros(1)).dtype == torch.float32
