"""The fast learning loops reproduce frame-by-frame learning exactly (issue 7).

Three ways to learn the same frames must give bit-identical codes, G, weights and freeze
latches: `learn_frame` one frame at a time (the reference), the per-layer loop, and the
wavefront that steps all layers at once; and no chunking of the frames may change anything.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import build_model, layer_params
from PIL import Image

from sparsey_hydra.core.wavefront import fusable
from sparsey_hydra.training.trainer import Trainer


def mnist(shared_data, n: int) -> torch.Tensor:
    files = sorted((shared_data / "mnist_1k_png").glob("*/*.png"))[:: 1000 // n][:n]
    arr = np.stack([np.asarray(Image.open(f).convert("L"), dtype=np.float32) / 255
                    for f in files])
    return torch.from_numpy((arr >= 0.5).astype(np.float32))


def three_layers(**kw):
    """A small 28×28 hierarchy that exercises partial activity and freezing."""
    common = dict(num_cms_per_mac=4, num_neurons_per_cm=4, **kw)
    return (layer_params(num_macs=16, receptive_field_radius=0.3,
                         activation_threshold_min=0.05, **common),
            layer_params(num_macs=9, receptive_field_radius=0.5,
                         activation_threshold_min=0.3, **common),
            layer_params(num_macs=1, receptive_field_radius=1.5,
                         activation_threshold_min=0.1, **common))


def reference(params, images, seed=3):
    model = build_model((28, 28), *params, seed=seed)
    codes, g = [], []
    for i in range(images.shape[0]):
        outs = model.learn_frame(images[i:i + 1])
        codes.append([o.codes for o in outs])
        g.append([o.g for o in outs])
    per_layer = [(torch.cat([c[ell] for c in codes]), torch.cat([x[ell] for x in g]))
                 for ell in range(len(params))]
    return model, per_layer


def chunked(params, images, chunks, seed=3, wavefront=True, compact=True):
    model = build_model((28, 28), *params, seed=seed)
    if not wavefront:
        model.wavefront = None
    for rule in [layer.rule for layer in model.layers] + (
            [model.wavefront.rule] if model.wavefront else []):
        rule.compact = compact  # compact=False: the GPU's masked path, run on the CPU
    outs, lo = [], 0
    for size in chunks:
        outs.append(model.learn_frames(images[lo:lo + size]))
        lo += size
    assert lo == images.shape[0]
    per_layer = [(torch.cat([o[ell].codes for o in outs]), torch.cat([o[ell].g for o in outs]))
                 for ell in range(len(params))]
    return model, per_layer


def assert_same(a, b):
    (ma, la), (mb, lb) = a, b
    for (ca, ga), (cb, gb) in zip(la, lb, strict=True):
        assert torch.equal(ca, cb)
        assert torch.equal(torch.nan_to_num(ga, nan=-1.0), torch.nan_to_num(gb, nan=-1.0))
    for xa, xb in zip(ma.layers, mb.layers, strict=True):
        assert torch.equal(xa.weights, xb.weights)
        assert torch.equal(xa.rule.frozen, xb.rule.frozen)
        assert torch.equal(xa.rule.counts, xb.rule.counts)
    assert ma.frames_learned == mb.frames_learned


@pytest.fixture(params=["write all", "skip writes that change nothing"])
def writes(request, monkeypatch):
    """Both ways the wavefront writes weights (θ_sat = 1): every live row × winner, or only
    the (MAC, CM) pairs whose winner is not yet 1 on every live input."""
    import sparsey_hydra.core.wavefront as wf

    monkeypatch.setattr(wf, "SKIP_WRITES", 2**40 if request.param == "write all" else 0)
    return request.param


@pytest.mark.parametrize("saturation", [1.0, 0.3])
def test_wavefront_and_layer_loop_equal_frame_by_frame(shared_data, saturation, writes):
    params = three_layers(saturation_threshold=saturation)
    images = mnist(shared_data, 60)
    ref = reference(params, images)
    assert fusable(ref[0].layers)
    assert any(o.any() for o in (layer.rule.frozen for layer in ref[0].layers)) == (
        saturation < 1.0)
    assert_same(ref, chunked(params, images, [60]))
    assert_same(ref, chunked(params, images, [1, 7, 52]))
    assert_same(ref, chunked(params, images, [60], wavefront=False))
    assert_same(ref, chunked(params, images, [13, 47], wavefront=False))
    assert_same(ref, chunked(params, images, [60], compact=False))
    assert_same(ref, chunked(params, images, [60], wavefront=False, compact=False))


def mixed_layers(**kw):
    """Layers of different Q and K (as mnist_small and the demo network)."""
    return (layer_params(num_macs=16, num_cms_per_mac=2, num_neurons_per_cm=3,
                         receptive_field_radius=0.3, activation_threshold_min=0.05, **kw),
            layer_params(num_macs=9, num_cms_per_mac=5, num_neurons_per_cm=5,
                         receptive_field_radius=0.5, activation_threshold_min=0.3, **kw),
            layer_params(num_macs=1, num_cms_per_mac=3, num_neurons_per_cm=8,
                         receptive_field_radius=1.5, activation_threshold_min=0.1, **kw))


def test_layers_of_different_q_and_k_fuse_with_padded_cms(shared_data, writes):
    params = mixed_layers()
    images = mnist(shared_data, 60)
    ref = reference(params, images)
    assert fusable(ref[0].layers)
    fused = chunked(params, images, [1, 25, 34])
    assert fused[0].wavefront.padded
    assert_same(ref, fused)
    assert_same(ref, chunked(params, images, [60], wavefront=False))
    # learning after a frame-by-frame step picks up the layers' weights again
    model, _ = fused
    model.learn_frame(images[:1])
    model.learn_frames(images[1:9])
    again = build_model((28, 28), *params, seed=3)
    again.learn_frames(images)
    again.learn_frame(images[:1])
    for i in range(1, 9):
        again.learn_frame(images[i:i + 1])
    for a, b in zip(model.layers, again.layers, strict=True):
        assert torch.equal(a.weights, b.weights)
    # with θ_sat < 1 the freeze latch is observable: such layers learn in the per-layer loop
    assert not fusable(build_model((28, 28), *mixed_layers(saturation_threshold=0.5)).layers)


def test_layer_loop_with_decay_equals_frame_by_frame(shared_data):
    params = three_layers(permanence_steps=15, permanence_convexity=2.0,
                          saturation_threshold=0.4)
    images = mnist(shared_data, 40)
    ref = reference(params, images)
    assert not fusable(ref[0].layers)  # decay ticks per layer: the per-layer loop runs
    assert_same(ref, chunked(params, images, [40]))
    assert_same(ref, chunked(params, images, [5, 35]))
    assert_same(ref, chunked(params, images, [40], compact=False))


def test_trainer_batch_1_and_64_give_identical_weights_and_codes(shared_data):
    images = mnist(shared_data, 100)
    results = []
    for batch in (1, 64):
        model = build_model((28, 28), *three_layers(), seed=11)
        seen = []
        trainer = Trainer(model, [], batch_size=batch, progress=False)
        trainer.recorder.observe = lambda phase, outs, imgs, seen=seen: seen.append(
            [o.codes for o in outs])
        trainer.train(images)
        codes = [torch.cat([s[ell] for s in seen]) for ell in range(3)]
        results.append((codes, [layer.weights.clone() for layer in model.layers]))
    (c1, w1), (c64, w64) = results
    assert all(torch.equal(a, b) for a, b in zip(c1, c64, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(w1, w64, strict=True))
    assert c1[0].shape[0] == 100 and (c1[0] >= 0).any()


def test_recognition_codes_do_not_depend_on_the_batch(shared_data):
    images = mnist(shared_data, 48)
    model = build_model((28, 28), *three_layers(), seed=5)
    model.learn_frames(images[:24])
    state = model.generator.get_state()
    whole = model.recognize(images)
    model.generator.set_state(state)
    parts = [model.recognize(images[i:i + 5]) for i in range(0, 48, 5)]
    for ell in range(3):
        assert torch.equal(whole[ell].codes, torch.cat([p[ell].codes for p in parts]))


def test_dense_and_gathered_recognition_agree(shared_data, monkeypatch):
    import sparsey_hydra.core.model as model_module
    import sparsey_hydra.core.sparsey_layer as sl

    monkeypatch.setattr(model_module, "COLUMN_MIN_FRAMES", 10**9)  # the frame-first paths
    images = mnist(shared_data, 40)
    model = build_model((28, 28), *three_layers(), seed=2)
    model.learn_frames(images[:30])
    state = model.generator.get_state()
    monkeypatch.setattr(sl, "DENSE_MAX_WEIGHTS", 0)
    assert not any(layer.uses_dense_recognition() for layer in model.layers)
    gathered = model.recognize(images)
    monkeypatch.setattr(sl, "DENSE_MAX_WEIGHTS", 2**40)
    monkeypatch.setattr(sl, "DENSE_ADVANTAGE", 10**9)
    assert all(layer.uses_dense_recognition() for layer in model.layers)
    model.generator.set_state(state)
    dense = model.recognize(images)
    for a, b in zip(gathered, dense, strict=True):
        assert torch.equal(a.codes, b.codes) and torch.equal(a.v, b.v)
    model.learn_frames(images[30:])  # the cached dense layout follows new learning
    model.generator.set_state(state)
    after = model.recognize(images)
    monkeypatch.setattr(sl, "DENSE_MAX_WEIGHTS", 0)
    model.generator.set_state(state)
    again = model.recognize(images)
    for a, b in zip(after, again, strict=True):
        assert torch.equal(a.codes, b.codes)


@pytest.mark.parametrize("make", [three_layers, mixed_layers])
def test_float16_store_learns_and_recognises_exactly_as_float32(shared_data, monkeypatch,
                                                                 make):
    """A binary store (no decay) is kept in float16: u is a sum of at most J ≤ 2^11 ones, so
    it is exact, and codes, G, weights, V and the saved file match a float32 store bit for
    bit; a decaying store (fractional weights) stays float32."""
    import sparsey_hydra.core.sparsey_layer as sl
    from sparsey_hydra.core.learning_rule import HALF_EXACT_SUM, store_dtype

    images = mnist(shared_data, 60)
    half = chunked(make(), images, [17, 43])
    assert {layer.rule.dtype for layer in half[0].layers} == {torch.float16}
    assert half[0].wavefront.rule.store.dtype == torch.float16
    monkeypatch.setattr(sl, "store_dtype", lambda *a: torch.float32)
    single = chunked(make(), images, [17, 43])
    assert single[0].layers[0].rule.store.dtype == torch.float32
    assert_same(half, single)
    for model in (half[0], single[0]):
        model.generator.manual_seed(9)
    seen = [model.recognize(images) for model in (half[0], single[0])]
    for a, b in zip(*seen, strict=True):
        assert torch.equal(a.codes, b.codes) and torch.equal(a.v, b.v)
    saved = half[0].state()["layers"][0]["weights"]
    assert saved.dtype == torch.float32 and torch.equal(saved, single[0].layers[0].weights)
    assert store_dtype(None, HALF_EXACT_SUM) == torch.float16
    assert store_dtype(None, HALF_EXACT_SUM + 1) == torch.float32  # u could round
    assert store_dtype(10, 4) == torch.float32  # decay: fractional weights
    decaying = build_model((28, 28), *three_layers(permanence_steps=15))
    assert decaying.layers[0].rule.store.dtype == torch.float32


@pytest.mark.parametrize("gather_cost", [None, 0, 10**9])
@pytest.mark.parametrize("make", [three_layers, mixed_layers])
def test_frames_last_recognition_equals_the_gathers(shared_data, monkeypatch, make,
                                                    gather_cost):
    """Recognition frames last (bfloat16 matmuls over W's blocks per group of MACs, the
    tie-break as ranks by matmul) gives the live-input gathers' active, codes, G, V and Y bit
    for bit — for the cost model's grouping, one MAC per group and the plain dense layout —
    in one block or several, and follows the weights as they learn."""
    import sparsey_hydra.core.column_layout as column_layout
    import sparsey_hydra.core.model as model_module

    if gather_cost is not None:
        monkeypatch.setattr(column_layout, "GATHER_COST", gather_cost)
    images = mnist(shared_data, 90)
    model = build_model((28, 28), *make(), seed=4)
    model.learn_frames(images[:50])
    assert all(layer.uses_column_recognition() for layer in model.layers)

    def both(frames):
        state = model.generator.get_state()
        monkeypatch.setattr(model_module, "COLUMN_MIN_FRAMES", 10**9)
        gathered = model.recognize(frames)
        model.generator.set_state(state)
        monkeypatch.setattr(model_module, "COLUMN_MIN_FRAMES", 1)
        return gathered, model.recognize(frames)

    for elements in (model_module.RECOGNITION_ELEMENTS, 1):  # one block; blocks of 128
        monkeypatch.setattr(model_module, "RECOGNITION_ELEMENTS", elements)
        monkeypatch.setattr(model_module, "RECOGNITION_BLOCK", (7, 4096))
        gathered, columns = both(images)
        for a, b in zip(gathered, columns, strict=True):
            assert torch.equal(a.active, b.active) and torch.equal(a.codes, b.codes)
            assert b.codes.dtype == torch.long and (b.codes[b.active] >= 0).all()
            assert torch.equal(a.g.nan_to_num(-1.0), b.g.nan_to_num(-1.0))
            assert torch.equal(a.v, b.v) and torch.equal(a.y, b.y)
            assert b.y.dtype == torch.float32 and b.num_neurons == a.num_neurons
            assert torch.equal(b.v.contiguous().view(-1), a.v.reshape(-1))
        assert any(bool((b.codes > 0).any()) for b in columns)  # not all cell 0
    model.learn_frames(images[50:])  # the cached layouts follow new learning
    gathered, columns = both(images)
    for a, b in zip(gathered, columns, strict=True):
        assert torch.equal(a.codes, b.codes) and torch.equal(a.v, b.v)


def test_frames_last_recognition_only_where_exact(shared_data):
    """The bfloat16 matmul is used only where u stays exact: a binary store, J ≤ 2^8."""
    wide = build_model((28, 28), layer_params(num_macs=4, receptive_field_radius=0.9,
                                              num_cms_per_mac=2, num_neurons_per_cm=2))
    assert wide.layers[0].fan_in > 256 and not wide.layers[0].uses_column_recognition()
    decaying = build_model((28, 28), *three_layers(permanence_steps=15))
    assert not any(layer.uses_column_recognition() for layer in decaying.layers)
    images = mnist(shared_data, 40)
    wide.learn_frames(images)
    out = wide.recognize(images)[0]  # the gathers, frames first
    assert out.v.is_contiguous() and out.codes.shape == (40, 4, 2)
