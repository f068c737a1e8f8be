"""The Hydra configs are found from a source checkout and from an installed wheel (issue 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cli_helpers import REPO, sparsey_env

PROBE = "import sparsey_hydra, sparsey_hydra.cli as c; print(sparsey_hydra.__file__); " \
        "print(c.config_dir())"


def test_source_checkout_uses_conf_at_the_top_level() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout.splitlines()
    assert Path(out[0]).resolve().is_relative_to(REPO)
    assert Path(out[1]).resolve() == REPO / "conf"


def test_installed_wheel_ships_and_finds_its_configs(tmp_path: Path) -> None:
    wheels, site, launch = tmp_path / "wheels", tmp_path / "site", tmp_path / "launch"
    launch.mkdir()
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o",
                    str(wheels), str(REPO)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = wheels.glob("sparsey_hydra-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(site), str(wheel)], check=True, capture_output=True)
    # The wheel's copy comes first on the path; the dependencies come from this venv.
    env = sparsey_env(PYTHONPATH=str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, cwd=launch, env=env).stdout.splitlines()
    assert Path(out[0]).resolve().is_relative_to(site.resolve())
    conf = Path(out[1]).resolve()
    assert conf == (site / "sparsey_hydra" / "conf").resolve()
    assert (conf / "network" / "mnist_medium.yaml").is_file()
    res = subprocess.run([sys.executable, "-m", "sparsey_hydra.cli", "+experiment=train",
                          "dataset.limit=30", "system.wandb.mode=disabled",
                          "trainer.progress=false"], capture_output=True, text=True,
                         cwd=launch, env=env, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (launch / "sparsey.db").is_file()
    assert list((launch / "models").glob("*/v1.pt"))
