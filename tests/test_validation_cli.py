"""Bad input is one line naming the key or file and what is allowed, exit 2, nothing stored.

Issue 2, item 7: each case runs the real `sparsey` command in a fresh launch dir and checks the
exit code, that stderr is exactly one `error: …` line with no traceback, and that no store
file (and so no experiment row) was written.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cli_helpers import error_lines, experiments, train


def assert_refused(res, *needles: str) -> None:
    assert res.returncode == 2, res.explain()
    lines = error_lines(res)
    assert len(lines) == 1 and lines[0].startswith("error: "), res.explain()
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in lines[0], res.explain()
    assert not (res.cwd / "sparsey.db").exists() or experiments(res.cwd) == []


@pytest.mark.parametrize(("overrides", "needles"), [
    (["network.layers.0.num_cms_per_mac=0"],
     ["network.layers.0.num_cms_per_mac", "greater than or equal to 1"]),
    (["network.layers.0.activation_threshold_min=0.9",
      "network.layers.0.activation_threshold_max=0.5"],
     ["network.layers.0", "activation_threshold_min (0.9) must be <= activation_threshold_max"]),
    (["network.layers.1.sigmoid_phi=1.5"], ["network.layers.1", "sigmoid_phi", "[0, 1]"]),
    (["network.layers.0.sigmod_phi=0.5"], ["network.layers.0.sigmod_phi", "Extra inputs"]),
    (["preprocessing.transforms=[{name: sharpen}]"],
     ["preprocessing.transforms.0.name", "unknown transform 'sharpen'", "binarize"]),
    (["preprocessing=none"], ["binarize"]),
], ids=["num_cms_0", "threshold_order", "phi_range", "misspelt_key", "unknown_transform",
        "non_binary"])
def test_bad_values_are_refused(tmp_path: Path, overrides, needles) -> None:
    assert_refused(train(tmp_path, *overrides), *needles)


def test_missing_dataset_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    res = train(tmp_path / "run", "dataset=image_folder", f"dataset.path={missing}")
    assert_refused(res, "dataset.path", str(missing))


def test_empty_image_folder(tmp_path: Path) -> None:
    (tmp_path / "empty" / "0").mkdir(parents=True)
    res = train(tmp_path / "run", "dataset=image_folder", f"dataset.path={tmp_path / 'empty'}")
    assert_refused(res, "dataset.path")


def test_raw_file_of_the_wrong_size(tmp_path: Path, shared_data: Path) -> None:
    data = tmp_path / "raw"
    shutil.copytree(shared_data / "mnist_16x24_raw" / "3", data / "3")
    bad = sorted((data / "3").glob("*.raw"))[0]
    bad.write_bytes(bad.read_bytes()[:-5])
    res = train(tmp_path / "run", "dataset=sparsey_raw", f"dataset.path={data}")
    assert_refused(res, bad.name, "16")
