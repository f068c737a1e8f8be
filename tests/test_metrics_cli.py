"""End to end on real MNIST PNGs: `trainer=all_metrics` stores every metric at MAC resolution
and draws its plots; `+experiment=evaluate` reloads the model by name and leaves it untouched.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cli_helpers import (
    _rows,
    assert_completed,
    error_lines,
    experiments,
    run_sparsey,
    train,
)
from matplotlib.image import imread

pytestmark = pytest.mark.slow

NAME = "mnist1k"
METRICS = ("num_activations", "basis_set_size", "basis_average", "feature_coverage",
           "familiarity", "match_accuracy", "sisc_adherence")
TRAIN_ONLY, EVAL_ONLY = {"basis_set_size", "basis_average"}, {"match_accuracy"}


def drawn(png: Path) -> bool:
    """A PNG with data on it, not just axes and titles (which are black/grey on white).

    Calibrated on a blank figure with title, labels and grid: 0 coloured pixels and 2% grey
    ones. The coloured plots (curves, heatmaps, histograms) need > 0.5% coloured pixels; the
    grey-scale basis-average images need > 10% mid-grey pixels.
    """
    img = imread(png)[..., :3]
    spread = img.max(-1) - img.min(-1)
    if png.stem.startswith("basis_average"):
        grey = (spread < 0.02) & (img.mean(-1) > 0.05) & (img.mean(-1) < 0.9)
        return float(grey.mean()) > 0.10
    return float((spread > 0.15).mean()) > 0.005


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    cwd = tmp_path_factory.mktemp("all_metrics")
    res = train(cwd, "trainer=all_metrics", "dataset=image_folder",
                f"dataset.path={shared_data / 'mnist_1k_png'}", "dataset.limit=150",
                "network=mnist_small", f"model_name={NAME}", "system.wandb.mode=offline",
                quiet=False, run_dir="out")
    res.args = None
    assert_completed(res)
    assert "trainer.progress" not in res.stdout
    return cwd


def test_all_metrics_are_stored_at_mac_resolution(trained: Path) -> None:
    (exp,) = experiments(trained)
    assert exp["status"] == "completed"
    found = {(r["phase"], r["metric"].split("/")[0], "/mac" in r["metric"]): r["n"]
             for r in _rows(trained / "sparsey.db",
                            "SELECT phase, metric, COUNT(value) AS n FROM step_metrics "
                            "WHERE experiment_id = ? GROUP BY phase, metric", (exp["id"],))}
    for name in METRICS:
        for phase in ("train", "eval"):
            defined = not ((phase == "eval" and name in TRAIN_ONLY)
                           or (phase == "train" and name in EVAL_ONLY))
            for mac in (False, True):
                assert ((phase, name, mac) in found) == defined, (phase, name, mac)
    assert found[("train", "feature_coverage_union", False)] > 0
    # all_metrics picks Pearson for SISC; sparseypy's cosine is logged beside it, per MAC
    assert found[("eval", "sisc_adherence_cosine", True)] > 0
    # the summary keeps every metric per layer for both phases (None where undefined)
    summary = exp["summary"]
    assert summary["train"]["frames"] == 120 and summary["eval"]["frames"] == 30
    for name in METRICS:
        per_layer = summary["eval" if name in EVAL_ONLY else "train"]["metrics"][name]
        assert len(per_layer) == 3 and all(v is not None for v in per_layer), name


def test_the_plots_exist_show_data_and_are_logged_to_wandb(trained: Path) -> None:
    plots = trained / "out" / "plots"
    expected = {"growth", "g_histogram",
                *(f"heatmaps_{p}_layer{ell}" for p in ("train", "eval") for ell in (1, 2, 3)),
                *(f"basis_average_layer{ell}" for ell in (1, 2, 3))}
    assert {p.stem for p in plots.glob("*.png")} == expected
    blank = [p.name for p in plots.glob("*.png") if not drawn(p)]
    assert blank == []
    (run,) = (trained / "out" / "wandb").glob("offline-run-*")
    logged = list((run / "files" / "media" / "images").rglob("*.png"))
    assert len(logged) == len(expected)


def test_evaluate_by_name_on_other_images_leaves_the_model_untouched(
        trained: Path, shared_data: Path) -> None:
    model = trained / "models" / NAME / "v1.pt"
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    res = run_sparsey(trained, "+experiment=evaluate", f"model_name={NAME}",
                      "dataset=image_folder", f"dataset.path={shared_data / 'mnist_50_png'}",
                      "trainer=all_metrics", run_dir="eval_out")
    assert_completed(res)
    assert hashlib.sha256(model.read_bytes()).hexdigest() == digest
    assert f"model file unchanged: {model}" in res.stdout
    ev = experiments(trained)[-1]
    assert ev["kind"] == "evaluate" and ev["status"] == "completed"
    assert ev["summary"]["eval"]["frames"] == 50 and ev["summary"]["train"]["frames"] == 0
    # match accuracy uses the training record saved beside the model
    assert all(v is not None for v in ev["summary"]["eval"]["metrics"]["match_accuracy"])
    assert (trained / "eval_out" / "plots" / "heatmaps_eval_layer1.png").is_file()

    for args, message in [
        ((f"model_name={NAME}", "model_version=4"),
         f"error: model_version: model '{NAME}' has no version 4; known versions: 1 "
         "(or leave model_version unset for the latest)"),
        (("model_name=nope",), f"error: model_name: unknown model 'nope'; known models: {NAME}"),
        ((f"model_name={NAME}", "dataset=digits"),
         f"error: dataset: items are (8, 8) after preprocessing but model '{NAME}' v1 takes "
         "(28, 28); add a resize transform (e.g. preprocessing=resize_binarize) or use its "
         "dataset"),
    ]:
        bad = run_sparsey(trained, "+experiment=evaluate", *args, run_dir="bad")
        assert bad.returncode == 2 and error_lines(bad) == [message], bad.explain()
    assert len(experiments(trained)) == 2  # the refused runs recorded nothing


def test_evaluate_without_the_training_record_says_what_is_undefined(trained: Path) -> None:
    record = trained / "models" / NAME / "v1.training.pt"
    hidden = record.with_name("hidden.pt")
    record.rename(hidden)
    try:
        res = run_sparsey(trained, "+experiment=evaluate", f"model_name={NAME}",
                          "dataset.limit=20", "preprocessing=resize_binarize",
                          "trainer.metrics=[{name: match_accuracy}, {name: sisc_adherence}]",
                          run_dir="no_record")
    finally:
        hidden.rename(record)
    assert_completed(res)
    assert [ln for ln in error_lines(res) if ln.startswith("warning:")] == [
        f"warning: no training record beside '{trained / 'models' / NAME / 'v1.pt'}'; "
        "match_accuracy is undefined and sisc_adherence is 0 (its value for an empty "
        "memory), as both compare with the training items"]
    ev = experiments(trained)[-1]["summary"]["eval"]["metrics"]
    assert ev["match_accuracy"] == [None, None, None]
    assert ev["sisc_adherence"] == [0.0, 0.0, 0.0]
