"""The behavioural invariants of spec §6 (1–12; 13 lives in test_metric_spot_checks.py)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import build_model, layer_params, random_images

from sparsey_hydra.core.csa import CSAParams, expansivity, selection_weights
from sparsey_hydra.core.geometry import grid_positions, input_geometry, receptive_fields
from sparsey_hydra.core.learning_rule import permanence

Q, K = 10, 8


def csa(**kw) -> CSAParams:
    return layer_params(**kw).csa()


# 1. Shapes and sparsity -------------------------------------------------------------------
def test_1_shapes_and_sparsity():
    model = build_model((8, 8), layer_params(num_macs=9, receptive_field_radius=0.6,
                                             activation_threshold_min=0.2,
                                             activation_threshold_max=0.8))
    images = random_images(32, (8, 8), density=0.35)
    for learning in (True, False):
        (out,) = model.forward(images, learning=learning)
        assert out.y.shape == (32, 9, Q * K)
        blocks = out.y.reshape(32, 9, Q, K).sum(-1)
        assert torch.equal(blocks[out.active], torch.ones_like(blocks[out.active]))
        assert out.y[~out.active].sum() == 0
        assert out.active.any() and (~out.active).any()
        assert out.v.min() >= 0 and out.v.max() <= 1
        g = out.g[out.active]
        assert g.min() >= 0 and g.max() <= 1
        assert torch.isnan(out.g[~out.active]).all()
    model.learn_batch(images)
    (out,) = model.forward(images, learning=False)
    assert out.v.max() <= 1 and out.g[out.active].max() <= 1
    gs = torch.linspace(0, 1, 1001)
    eta = expansivity(gs, csa())
    assert (eta >= 1).all() and (eta[1:] >= eta[:-1]).all()
    assert (eta[gs <= 0.1] == 1).all()
    assert math.isclose(float(expansivity(torch.tensor(1.0), csa())), 801.0, rel_tol=1e-6)


# 2. Geometry ------------------------------------------------------------------------------
def test_2_geometry_rf_sizes_and_hex_rows():
    lower = input_geometry(8, 8).positions
    cases = [((9, 3, 3), 0.6, [19, 32, 19, 32, 52, 32, 19, 32, 19]),
             ((1, 1, 1), 0.25, [12]), ((4, 2, 2), 0.5, [13] * 4),
             ((4, 2, 2), math.sqrt(2), [64] * 4)]
    for (m, r, c), radius, expected in cases:
        idx, size = receptive_fields(grid_positions(m, r, c), lower, radius)
        assert size.tolist() == expected
        for row, s in zip(idx.tolist(), size.tolist(), strict=True):
            assert row[:s] == sorted(row[:s]) and all(j == 64 for j in row[s:])
    hexpos = grid_positions(9, 3, 3, "hex")
    assert torch.allclose(hexpos[3:6, 1], torch.tensor([0.25, 0.75, 1.25], dtype=torch.float64))
    assert torch.allclose(hexpos[0:3, 1], torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))


# 3. Gate ----------------------------------------------------------------------------------
def test_3_gate_band_and_blank_input():
    model = build_model((8, 8), layer_params(receptive_field_radius=0.25,
                                             activation_threshold_min=0.2,
                                             activation_threshold_max=0.8))
    layer = model.layers[0]
    rf = layer.rf_index[0, : int(layer.rf_size[0])].tolist()
    assert len(rf) == 12
    for n in range(13):
        img = torch.zeros(64)
        img[rf[:n]] = 1
        (out,) = model.forward(img.reshape(1, 8, 8))
        assert bool(out.active[0, 0]) == (3 <= n <= 9), n
    blank = build_model((8, 8), layer_params(num_macs=9, receptive_field_radius=0.6,
                                             activation_threshold_min=0.0))
    (out,) = blank.forward(torch.zeros(1, 8, 8), learning=True)
    assert not out.active.any() and out.y.sum() == 0


# 4. Novel input ---------------------------------------------------------------------------
def test_4_novel_input_is_uniform():
    model = build_model((8, 8), layer_params())
    images = random_images(1, (8, 8), density=0.3).expand(10_000, 8, 8)
    (out,) = model.forward(images, learning=True)
    assert out.active.all()
    assert torch.equal(out.v, torch.zeros_like(out.v)) and (out.g == 0).all()
    p = csa()
    mu = selection_weights(out.v[:1], out.g[:1], p)
    assert torch.equal(mu / mu.sum(-1, keepdim=True), torch.full_like(mu, 1 / 8))
    assert float(expansivity(torch.tensor(0.0), p)) == 1.0
    codes = out.codes[:, 0]  # 10⁴ × Q
    freq = torch.nn.functional.one_hot(codes, K).float().mean(0)  # Q × K
    assert ((freq - 0.125).abs() <= 0.013).all()
    overlap = (codes[0::2] == codes[1::2]).sum(-1).float()
    assert abs(overlap.mean().item() - 1.25) < 0.05
    assert abs(overlap.var().item() - 1.09) < 0.1


# 5. Exact recall --------------------------------------------------------------------------
def test_5_exact_recall_and_learning_mode_repeat_rate():
    model = build_model((8, 8), layer_params())
    a = random_images(1, (8, 8), density=0.3, seed=5)
    (learned,) = model.learn_frame(a)
    (rec,) = model.recognize(a)
    code_cells = torch.zeros(Q, K)
    code_cells[torch.arange(Q), learned.codes[0, 0]] = 1
    assert torch.equal(rec.v[0, 0], code_cells)
    assert float(rec.g[0, 0]) == 1.0
    assert torch.equal(rec.codes, learned.codes)
    mu = selection_weights(rec.v[:, :1], rec.g[:, :1], csa())
    rho = (mu / mu.sum(-1, keepdim=True))[0, 0]
    p_expected = 801 / 808
    assert torch.allclose(rho[code_cells.bool()], torch.full((Q,), p_expected), atol=1e-6)
    (many,) = model.forward(a.expand(20_000, 8, 8), learning=True)
    same = many.codes[:, 0] == learned.codes[0, 0]
    assert abs(same.float().mean().item() - p_expected) < 0.003
    assert abs(same.all(-1).float().mean().item() - p_expected**Q) < 0.01
    mu4 = selection_weights(rec.v[:, :1], rec.g[:, :1], csa(sigmoid_lambda=4.0))
    rho4 = (mu4 / mu4.sum(-1, keepdim=True))[0, 0]
    assert abs(rho4[code_cells.bool()].mean().item() - 0.545) < 0.001


# 6. Similar inputs give similar codes -----------------------------------------------------
def _p_alpha(alpha: float, p: CSAParams) -> float:
    v = torch.zeros(1, 1, 1, 8)
    v[..., 0] = alpha
    mu = selection_weights(v, torch.tensor([[alpha]]), p)[0, 0, 0]
    return float(mu[0] / mu.sum())


def test_6_similar_inputs_give_similar_codes():
    q = 50
    model = build_model((10, 10), layer_params(num_cms_per_mac=q))
    perm = torch.randperm(100, generator=torch.Generator().manual_seed(1))
    a_pix, rest = perm[:20], perm[20:]
    a = torch.zeros(100)
    a[a_pix] = 1
    (learned,) = model.learn_frame(a.reshape(1, 10, 10))
    expected = {0.0: .125, 0.25: .125, 0.5: .919, 0.75: .984, 1.0: .991}
    empirical = []
    for alpha, p_ref in expected.items():
        shared = int(alpha * 20)
        b = torch.zeros(100)
        b[a_pix[:shared]] = 1
        b[rest[: 20 - shared]] = 1
        clone = copy.deepcopy(model)
        (out,) = clone.forward(b.reshape(1, 10, 10).expand(200, 10, 10), learning=True)
        assert torch.allclose(out.g, torch.full_like(out.g, alpha))
        p = _p_alpha(alpha, model.layers[0].csa_params)
        assert abs(p - p_ref) < 0.001
        emp = (out.codes[:, 0] == learned.codes[0, 0]).float().mean().item()
        assert abs(emp - p) < 0.03, (alpha, emp, p)
        empirical.append(p)
    assert all(x <= y for x, y in zip(empirical, empirical[1:], strict=False))
    compat = csa(mu_form="compat", sigmoid_lambda=28.0, sigmoid_phi=5.0, sigmoid_chi=2.5,
                 min_familiarity=0.2, num_cms_per_mac=q)
    assert abs(_p_alpha(0.2, compat) - 0.125) < 1e-3
    assert abs(_p_alpha(0.21, compat) - 0.938) < 1e-3
    for alpha in (0.25, 0.5, 0.75, 1.0):
        assert 0.949 <= _p_alpha(alpha, compat) <= 0.956


# 7. Basis set -----------------------------------------------------------------------------
def test_7_basis_set_counts_distinct_codes_and_eval_changes_nothing():
    from sparsey_hydra.metrics.basis_set_size import BasisSetTracker

    n = 6
    model = build_model((6, 6), layer_params())
    tracker = BasisSetTracker()
    images = torch.zeros(n, 36)
    for i in range(n):
        images[i, i * 6:(i + 1) * 6] = 1
    images = images.reshape(n, 6, 6)
    for i in range(n):
        model.learn_frame(images[i:i + 1], on_forward=lambda outs: tracker.update(outs))
    assert tracker.sizes()[0].tolist() == [n]
    before_w = model.layers[0].weights.clone()
    before = [s.clone() for s in tracker.sizes()]
    model.recognize(images)
    assert torch.equal(model.layers[0].weights, before_w)
    assert all(torch.equal(a, b) for a, b in zip(before, tracker.sizes(), strict=True))
    # |C| ≤ active frames ≤ frames, on a multi-MAC layer with repeats.
    big = build_model((8, 8), layer_params(num_macs=9, receptive_field_radius=0.6,
                                           activation_threshold_min=0.2,
                                           num_neurons_per_cm=2, num_cms_per_mac=2))
    tr = BasisSetTracker()
    active_frames = torch.zeros(9)
    imgs = random_images(40, (8, 8), density=0.3, seed=3)
    def hook(outs):
        tr.update(outs)
        active_frames.add_(outs[0].active[0].float())
    big.learn_batch(imgs, hook)
    sizes = tr.sizes()[0].float()
    assert (sizes <= active_frames).all() and (active_frames <= 40).all()
    assert (sizes <= 4).all()  # K^Q = 4


# 8. Monotone Hebbian ----------------------------------------------------------------------
def test_8_weights_only_increase_and_stay_binary():
    model = build_model((8, 8), layer_params(num_macs=9, receptive_field_radius=0.6,
                                             activation_threshold_min=0.1))
    layer = model.layers[0]
    images = random_images(30, (8, 8), density=0.3, seed=8)
    for i in range(30):
        before = layer.weights.clone()
        (out,) = model.learn_frame(images[i:i + 1])
        after = layer.weights
        assert (after >= before).all()
        new_nonzero = ((after > 0) & (before == 0)).reshape(9, -1).sum(-1)
        assert (new_nonzero <= layer.dense_input(out)[0].sum(-1) * Q * out.active[0]).all()
        assert ((after == 0) | (after == 1)).all()
    assert layer.weights.sum() > 0


# 9. Freezing ------------------------------------------------------------------------------
def test_9_frozen_rows_never_change_and_decay_never_freezes():
    model = build_model((8, 8), layer_params(num_macs=4, receptive_field_radius=0.5,
                                             num_cms_per_mac=4, num_neurons_per_cm=4,
                                             saturation_threshold=0.05,
                                             permanence_steps=20, permanence_convexity=1.0))
    layer = model.layers[0]
    rule = layer.rule
    images = random_images(200, (8, 8), density=0.3, seed=9)
    t = 0

    def step(i: int) -> None:
        before = rule.frozen.clone()
        (out,) = model.learn_frame(images[i:i + 1])
        touched = layer.dense_input(out)[0].bool() & out.active[0][:, None]
        newly = rule.frozen & ~before
        assert not (newly & ~touched).any()  # only an increase can freeze a row
        assert (rule.frozen | ~before).all()  # the latch never opens

    while not rule.frozen.any():
        step(t)
        t += 1
    frozen = rule.frozen.clone()
    snapshot = rule.weights[frozen].clone()
    assert (snapshot > 0).any()
    for i in range(t, t + 100):
        step(i % 200)
    assert torch.equal(rule.weights[frozen], snapshot)


# 10. Permanence curve ---------------------------------------------------------------------
def test_10_permanence_curve():
    for steps, conv, expected in (
        (5, 0.5, [1, .9778, .9429, .8800, .7333, 0]),
        (10, 5.0, [1, .9643, .9231, .8750, .8182, .7500, .6667, .5625, .4286, .2500, 0]),
    ):
        model = build_model((4, 4), layer_params(permanence_steps=steps,
                                                 permanence_convexity=conv))
        img = torch.zeros(1, 4, 4)
        img[0, 0, :2] = 1
        (out,) = model.learn_frame(img)
        w = model.layers[0].weights
        learned = w > 0
        seen = [float(w[learned].unique())]
        for _ in range(steps + 3):
            model.learn_frame(torch.zeros(1, 4, 4))
            vals = w[learned].unique()
            assert vals.numel() == 1
            seen.append(float(vals))
        for got, want in zip(seen, expected, strict=False):
            assert abs(got - want) < 5e-5
        exact = permanence(torch.arange(steps + 1), steps, conv)
        assert torch.allclose(torch.tensor(seen[: steps + 1]), exact, atol=1e-5)
        assert seen[steps] == 0.0 and all(s == 0.0 for s in seen[steps:])
        assert torch.equal(permanence(torch.tensor([0, 3]), 7, 0.0), torch.tensor([1.0, 1.0]))


# 11. Determinism --------------------------------------------------------------------------
def _train(seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    model = build_model((8, 8), layer_params(num_macs=9, receptive_field_radius=0.6,
                                             activation_threshold_min=0.1),
                        layer_params(num_macs=4, receptive_field_radius=0.8,
                                     activation_threshold_min=0.1), seed=seed)
    codes = []
    model.learn_batch(random_images(20, (8, 8), seed=11),
                      lambda outs: codes.append(torch.cat([o.codes for o in outs], 1)))
    return codes, [layer.weights.clone() for layer in model.layers]


def test_11_determinism():
    c1, w1 = _train(7)
    c2, w2 = _train(7)
    c3, _ = _train(8)
    assert all(torch.equal(a, b) for a, b in zip(c1, c2, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(w1, w2, strict=True))
    assert not torch.equal(c1[0], c3[0])


# 12. Hierarchy ----------------------------------------------------------------------------
def test_12_upper_input_is_lower_output():
    lower = layer_params(num_macs=4, receptive_field_radius=0.5, activation_threshold_min=0.2,
                         activation_threshold_max=0.8, num_cms_per_mac=3, num_neurons_per_cm=2)
    upper = layer_params(num_macs=1, receptive_field_radius=2.0, activation_threshold_min=0.0,
                         num_cms_per_mac=2, num_neurons_per_cm=2)
    model = build_model((8, 8), lower, upper)
    img = torch.zeros(1, 8, 8)
    img[0, :3, :3] = 1  # only the top-left MAC's band is met
    outs = model.forward(img, learning=True)
    a1 = outs[0].active[0]
    assert a1.any() and not a1.all()
    x_upper = model.layers[1].dense_input(outs[1])
    assert torch.equal(x_upper[0, 0], outs[0].y[0].reshape(-1))
    n = x_upper[0, 0].sum()
    assert n == 3 * a1.sum()  # each active lower MAC contributes Q_lower ones
    f = n / (model.layers[1].rf_size[0] * 3)
    assert math.isclose(float(f), float(a1.float().mean()))


# Recognition ties (§3.8, §8, B4) -----------------------------------------------------------
def test_recognition_breaks_ties_uniformly_at_random():
    from sparsey_hydra.core.csa import argmax_winners

    # Novel input on zero weights: V ≡ 0, every cell of every CM is tied.
    model = build_model((8, 8), layer_params())
    a = random_images(1, (8, 8), density=0.3, seed=13)
    (out,) = model.recognize(a.expand(2000, 8, 8))
    freq = torch.bincount(out.codes.reshape(-1), minlength=K).float() / out.codes.numel()
    assert (freq - 1 / K).abs().max() < 4 * math.sqrt((1 / K) * (1 - 1 / K) / 20_000)
    assert out.codes.unique(dim=0).shape[0] > 1  # not one code for every frame (B4)
    # Partial ties: only the tied maxima can win, each about equally often.
    v = torch.tensor([0.2, 0.9, 0.1, 0.9, 0.9]).expand(30_000, 5)
    u = torch.rand(30_000, generator=torch.Generator().manual_seed(1))
    counts = torch.bincount(argmax_winners(v, u), minlength=5)
    assert counts[[0, 2]].sum() == 0
    assert ((counts[[1, 3, 4]].float() / 30_000 - 1 / 3).abs() < 0.015).all()
    assert torch.equal(argmax_winners(torch.tensor([[0.1, 0.7, 0.3]]), torch.tensor([0.99])),
                       torch.tensor([1]))


@pytest.mark.parametrize("k", [1, 2, 5, 16, 32])
def test_frames_last_tie_break_picks_the_same_cell(k):
    """argmax_one_hot (V held …×K×frames, ranks by matmul) picks the very cell argmax_winners
    picks from the same uniform, under heavy ties, and gives inactive MACs no code."""
    from sparsey_hydra.core.csa import argmax_one_hot, argmax_winners

    gen = torch.Generator().manual_seed(k)
    v = torch.randint(0, 3, (7, 5, k, 300), generator=gen).float() / 2  # many ties
    u = torch.rand(7, 5, 300, generator=gen)
    active = torch.rand(7, 1, 300, generator=gen) < 0.8
    winners, code = argmax_one_hot(v, u, active)
    expected = argmax_winners(v.permute(0, 1, 3, 2), u)
    assert torch.equal(winners.long()[active.expand_as(u)], expected[active.expand_as(u)])
    hot = torch.nn.functional.one_hot(expected, k).permute(0, 1, 3, 2).float()
    assert torch.equal(code.float(), hot * active.unsqueeze(2))
