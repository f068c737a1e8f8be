"""How metrics are fed and logged: before the weight update, at the configured resolution,
undefined values kept out of averages, per-step printing, the end-of-run summary."""

from __future__ import annotations

import io
import math

import pytest
import torch
from conftest import build_model, layer_params, random_images
from rich.console import Console

from sparsey_hydra.metrics.base import MetricParams
from sparsey_hydra.metrics.basis_set_size import BasisSetSize
from sparsey_hydra.metrics.familiarity import Familiarity
from sparsey_hydra.metrics.feature_coverage import FeatureCoverage
from sparsey_hydra.metrics.match_accuracy import MatchAccuracy, MatchAccuracyParams
from sparsey_hydra.metrics.num_activations import NumActivations, NumActivationsParams
from sparsey_hydra.summary import print_summary
from sparsey_hydra.training.trainer import Trainer

# Layer 1: 4 MACs on 8×8, layer 2: 1 MAC over them; a gate band that passes sparse digits.
MACS = (4, 1)


def two_layer_model(seed: int = 0):
    return build_model((8, 8), layer_params(num_macs=4, receptive_field_radius=0.5,
                                            activation_threshold_min=0.05),
                       layer_params(num_macs=1, receptive_field_radius=2.0,
                                    activation_threshold_min=0.1), seed=seed)


def metrics(**reductions: str) -> list:
    def p(cls, name: str, **kw):
        return cls(name=name, reduction=reductions.get(name, "layerwise_mean"), **kw)

    return [NumActivations(p(NumActivationsParams, "num_activations")),
            Familiarity(p(MetricParams, "familiarity")),
            BasisSetSize(p(MetricParams, "basis_set_size")),
            MatchAccuracy(p(MatchAccuracyParams, "match_accuracy"))]


def trainer_for(model, ms, **kw) -> tuple[Trainer, list, io.StringIO]:
    blocks: list = []
    text = io.StringIO()
    t = Trainer(model, ms, progress=False, block_sinks=[blocks.append],
                console=Console(file=text, width=400), **kw)
    return t, blocks, text


def test_metrics_see_each_frame_before_its_weight_update() -> None:
    """One item learned twice: layer 1's G = 0 on the first frame (zero weights), 1 on the
    second. A metric that ran after the update would see G = 1 both times. (Layer 2's input
    is layer 1's learning-mode code, which need not repeat exactly, so only its first G is
    pinned.)"""
    model = two_layer_model()
    item = random_images(1, (8, 8), density=0.3, seed=5)
    steps: list = []
    t = Trainer(model, metrics(), progress=False,
                sinks=[lambda phase, step, values: steps.append(values["familiarity"])],
                console=Console(file=io.StringIO()))
    t.train(torch.cat([item, item]))
    assert steps[0] == [0.0, 0.0] and steps[1][0] == 1.0


def test_resolution_levels_each_include_the_coarser_ones() -> None:
    model = two_layer_model()
    frames = random_images(6, (8, 8), density=0.3, seed=1)
    t, blocks, _ = trainer_for(model, metrics(basis_set_size="highest_layer"))
    t.train(frames)
    rows = {res: [r for b in blocks for r in b.rows(res)] for res in ("model", "layer", "mac")}

    def count(res: str, name: str, layer: int | None = None, mac: bool = False) -> int:
        return sum(1 for r in rows[res] if r[3].split("/")[0] == name
                   and ("/mac" in r[3]) == mac and (layer is None or r[2] == layer))

    for res in rows:
        assert count(res, "num_activations", 0) == 6  # one model value per frame, layer 0
        assert count(res, "match_accuracy") == 0  # undefined in training: no rows at all
    assert count("model", "num_activations") == 6
    assert count("layer", "num_activations", 1) == count("layer", "num_activations", 2) == 6
    assert count("mac", "num_activations", 1, mac=True) == 6 * MACS[0]
    assert count("mac", "num_activations", 2, mac=True) == 6 * MACS[1]
    assert set(rows["model"]) < set(rows["layer"]) < set(rows["mac"])
    # highest_layer: only the top layer's values are logged
    assert count("mac", "basis_set_size", 1) == 0 and count("mac", "basis_set_size", 2) == 6
    # the MAC rows hold the metric's values: layer-1 MAC m's activity in frame s
    outs = two_layer_model().recognize(frames)  # the gate depends on the input alone
    got = {(r[1], r[3]): r[4] for r in rows["mac"] if r[2] == 1 and r[3].startswith("num_")}
    for s in range(6):
        for m in range(MACS[0]):
            assert got[(s, f"num_activations/mac{m}")] == float(outs[0].active[s, m])
    # W&B: one dict per frame; MAC keys only at MAC resolution
    layer_logs = [d for b in blocks for d in b.logs("layer")]
    mac_logs = [d for b in blocks for d in b.logs("mac")]
    assert "train/num_activations/layer1" in layer_logs[0]
    assert not any("/mac" in k for d in layer_logs for k in d)
    assert "train/num_activations/layer1/mac3" in mac_logs[0]
    assert set(layer_logs[0]) < set(mac_logs[0])


def test_save_false_keeps_a_metric_out_of_the_store_rows() -> None:
    model = two_layer_model()
    ms = [NumActivations(NumActivationsParams(save=False)),
          Familiarity(MetricParams(name="familiarity"))]
    t, blocks, _ = trainer_for(model, ms)
    t.train(random_images(3, (8, 8), seed=2))
    names = {r[3].split("/")[0] for b in blocks for r in b.rows("mac")}
    assert names == {"familiarity"}
    assert t.summary()["train"]["metrics"]["num_activations"]  # still summarised


def test_undefined_values_are_left_out_of_averages() -> None:
    model = two_layer_model()
    frames = random_images(8, (8, 8), density=0.3, seed=3)
    t, blocks, _ = trainer_for(model, metrics())
    t.train(frames)
    t.evaluate(frames)
    s = t.summary()
    # G of inactive MACs is NaN per MAC and excluded: the layer mean equals the mean of G
    # over the active MAC-frames only
    outs = two_layer_model().recognize(frames)
    act = outs[0].active
    g_rows = [r for b in blocks if b.phase == "train" for r in b.rows("mac")
              if r[3].startswith("familiarity/mac") and r[2] == 1]
    assert sum(r[4] is None for r in g_rows) == int((~act).sum())
    assert all(r[4] is not None for r in g_rows if act[r[1], int(r[3][15:])])
    per_frame = [sum(r[4] for r in g_rows if r[1] == f and r[4] is not None)
                 / max(1, int(act[f].sum())) for f in range(8) if act[f].any()]
    assert s["train"]["metrics"]["familiarity"][0] == pytest.approx(
        sum(per_frame) / len(per_frame))
    # training-only and eval-only metrics are None (not 0) in the other phase
    assert s["eval"]["metrics"].get("basis_set_size") is None
    assert s["train"]["metrics"].get("match_accuracy") is None
    assert all(0 < v <= 1 for v in s["eval"]["metrics"]["match_accuracy"])


def test_print_metric_values_prints_each_step_and_is_off_by_default() -> None:
    frames = random_images(3, (8, 8), density=0.3, seed=4)
    quiet, _, quiet_text = trainer_for(two_layer_model(), metrics())
    quiet.train(frames)
    assert quiet_text.getvalue() == ""
    loud, _, text = trainer_for(two_layer_model(), metrics(), print_metric_values=True)
    loud.train(frames)
    loud.evaluate(frames[:2])
    lines = text.getvalue().splitlines()
    assert [ln.split("]")[0] for ln in lines] == ["[train 0", "[train 1", "[train 2",
                                                 "[eval 0", "[eval 1"]
    assert "familiarity=[0.0, 0.0]" in lines[0] and "match_accuracy" not in lines[0]
    assert "match_accuracy=[" in lines[3] and "basis_set_size" not in lines[3]


def test_end_of_run_summary_shows_every_configured_metric_per_layer() -> None:
    model = two_layer_model()
    ms = [*metrics(), FeatureCoverage(MetricParams(name="feature_coverage"))]
    t, _, _ = trainer_for(model, ms)
    t.evaluate(random_images(4, (8, 8), seed=6))  # an evaluate-only run: nothing learned
    s = t.summary()
    text = io.StringIO()
    print_summary(s, console=Console(file=text, width=200))
    table = text.getvalue()
    for name in ("num_activations", "familiarity", "basis_set_size", "match_accuracy",
                 "feature_coverage", "feature_coverage_union"):
        assert sum(line.split("│")[1].strip() == name for line in table.splitlines()
                   if "│" in line) == 2, name  # one row per phase
    assert s["layers"][0]["basis_set_mean"] is None  # not a fake 0 when nothing was learned
    assert all(math.isnan(v) is False for v in s["eval"]["metrics"]["num_activations"])


def test_summary_gives_each_metric_its_best_value_comparison() -> None:
    frames = random_images(5, (8, 8), density=0.3, seed=8)
    t, blocks, _ = trainer_for(two_layer_model(), metrics())
    t.train(frames)
    best = t.summary()["train"]["best"]
    assert best["num_activations"]["best_value"] == "min_by_layerwise_mean"
    assert best["familiarity"]["best_value"] == "max_by_layerwise_mean"
    assert "match_accuracy" not in best  # undefined in training
    # avg(X) by hand from the stored MAC rows: per layer the mean over frames and MACs
    rows = [r for b in blocks for r in b.rows("mac") if r[3].startswith("num_activations/")]
    per_layer = [[r[4] for r in rows if r[2] == ell] for ell in (1, 2)]
    expected = sum(sum(v) / len(v) for v in per_layer) / 2
    assert best["num_activations"]["avg_by_layerwise_mean"] == pytest.approx(expected)
