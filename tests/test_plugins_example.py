"""plugins/sparsey-plugin-example: its components, and a pip install/uninstall round trip.

The round trip installs the example into a fresh venv beside the project (offline: the venv
sees this project's site-packages through a .pth file, so torch & co. are not copied), trains
with its layer, metric and transform, reads the metric back from the SQLite store, then
uninstalls it and expects the same command to fail with a one-line error and exit code 2.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from pydantic import ValidationError

from sparsey_hydra import plugins
from sparsey_hydra.config_schema import validate_config
from sparsey_hydra.core.model import SparseyModel
from sparsey_hydra.core.sparsey_layer import LayerOutput, SparseyLayer, SparseyLayerParams
from sparsey_hydra.errors import SparseyConfigError

REPO = Path(__file__).resolve().parents[1]
PLUGIN_SRC = REPO / "plugins" / "sparsey-plugin-example"


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The example's modules imported from its source tree (no install needed)."""
    monkeypatch.syspath_prepend(str(PLUGIN_SRC))
    names = ("wta_layer", "code_entropy", "salt_and_pepper", "bars")
    return SimpleNamespace(**{n: importlib.import_module(f"sparsey_plugin_example.{n}")
                              for n in names})


@pytest.fixture
def registry_with_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, example):
    """The real registry with the example announced by a dist-info entry point, as pip would."""
    info = tmp_path / "sparsey_plugin_example-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: sparsey-plugin-example\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(
        "[sparsey_hydra]\nexample = sparsey_plugin_example.plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins._PM = plugins._REGISTRY = None
    yield plugins.get_registry()
    plugins._PM = plugins._REGISTRY = None


def random_images(n: int, shape=(8, 8), density=0.3, seed=0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *shape, generator=gen) < density).float()


# -- the layer --------------------------------------------------------------------------------


def wta_model(example, seed: int = 0) -> SparseyModel:
    wta = example.wta_layer.WTALayerParams(num_macs=9, num_cms_per_mac=3, num_neurons_per_cm=4,
                                           receptive_field_radius=0.4,
                                           activation_threshold_min=0.0)
    top = SparseyLayerParams(num_macs=1, num_cms_per_mac=4, num_neurons_per_cm=4,
                             receptive_field_radius=2.0, activation_threshold_min=0.0)
    return SparseyModel((8, 8), [lambda g: example.wta_layer.WTALayer(wta, g),
                                 lambda g: SparseyLayer(top, g)], seed=seed)


def test_wta_layer_stacks_under_sparsey_and_recalls_what_it_learned(example) -> None:
    model = wta_model(example)
    images = random_images(6)
    learned = [model.learn_frame(images[i:i + 1])[0] for i in range(6)]
    out = model.recognize(images)[0]
    assert out.codes.shape == (6, 9, 3) and out.y.shape == (6, 9, 12)
    for i, lo in enumerate(learned):
        act = lo.active[0]
        assert torch.equal(out.active[i], act)
        # A stored pattern drives its own winners fully (V = 1) in every active MAC.
        assert torch.all(out.v[i][act].amax(-1) == 1.0)
        assert torch.all(out.y[i][act].sum(-1) == 3) and torch.all(out.y[i][~act] == 0)
        assert torch.all(out.codes[i][~act] == -1) and torch.isnan(out.g[i][~act]).all()
    assert torch.equal(out.codes[-1][learned[-1].active[0]],
                       learned[-1].codes[0][learned[-1].active[0]])


def test_wta_layer_is_seeded_and_its_state_round_trips(example) -> None:
    images = random_images(5, seed=1)
    a, b = wta_model(example, seed=3), wta_model(example, seed=3)
    codes_a = [a.learn_frame(images[i:i + 1])[0].codes for i in range(5)]
    codes_b = [b.learn_frame(images[i:i + 1])[0].codes for i in range(5)]
    assert all(torch.equal(x, y) for x, y in zip(codes_a, codes_b, strict=True))
    before = a.layers[0].weights.clone()
    a.recognize(images)
    assert torch.equal(a.layers[0].weights, before), "recognition must not learn"
    fresh = wta_model(example, seed=99)
    fresh.load_state(a.state())
    assert torch.equal(fresh.layers[0].weights, a.layers[0].weights)
    assert torch.equal(fresh.recognize(images)[0].active, a.recognize(images)[0].active)


# -- the metric -------------------------------------------------------------------------------


def one_mac_output(codes: list[int], k: int = 4) -> LayerOutput:
    """B frames of one MAC with one CM; a code of -1 means the MAC was inactive."""
    c = torch.tensor(codes).view(-1, 1, 1)
    active = c[:, :, 0] >= 0
    y = torch.nn.functional.one_hot(c.clamp(min=0), k).float().view(-1, 1, k) * active[..., None]
    return LayerOutput(x=torch.zeros(len(codes), 1, 1), active=active, codes=c, y=y,
                       v=torch.zeros(len(codes), 1, 1, k), g=torch.zeros(len(codes), 1))


def test_code_entropy_is_the_entropy_of_winner_usage_so_far(example) -> None:
    m = example.code_entropy
    metric = m.CodeEntropy(m.CodeEntropyParams())
    vals = metric.compute([one_mac_output([-1, 2, 2, 0])], torch.zeros(4, 1, 1), "train")[0]
    assert math.isnan(vals[0, 0])  # never active yet
    assert vals[1, 0] == 0.0 and vals[2, 0] == 0.0  # one code so far
    assert vals[3, 0] == pytest.approx(-(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3))
    # Counts persist across steps within a phase, and the phases are kept apart.
    more = metric.compute([one_mac_output([1, 3, 3, 1, 0, 2, 0, 1, 3])], torch.zeros(9, 1, 1),
                          "train")[0]
    assert more[-1, 0] == pytest.approx(2.0)  # 12 frames, 3 of each of 4 cells
    assert metric.compute([one_mac_output([1])], torch.zeros(1, 1, 1), "eval")[0][0, 0] == 0
    norm = m.CodeEntropy(m.CodeEntropyParams(normalize=True))
    assert norm.compute([one_mac_output([0, 1])], torch.zeros(2, 1, 1),
                        "train")[0][1, 0] == pytest.approx(0.5)


# -- the transform ----------------------------------------------------------------------------


def test_salt_and_pepper_is_seeded_binary_and_replaces_the_given_amount(example) -> None:
    sp = example.salt_and_pepper
    image = random_images(1, (100, 100))[0]
    first = sp.build(sp.SaltAndPepperParams(amount=0.1, seed=7))(image)
    again = sp.build(sp.SaltAndPepperParams(amount=0.1, seed=7))(image)
    other = sp.build(sp.SaltAndPepperParams(amount=0.1, seed=8))(image)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    salted = sp.build(sp.SaltAndPepperParams(amount=0.1, salt_ratio=1.0))(torch.zeros(100, 100))
    assert 0.08 < float(salted.mean()) < 0.12
    assert torch.equal(sp.build(sp.SaltAndPepperParams(amount=0.0))(image), image)
    with pytest.raises(ValidationError):
        sp.SaltAndPepperParams(amount=1.5)


# -- the dataset ------------------------------------------------------------------------------


def test_bars_dataset_draws_full_bars_labelled_by_the_first(example) -> None:
    bars = example.bars
    data = bars.load(bars.BarsParams(height=6, width=5, num_items=40, bars_per_image=2))
    assert len(data) == 40 and all(img.shape == (6, 5) for img in data.images)
    for img, label in zip(data.images, data.labels, strict=True):
        assert (img[label] == 1).all() if label < 6 else (img[:, label - 6] == 1).all()
        assert set(img.unique().tolist()) == {0.0, 1.0}
    again = bars.load(bars.BarsParams(height=6, width=5, num_items=40, bars_per_image=2))
    assert again.labels == data.labels
    with pytest.raises(ValidationError, match="bars_per_image must be <= height"):
        bars.BarsParams(height=2, width=2, bars_per_image=5)


# -- registered: validated like the built-ins -------------------------------------------------


def example_tree(**changes) -> dict:
    tree = {
        "task": "train",
        "dataset": {"type": "bars", "num_items": 20},
        "preprocessing": {"transforms": [{"name": "salt_and_pepper", "amount": 0.1}]},
        "network": {"name": "n", "layers": [
            {"name": "example_wta", "num_macs": 4, "num_cms_per_mac": 2,
             "num_neurons_per_cm": 2, "receptive_field_radius": 0.6}]},
        "trainer": {"metrics": [{"name": "code_entropy", "normalize": True}]},
        "system": {},
    }
    tree.update(changes)
    return tree


def test_example_components_are_registered_and_validated(registry_with_example) -> None:
    reg = registry_with_example
    for kind, name in [("layer", "example_wta"), ("metric", "code_entropy"),
                       ("transform", "salt_and_pepper"), ("dataset", "bars")]:
        assert reg.get(kind, name).source == "sparsey-plugin-example 0.1.0"
    assert Path(reg.config_dirs[0], "network", "example_net.yaml").is_file()
    validate_config(example_tree(), reg)
    bad = example_tree(preprocessing={"transforms": [{"name": "salt_and_pepper", "amount": 2}]})
    with pytest.raises(SparseyConfigError, match=r"^preprocessing\.transforms\.0\.amount: "):
        validate_config(bad, reg)
    bad = example_tree(trainer={"metrics": [{"name": "code_entropy", "normalise": True}]})
    with pytest.raises(SparseyConfigError, match=r"^trainer\.metrics\.0\.normalise: Extra"):
        validate_config(bad, reg)
    bad = example_tree(dataset={"type": "bars", "num_items": 0})
    with pytest.raises(SparseyConfigError, match=r"^dataset\.num_items: "):
        validate_config(bad, reg)


# -- pip install / uninstall round trip -------------------------------------------------------


def make_venv(root: Path) -> Path:
    """A fresh venv seeing this project's site-packages (torch, pip, setuptools) via .pth."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=60)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"], check=True,
                             capture_output=True, text=True).stdout.strip()
    project_site = sysconfig.get_paths()["purelib"]
    # addsitedir (not a bare path) so the project's own .pth files, the editable install of
    # sparsey-hydra included, are processed too.
    Path(purelib, "_sparsey_project.pth").write_text(
        f"import site; site.addsitedir({project_site!r})\n")
    # sparsey-hydra is visible, not installed, in this venv: write its console script from
    # its own entry-point metadata, as pip would.
    ep = next(e for e in metadata.distribution("sparsey-hydra").entry_points
              if e.group == "console_scripts" and e.name == "sparsey")
    script = venv / "bin" / "sparsey"
    script.write_text(f"#!{python}\nimport sys\nfrom {ep.module} import {ep.attr}\n"
                      f"sys.exit({ep.attr}())\n")
    script.chmod(0o755)
    return venv


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=180, env=env)


@pytest.mark.slow
def test_example_plugin_pip_install_train_uninstall(tmp_path: Path) -> None:
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.distribution("sparsey-plugin-example")  # must not be in the project venv
    venv = make_venv(tmp_path)
    python, sparsey = str(venv / "bin" / "python"), str(venv / "bin" / "sparsey")
    src = tmp_path / "src"  # build from a copy: the build leaves build/ and *.egg-info behind
    shutil.copytree(PLUGIN_SRC, src, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    pip = [python, "-m", "pip", "--disable-pip-version-check"]
    installed = run([*pip, "install", "--no-deps", "--no-build-isolation", "--no-index",
                     str(src)], tmp_path)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    listing = run([python, "-m", "sparsey_hydra.plugins_cli", "--json"], tmp_path)
    assert listing.returncode == 0, listing.stderr
    data = json.loads(listing.stdout)
    by_name = {c["name"]: c["package"] for cs in data["components"].values() for c in cs}
    for name in ("example_wta", "code_entropy", "salt_and_pepper", "bars"):
        assert by_name[name] == "sparsey-plugin-example 0.1.0"
    assert by_name["sparsey"] == plugins.builtin_label()
    assert data["config_dirs"][0]["options"]["network"] == ["example_net"]
    assert data["config_dirs"][0]["options"]["hpo"] == ["example_sweep"]

    launch = tmp_path / "launch"
    launch.mkdir()
    command = [sparsey, "+experiment=train", "network=example_net",
               "preprocessing.transforms=[{name: binarize, threshold: 0.5}, "
               "{name: salt_and_pepper, amount: 0.05, seed: 3}]",
               "trainer.metrics=[{name: num_activations}, {name: code_entropy}]",
               "system.wandb.mode=disabled", "trainer.progress=false", "dataset.limit=50"]
    trained = run(command, launch)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    with sqlite3.connect(launch / "sparsey.db") as db:
        rows = dict(db.execute("SELECT phase, COUNT(*) FROM step_metrics WHERE metric = "
                               "'code_entropy' AND layer > 0 GROUP BY phase").fetchall())
        model_rows = db.execute("SELECT COUNT(*) FROM step_metrics WHERE metric = "
                                "'code_entropy' AND layer = 0").fetchone()[0]
        config = json.loads(db.execute("SELECT config FROM experiments").fetchone()[0])
    assert rows == {"train": 40 * 2, "eval": 10 * 2}  # 50 digits split 40/10, two layers
    assert model_rows == 40 + 10  # plus one model-level value (layer 0) per frame
    assert config["network"]["layers"][0]["name"] == "example_wta"
    assert config["preprocessing"]["transforms"][1]["name"] == "salt_and_pepper"

    # HPO: the plugin's own study (its network, its metric as the objective) with the trials
    # in joblib worker processes, which build the same registry from the entry points.
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    sweep = run([sparsey, "hpo=example_sweep", "system.wandb.mode=disabled"], sweep_dir)
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    assert "2 complete, 0 failed" in sweep.stdout, sweep.stdout
    with sqlite3.connect(sweep_dir / "sparsey.db") as db:
        per_trial = db.execute(
            "SELECT e.id, COUNT(s.id) FROM experiments e JOIN step_metrics s ON "
            "s.experiment_id = e.id WHERE s.metric = 'code_entropy' AND e.hpo_run_id IS NOT "
            "NULL AND e.status = 'completed' GROUP BY e.id").fetchall()
    assert len(per_trial) == 2 and all(n > 0 for _, n in per_trial), per_trial
    (job_cfg, *_) = sweep_dir.glob("multirun/*/*/0/.hydra/hydra.yaml")
    assert "JoblibLauncher" in job_cfg.read_text()

    removed = run([*pip, "uninstall", "-y", "sparsey-plugin-example"], tmp_path)
    assert removed.returncode == 0, removed.stderr
    failed = run(command, launch)
    assert failed.returncode == 2
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1, failed.stderr
    assert lines[0].startswith("error: network: unknown option 'example_net'; known: ")
    # Without the plugin's config option, its transform is the first unknown name.
    failed = run([c for c in command if c != "network=example_net"], launch)
    assert failed.returncode == 2
    assert failed.stderr.strip() == (
        "error: preprocessing.transforms.1.name: unknown transform 'salt_and_pepper'; known "
        "transforms: binarize, resize, skeletonize (plugins loaded: "
        f"{plugins.builtin_label()}); a transform from a plugin needs that package installed "
        "(see `sparsey-plugins`)")
