"""End to end: the real `sparsey` command on real images, from a fresh launch directory.

Each test launches the installed console script in a subprocess from its own tmp dir and
checks what a user would find there: the printed summary, `sparsey.db` (read with sqlite3),
the model files, Hydra's output dir and the offline W&B run. Small `dataset.limit`s keep each
run to a few seconds; nothing here measures time.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from cli_helpers import (
    assert_completed,
    experiments,
    files_containing,
    models,
    only_experiment,
    run_sparsey,
    sparsey_env,
    step_metrics,
    train,
)

pytestmark = pytest.mark.slow

SECRET = "fake-secret-123"


def _model_file(path: str) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_menu_without_experiment(tmp_path: Path) -> None:
    res = run_sparsey(tmp_path, quiet=False, run_dir=None)
    assert res.returncode == 0, res.explain()
    assert "Traceback" not in res.output
    assert "+experiment=train" in res.stdout
    for group, option in [("dataset", "image_folder"), ("network", "mnist_medium"),
                          ("preprocessing", "binarize"), ("+experiment", "train")]:
        line = next((ln for ln in res.stdout.splitlines() if ln.strip().startswith(group)), "")
        assert option in line, f"menu line for {group!r} lacks {option!r}:\n{res.stdout}"
    assert not (tmp_path / "sparsey.db").exists()  # printing the menu stores nothing


def test_main_job_on_digits_with_offline_wandb(tmp_path: Path) -> None:
    """The README's main job (fewer items): summary, one experiment, one model, W&B offline."""
    env = sparsey_env(WANDB_API_KEY=SECRET, MY_DB_PASSWORD=SECRET,
                      WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"),
                      WANDB_CACHE_DIR=str(tmp_path / "wandb-cache"),
                      WANDB_DATA_DIR=str(tmp_path / "wandb-data"))
    res = train(tmp_path, "dataset.limit=100", "trainer.progress=false",
                quiet=False, run_dir=None, env=env)
    assert_completed(res)

    # the summary table, one row per layer of mnist_small
    assert "Sparsey run summary" in res.stdout
    for head in ("layer", "MACs", "mean G", "basis set"):
        assert head in res.stdout, res.stdout
    assert "train: 80 frames" in res.stdout and "eval: 20 frames" in res.stdout

    exp = only_experiment(tmp_path)
    assert exp["status"] == "completed" and exp["kind"] == "train"
    assert exp["ended_at"] is not None and exp["error"] is None
    assert [row["layer"] for row in exp["summary"]["layers"]] == [1, 2, 3]
    assert [row["num_macs"] for row in exp["summary"]["layers"]] == [36, 9, 1]
    assert exp["summary"]["train"]["frames"] == 80 and exp["summary"]["eval"]["frames"] == 20
    assert step_metrics(tmp_path, exp["id"]), "no per-step metrics stored"

    (model,) = models(tmp_path)
    assert (model["name"], model["version"]) == ("mnist_small-digits", 1)
    path = Path(model["path"])
    assert path == (tmp_path / "models" / "mnist_small-digits" / "v1.pt").resolve()
    assert path.is_file() and _model_file(path)["state"]["input_shape"] == [8, 8]
    assert model["experiment_id"] == exp["id"]

    # Hydra's output dir: outputs/DATE/TIME with the composed config and the offline W&B run
    (out,) = [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()]
    composed = yaml.safe_load((out / ".hydra" / "config.yaml").read_text())
    assert composed["task"] == "train" and composed["dataset"]["limit"] == 100
    assert composed["system"]["wandb"]["mode"] == "offline"
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list(out.rglob("*"))
    assert any(p.suffix == ".wandb" and p.stat().st_size > 0 for p in runs[0].rglob("*"))
    assert str(runs[0]) in res.stdout

    # the planted secrets are nowhere: config, logs, W&B files, store, model files
    assert files_containing(tmp_path, SECRET.encode()) == []
    assert SECRET not in res.output


def test_image_folder_of_real_pngs(tmp_path: Path, shared_data: Path) -> None:
    path = shared_data / "mnist_1k_png"
    res = train(tmp_path, "dataset=image_folder", f"dataset.path={path}", "network=mnist_small",
                "dataset.limit=150")
    assert_completed(res)
    exp = only_experiment(tmp_path)
    assert exp["status"] == "completed"
    assert exp["config"]["dataset"]["path"] == str(path)
    assert exp["summary"]["train"]["frames"] == 120 and exp["summary"]["eval"]["frames"] == 30
    (model,) = models(tmp_path)
    assert model["name"] == "mnist_small-image_folder"
    assert _model_file(model["path"])["state"]["input_shape"] == [28, 28]


def test_sparsey_raw_files(tmp_path: Path, shared_data: Path) -> None:
    res = train(tmp_path, "dataset=sparsey_raw",
                f"dataset.path={shared_data / 'mnist_16x24_raw'}", "dataset.limit=150")
    assert_completed(res)
    exp = only_experiment(tmp_path)
    assert exp["status"] == "completed" and exp["summary"]["train"]["frames"] == 120
    (model,) = models(tmp_path)
    # 16 wide × 24 tall: the input grid is H×W = 24×16
    assert _model_file(model["path"])["state"]["input_shape"] == [24, 16]


def test_layer_override_takes_effect(tmp_path: Path) -> None:
    res = train(tmp_path, "network.layers.0.num_macs=16", "dataset.limit=60")
    assert_completed(res)
    exp = only_experiment(tmp_path)
    assert exp["config"]["network"]["layers"][0]["num_macs"] == 16
    assert exp["config"]["network"]["layers"][1]["num_macs"] == 9  # the rest is untouched
    # the built model really has 16 MACs in layer 1: the summary counts them
    assert [row["num_macs"] for row in exp["summary"]["layers"]] == [16, 9, 1]
    (model,) = models(tmp_path)
    assert _model_file(model["path"])["config"]["network"]["layers"][0]["num_macs"] == 16


def test_network_mnist_medium_runs(tmp_path: Path) -> None:
    res = train(tmp_path, "network=mnist_medium", "dataset.limit=40")
    assert_completed(res)
    exp = only_experiment(tmp_path)
    assert exp["status"] == "completed"
    assert [row["num_macs"] for row in exp["summary"]["layers"]] == [100, 36, 9, 1]
    (model,) = models(tmp_path)
    assert model["name"] == "mnist_medium-digits"


def test_same_seed_same_metrics_and_runs_share_the_store(tmp_path: Path) -> None:
    """Three runs launched from one directory: one store, three versions of one model."""
    for i, seed in enumerate((3, 3, 4)):
        assert_completed(train(tmp_path, f"seed={seed}", "dataset.limit=60", run_dir=f"out{i}"))
    rows = experiments(tmp_path)
    assert [(r["seed"], r["status"]) for r in rows] == [(3, "completed")] * 2 + [(4, "completed")]
    first, again, other = (step_metrics(tmp_path, r["id"]) for r in rows)
    assert len(first) > 100
    assert first == again  # bit-identical values, not merely close
    assert first != other
    assert {(r[0], r[1], r[2], r[3]) for r in first} == {(r[0], r[1], r[2], r[3]) for r in other}
    assert [m["version"] for m in models(tmp_path)] == [1, 2, 3]
    a, b, c = (_model_file(m["path"])["state"]["layers"] for m in models(tmp_path))
    for la, lb in zip(a, b, strict=True):
        assert all(torch.equal(la[k], lb[k]) for k in la)
    assert any(not torch.equal(la[k], lc[k]) for la, lc in zip(a, c, strict=True) for k in la
               if la[k].shape == lc[k].shape)


def test_run_that_raises_after_training_is_marked_failed(tmp_path: Path) -> None:
    """A plain file where the model folder should be: saving the trained model raises."""
    (tmp_path / "models").write_text("not a folder")
    res = train(tmp_path, "dataset.limit=40")
    assert res.returncode != 0, res.explain()
    exp = only_experiment(tmp_path)
    assert exp["status"] == "failed", exp
    assert exp["ended_at"] is not None and exp["error"], exp
    assert models(tmp_path) == []


BOOM_PLUGIN = textwrap.dedent('''
    """A metric that raises on the 6th training frame, registered like any plugin."""
    import sys

    from sparsey_hydra.hookspecs import hookimpl
    from sparsey_hydra.metrics.base import Metric, MetricParams
    from sparsey_hydra.plugins import Component, plugin_manager


    class Boom(Metric):
        frames = 0

        def compute(self, outs, images, phase):
            Boom.frames += images.shape[0]  # a block of consecutive frames per call
            if Boom.frames > 5:
                raise RuntimeError("boom at frame 6")
            return [o.active.float() for o in outs]


    @hookimpl
    def sparsey_register_metrics():
        return [Component("boom", Boom, MetricParams, "raises mid-training")]


    pm, _ = plugin_manager()
    pm.register(sys.modules[__name__], name="boom-test-plugin")
''')


def test_run_that_raises_mid_training_is_marked_failed(tmp_path: Path) -> None:
    """A metric that raises during learning, after the store is opened (real CLI, real store).

    No shipped setting fails during learning (bad input is refused before the store is
    opened), so a tiny plugin adds a metric that raises, then the real `sparsey` main runs.
    """
    (tmp_path / "boom_plugin.py").write_text(BOOM_PLUGIN)
    script = ("import sys, boom_plugin; from sparsey_hydra.cli import main; "
              "sys.argv = ['sparsey', *sys.argv[1:]]; main()")
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", script, "+experiment=train", "dataset.limit=40",
         "trainer.metrics=[{name: num_activations}, {name: boom}]",
         "system.wandb.mode=disabled", "trainer.progress=false", "hydra.run.dir=out"],
        cwd=tmp_path, env=sparsey_env(PYTHONPATH=str(tmp_path)), capture_output=True,
        text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "boom at frame 6" in proc.stderr
    exp = only_experiment(tmp_path)
    assert exp["status"] == "failed", exp
    assert "boom at frame 6" in exp["error"]
    assert exp["ended_at"] is not None and exp["summary"] is None
    assert models(tmp_path) == []
    assert not (tmp_path / "models").exists()
