"""Spec §6.13: metric spot checks on tiny networks with hand-checkable values."""

from __future__ import annotations

import pytest
import torch
from conftest import build_model, layer_params, random_images

from sparsey_hydra.metrics.match_accuracy import MatchAccuracy, MatchAccuracyParams
from sparsey_hydra.metrics.num_activations import NumActivations, NumActivationsParams
from sparsey_hydra.metrics.sisc_adherence import SiscAdherence, SiscAdherenceParams
from sparsey_hydra.metrics.training_memory import code_jaccard, input_jaccard


def _two_layer():
    return build_model((8, 8), layer_params(num_macs=9, receptive_field_radius=0.6,
                                            activation_threshold_min=0.1),
                       layer_params(num_macs=4, receptive_field_radius=0.8,
                                    activation_threshold_min=0.1))


def test_13_match_accuracy_is_one_after_training_on_the_item():
    model = _two_layer()
    ma = MatchAccuracy(MatchAccuracyParams())
    item = random_images(1, (8, 8), density=0.3, seed=13)
    model.learn_frame(item, lambda outs: ma.compute(outs, item, "train"))
    outs = model.recognize(item)
    scores = ma.compute(outs, item, "eval")
    for o, s in zip(outs, scores, strict=True):
        assert o.active.any()
        assert torch.equal(s[o.active], torch.ones_like(s[o.active]))


@pytest.mark.parametrize("method", ["cosine", "pearson"])
def test_13_disjoint_inputs_give_sisc_zero(method):
    model = _two_layer()
    sisc = SiscAdherence(SiscAdherenceParams(method=method))
    top = torch.zeros(1, 8, 8)
    top[0, :3, :] = 1
    bottom = torch.zeros(1, 8, 8)
    bottom[0, 5:, :] = 1
    model.learn_frame(top, lambda outs: sisc.compute(outs, top, "train"))
    outs = model.recognize(bottom)
    stored_x, _ = sisc.memory.stacked()
    assert input_jaccard(bottom.reshape(1, -1), stored_x).sum() == 0
    for s in sisc.compute(outs, bottom, "eval"):
        assert torch.equal(s, torch.zeros_like(s))


def test_13_layerwise_sum_of_num_activations_is_active_count():
    model = _two_layer()
    images = random_images(5, (8, 8), density=0.3, seed=4)
    outs = model.recognize(images)
    na = NumActivations(NumActivationsParams()).compute(outs, images, "eval")
    for o, v in zip(outs, na, strict=True):
        assert torch.equal(v.sum(1), o.active.sum(1).float())


def test_code_jaccard_by_hand():
    a = torch.tensor([[[0, 1, 2]], [[-1, -1, -1]]])
    b = torch.tensor([[[0, 1, 3]], [[-1, -1, -1]]])
    j = code_jaccard(a, b, both_empty=1.0)
    assert torch.allclose(j, torch.tensor([[2 / 4], [1.0]]))
    assert torch.equal(code_jaccard(a[1:], b[1:]), torch.zeros(1, 1))
