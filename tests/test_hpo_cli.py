"""End to end: `sparsey -m hpo=…` studies on the embedded digits, as a user runs them.

Each test launches the installed console script from its own tmp dir and reads what the
sweep left: the Optuna study in `sparsey.db` (through Optuna), the `experiments` and
`hpo_runs` rows (through sqlite3), the best-network YAML and the plots. `dataset.limit`
keeps every trial to about a second; nothing here measures time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from cli_helpers import (
    HANG_LIMIT_S,
    QUIET,
    _rows,
    assert_completed,
    command,
    error_lines,
    experiments,
    run_sparsey,
    sparsey_env,
)
from optuna.trial import TrialState

pytestmark = pytest.mark.slow

FAST = ("dataset.limit=80", "hpo.plots=false")
# Fixes the basis_set_growth dimensions a test does not search (a fixed key leaves the space).
PINNED = {"network.layers.0.num_macs=4", "network.layers.0.num_cms_per_mac=4",
          "network.layers.0.num_neurons_per_cm=4", "network.layers.0.receptive_field_radius=0.5",
          "++network.layers.0.sigmoid_lambda=28.0", "++network.layers.0.sigmoid_phi=0.5",
          "++network.layers.0.sigmoid_chi=100.0", "++network.layers.0.min_familiarity=0.1"}


def pinned(*searched: str) -> list[str]:
    """PINNED less the keys in `searched`, plus `searched`."""
    keys = {o.split("=")[0].lstrip("+") for o in searched}
    return [o for o in sorted(PINNED) if o.split("=")[0].lstrip("+") not in keys] + list(searched)


def study(cwd: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{cwd / 'sparsey.db'}")


def states(s: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in s.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def hpo(cwd: Path, *overrides: str, sweep: str = "sweep") -> object:
    return run_sparsey(cwd, "-m", *overrides, f"hydra.sweep.dir={sweep}", run_dir=None)


def test_basis_set_growth_six_trials_and_the_best_yaml_trains_again(tmp_path: Path) -> None:
    """Must show: `sparsey -m hpo=basis_set_growth hpo.n_trials=6` prints the best config;
    the YAML it saved trains again with +experiment=train and gives the same value."""
    res = hpo(tmp_path, "hpo=basis_set_growth", "hpo.n_trials=6", "dataset.limit=80")
    assert_completed(res)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("[hpo] trial ")]
    assert [ln.split()[2] for ln in lines] == [f"{i}/6" for i in range(1, 7)], res.stdout
    assert all("best " in ln for ln in lines)
    s = study(tmp_path, "basis_set_growth")
    assert states(s) == {"COMPLETE": 6}
    best = s.best_trial
    assert f"[hpo] best value {best.value:.6g} (minimize) at trial {best.number}" in res.stdout
    assert "L0.receptive_field_radius=" in res.stdout.split("[hpo] best params:")[1]
    model = f"basis_set_growth-trial{best.number}"  # each trial's model has its own name
    assert best.user_attrs["model"] == {"name": model, "version": 1}
    assert f"[hpo] best trial's model: {model} v1" in res.stdout

    out = tmp_path / "hpo_results" / "basis_set_growth"
    net_yaml = out / "network" / "basis_set_growth_best.yaml"
    net = yaml.safe_load(net_yaml.read_text())
    layer = net["layers"][0]
    for key, value in best.params.items():
        field = key.removeprefix("network.layers.0.")
        assert layer[field] == pytest.approx(value), field
    assert {p.name for p in (out / "plots").glob("*.png")} >= {
        "optimization_history.png", "param_importances.png", "parallel_coordinate.png"}
    summary = yaml.safe_load((out / "best.yaml").read_text())
    assert summary["best"]["trial"] == best.number and summary["complete"] == 6

    # every trial is an experiments row linked to this sweep's hpo_runs row
    runs = _rows(tmp_path / "sparsey.db", "SELECT id, status, name FROM hpo_runs")
    assert [(r["status"], r["name"]) for r in runs] == [("completed", "basis_set_growth")]
    rows = experiments(tmp_path)
    assert len(rows) == 6 and {r["hpo_run_id"] for r in rows} == {runs[0]["id"]}
    assert sorted(r["config"]["hpo"]["trial"]["number"] for r in rows) == list(range(6))
    assert best.user_attrs["experiment_id"] in {r["id"] for r in rows}

    again = run_sparsey(tmp_path, f"--config-dir={out}", "+experiment=train",
                        "network=basis_set_growth_best", "dataset.limit=80", run_dir="retrain")
    assert_completed(again)
    last = experiments(tmp_path)[-1]
    assert last["hpo_run_id"] is None and last["status"] == "completed"
    assert last["config"]["network"]["layers"][0] == {**layer}
    basis = last["summary"]["train"]["metrics"]["basis_set_size"][0]
    acts = last["summary"]["train"]["metrics"]["num_activations"][0]
    assert basis / acts == pytest.approx(best.value)  # the objective, reproduced


def _finished(db: Path, name: str) -> tuple[int, bool]:
    """(COMPLETE trials, whether one is RUNNING), read while the sweep writes."""
    if not db.exists() or not _rows(db, "SELECT name FROM sqlite_master WHERE name='trials'") \
            or not _rows(db, "SELECT name FROM sqlite_master WHERE name='alembic_version'") \
            or not _rows(db, "SELECT * FROM alembic_version"):
        return 0, False  # polling must not create Optuna's tables while the sweep does
    try:
        s = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    except Exception:  # the study is not created yet
        return 0, False
    trials = s.get_trials(deepcopy=False)
    return (sum(t.state == TrialState.COMPLETE for t in trials),
            any(t.state == TrialState.RUNNING for t in trials))


def test_sigkill_then_the_same_command_resumes_without_repeats_or_losses(tmp_path: Path
                                                                         ) -> None:
    """Must show: killed with SIGKILL after some trials, the same command resumes and ends
    with exactly the requested number of finished trials, none repeated, none lost."""
    args = [*command(), "-m", "hpo=basis_set_growth", "hpo.n_trials=5", "hpo.study_name=kill",
            *FAST, *QUIET, "hydra.sweep.dir=sweep"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=sparsey_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    db = tmp_path / "sparsey.db"
    deadline = time.monotonic() + HANG_LIMIT_S
    while time.monotonic() < deadline and proc.poll() is None:
        done, running = _finished(db, "kill")
        if done >= 2 and running:
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"the sweep ended before it could be killed:\n{proc.stdout.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    before = study(tmp_path, "kill").get_trials(deepcopy=False)
    done_before = {t.number for t in before if t.state == TrialState.COMPLETE}
    killed = [t for t in before if t.state == TrialState.RUNNING]
    assert len(killed) == 1 and len(done_before) >= 2

    res = run_sparsey(tmp_path, *args[len(command()):], quiet=False, run_dir=None)
    assert_completed(res)
    assert f"trial(s) [{killed[0].number}] lost their worker" in res.stdout, res.stdout
    ran_now = [ln for ln in res.stdout.splitlines() if ln.startswith("[hpo] trial ")
               and " #" in ln]
    assert len(ran_now) == 5 - len(done_before), res.stdout  # only the missing trials

    trials = study(tmp_path, "kill").get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 5
    assert done_before <= {t.number for t in complete}  # nothing finished was rerun
    points = [tuple(sorted(t.params.items())) for t in complete]
    assert len(set(points)) == 5  # none repeated
    # none lost: the killed trial is FAILED and its point was retried and completed
    dead = next(t for t in trials if t.number == killed[0].number)
    assert dead.state == TrialState.FAIL
    retry = [t for t in complete if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retry) == 1 and retry[0].params == killed[0].params
    # the dead sweep's records are closed, not left "running"
    statuses = [r["status"] for r in experiments(tmp_path)]
    assert statuses.count("completed") == 5 and set(statuses) <= {"completed", "failed"}
    statuses = [r["status"] for r in _rows(db, "SELECT status FROM hpo_runs ORDER BY id")]
    assert statuses == ["failed", "completed"]


def test_ctrl_c_is_one_line_and_the_rerun_runs_the_interrupted_point(tmp_path: Path) -> None:
    """Ctrl-C mid-trial: no traceback, exit 130, the running trial FAILED with its point
    queued; the same command then finishes the study with that point."""
    args = [*command(), "-m", "hpo=basis_set_growth", "hpo.n_trials=3", "hpo.study_name=int",
            *FAST, *QUIET, "hydra.sweep.dir=sweep"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=sparsey_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + HANG_LIMIT_S
    while time.monotonic() < deadline and proc.poll() is None:
        done, running = _finished(tmp_path / "sparsey.db", "int")
        if done >= 1 and running:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=HANG_LIMIT_S)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in out + err
    assert "[hpo] interrupted; the running trial(s) were failed" in out
    trials = study(tmp_path, "int").get_trials(deepcopy=False)
    (cut,) = [t for t in trials if t.state == TrialState.FAIL]
    assert cut.user_attrs["interrupted"] == "the sweep was interrupted"
    (queued,) = [t for t in trials if t.state == TrialState.WAITING]
    assert queued.params == cut.params

    res = run_sparsey(tmp_path, *args[len(command()):], quiet=False, run_dir=None)
    assert_completed(res)
    trials = study(tmp_path, "int").get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3 and "3 complete, 0 failed" in res.stdout
    assert [t.params for t in complete if t.number == queued.number] == [cut.params]


def test_grid_2x3_runs_six_distinct_trials_and_invalid_points_fail_alone(tmp_path: Path
                                                                         ) -> None:
    """Must show: grid search over a 2×3 space runs exactly 6 distinct trials (n_trials is
    larger), and a trial forced to raise — sampled min threshold > max — is FAILED in the
    study with its one-line validation message while the sweep finishes (exit code 0)."""
    res = hpo(tmp_path, "hpo=basis_set_growth", "hpo.study_name=grid", "hpo.strategy=grid",
              "hpo.n_trials=10", *FAST, "++network.layers.0.activation_threshold_max=0.5",
              *pinned("network.layers.0.activation_threshold_min=choice(0.1,0.9)",
                      "network.layers.0.receptive_field_radius=choice(0.3,0.5,1.0)"))
    assert_completed(res)
    assert "grid of 6 points: running 6 trials, not 10" in res.stdout
    trials = study(tmp_path, "grid").trials
    points = {(t.params["network.layers.0.activation_threshold_min"],
               t.params["network.layers.0.receptive_field_radius"]) for t in trials}
    assert len(trials) == 6 and points == {(a, r) for a in (0.1, 0.9) for r in (0.3, 0.5, 1.0)}
    for t in trials:
        bad = t.params["network.layers.0.activation_threshold_min"] == 0.9
        assert t.state == (TrialState.FAIL if bad else TrialState.COMPLETE), t
        if bad:
            error = t.user_attrs["error"]
            assert error.startswith("network.layers.0: activation_threshold_min (0.9) must be")
            assert "\n" not in error and "Traceback" not in error
            assert f"#{t.number} FAILED: network.layers.0" in res.stdout
    assert "3 complete, 3 failed" in res.stdout
    rows = experiments(tmp_path)  # an invalid config is refused before any record
    assert [r["status"] for r in rows] == ["completed"] * 3


def test_multi_objective_study_prints_and_stores_the_pareto_front(tmp_path: Path) -> None:
    res = hpo(tmp_path, "hpo=basis_set_pareto", "hpo.n_trials=3", "dataset.limit=60")
    assert_completed(res)
    s = study(tmp_path, "basis_set_pareto")
    assert [d.name for d in s.directions] == ["MINIMIZE", "MAXIMIZE"]
    front = sorted(t.number for t in s.best_trials)
    assert front and f"[hpo] Pareto front ({len(front)} trial(s)" in res.stdout
    out = tmp_path / "hpo_results" / "basis_set_pareto"
    saved = yaml.safe_load((out / "pareto.yaml").read_text())
    assert sorted(r["trial"] for r in saved["pareto_front"]) == front
    for n in front:
        assert (out / "network" / f"basis_set_pareto_pareto_{n}.yaml").is_file()
    assert (out / "plots" / "pareto_front.png").is_file()
    # each value from its metric's phase: basis_set_size (train), match_accuracy (eval)
    t = s.best_trials[0]
    row = next(r for r in experiments(tmp_path) if r["id"] == t.user_attrs["experiment_id"])
    train_b = [v for v in row["summary"]["train"]["metrics"]["basis_set_size"] if v is not None]
    assert t.values[0] == pytest.approx(sum(train_b) / len(train_b))
    assert t.values[1] == pytest.approx(row["summary"]["eval"]["metrics"]["match_accuracy"][-1])


def test_a_bad_study_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """The study itself is checked before any trial (more cases: test_hpo_objective.py)."""
    key = "network.layers.0.bogus"
    res = hpo(tmp_path, "hpo=basis_set_growth", "hpo.strategy=random", f"{key}=choice(1,2)")
    assert res.returncode == 2, res.explain()
    lines = error_lines(res)
    assert len(lines) == 1 and lines[0].startswith(f"error: {key}"), res.explain()
    assert "layer 'sparsey' has no parameter 'bogus'" in lines[0]
    assert "Traceback" not in res.output and not (tmp_path / "sparsey.db").exists()


def test_example_reproduces_the_readme_experiment_and_draws_the_figure(tmp_path: Path) -> None:
    """examples/basis_set_growth: the study, then basis-set size against radius."""
    script = Path(__file__).resolve().parents[1] / "examples" / "basis_set_growth" / "run.sh"
    env = sparsey_env(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                      WANDB_MODE="offline", WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"),
                      WANDB_CACHE_DIR=str(tmp_path / "wandb-cache"),
                      WANDB_DATA_DIR=str(tmp_path / "wandb-data"))
    proc = subprocess.run(["bash", str(script), str(tmp_path / "work"), "3", "dataset.limit=60",
                           "hpo.plots=false", "trainer.progress=false"],
                          env=env, capture_output=True, text=True, timeout=HANG_LIMIT_S)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    fig = tmp_path / "work" / "basis_set_vs_radius.png"
    assert fig.is_file() and fig.stat().st_size > 10_000
    assert "saved" in proc.stdout and "(3 trials)" in proc.stdout
    assert "radius " in proc.stdout and "basis-set size per MAC" in proc.stdout
    # W&B runs grouped by study: RunRecord.run_group (protobuf field 6) in each offline run
    group = b"\x32" + bytes([len(b"readme_basis_set")]) + b"readme_basis_set"
    runs = list((tmp_path / "work").rglob("offline-run-*/run-*.wandb"))
    assert len(runs) == 3 and all(group in r.read_bytes() for r in runs)
