"""Distributed HPO: many workers, one study, on Optuna's RDB storage and Hydra launchers.

Real parts only: a PostgreSQL server on 127.0.0.1 (tests/services.py) holds the shared study
and the result store; workers are real `sparsey -m hpo=…` processes, one killed with
SIGKILL; the joblib and submitit_local launchers run trials in their own processes.
"""

from __future__ import annotations

import datetime
import json
import re
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from cli_helpers import (
    HANG_LIMIT_S,
    QUIET,
    assert_completed,
    command,
    models,
    run_sparsey,
    sparsey_env,
)
from optuna.trial import TrialState

from sparsey_hydra.hpo.study import counts

pytestmark = pytest.mark.slow

STUDY = ("hpo=basis_set_growth", "dataset.limit=60", "hpo.plots=false",
         "network.layers.0.num_macs=choice(4,9)", "network.layers.0.num_cms_per_mac=4",
         "network.layers.0.num_neurons_per_cm=4")
BEST = re.compile(r"^\[hpo\] best value (\S+) \(minimize\) at trial (\d+)$", re.M)
LOG_LINE = re.compile(r"^\[trial (\d+)\] host \S+ pid (\d+) start ([\d.]+)$", re.M)
END_LINE = re.compile(r"^\[trial (\d+)\] end ([\d.]+) cpu ([\d.]+)$", re.M)


def pg_url(server, database: str) -> str:
    return (f"postgresql+psycopg://{server.user}:{server.password}@{server.host}:"
            f"{server.port}/{database}")


def pg_rows(server, database: str, sql: str) -> list[dict]:
    with server.connect(database) as conn:
        cur = conn.execute(sql)
        names = [c.name for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _decoded(value: object) -> dict:
    return json.loads(value) if isinstance(value, str) else dict(value or {})


def test_three_workers_share_one_study_and_survive_a_sigkilled_worker(
        tmp_path: Path, postgres_server, pg_database: str) -> None:
    """Must show: 3 workers at once on a 12-trial study in PostgreSQL, one killed with
    SIGKILL mid-trial: exactly 12 finished trials, distinct trial numbers, every trial's
    experiment row present, one best reported. The dead worker's trial is failed by the
    heartbeat (the pid shortcut is off, as for a worker on another machine) and retried."""
    store = [*postgres_server.overrides(pg_database), "system.write_stores=[postgresql]",
             "system.read_store=postgresql"]
    args = [*command(), "-m", *STUDY, "hpo.study_name=shared", "hpo.n_trials=12",
            "hpo.heartbeat_interval_s=1", "hpo.grace_period_s=4", "hpo.local_pid_check=false",
            *store, *QUIET]
    procs = []
    for i in range(3):
        cwd = tmp_path / f"worker{i}"  # own launch dir, as on separate machines
        cwd.mkdir()
        procs.append(subprocess.Popen([*args, f"hydra.sweep.dir=sweep{i}"], cwd=cwd,
                                      env=sparsey_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True,
                                      stdin=subprocess.DEVNULL))
    url = pg_url(postgres_server, pg_database)
    victim, killed = procs[0], False
    deadline = time.monotonic() + HANG_LIMIT_S
    watch = None
    while not killed and time.monotonic() < deadline and victim.poll() is None:
        try:
            watch = watch or optuna.load_study(study_name="shared", storage=url)
            trials = watch.get_trials()
        except KeyError:  # not created yet
            trials = []
        now = datetime.datetime.now()
        started = [t for t in trials if t.state == TrialState.RUNNING
                   and (t.user_attrs.get("worker") or {}).get("pid") == victim.pid
                   and (now - t.datetime_start).total_seconds() < 0.3]  # a trial takes > 1 s
        if started and any(t.state == TrialState.COMPLETE for t in trials):
            victim.send_signal(signal.SIGKILL)  # mid-trial
            killed = True
        time.sleep(0.05)
    assert killed, "worker 0 never started a trial after another worker finished one"
    victim.wait()
    victim.stdout.close()
    outputs = []
    for p in procs[1:]:
        out, _ = p.communicate(timeout=HANG_LIMIT_S)
        assert p.returncode == 0, out[-4000:]
        assert "Traceback" not in out
        outputs.append(out)

    trials = optuna.load_study(study_name="shared", storage=url).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 12 and counts(trials) == (12, 0, 0)
    assert len({t.number for t in trials}) == len(trials)
    assert len({tuple(sorted(t.params.items())) + (t.number,) for t in complete}) == 12
    (dead,) = [t for t in trials if t.user_attrs["worker"]["pid"] == victim.pid
               and t.state != TrialState.COMPLETE]  # the trial it was killed in
    assert dead.state == TrialState.FAIL and "error" not in dead.user_attrs
    retry = [t for t in complete if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retry) == 1 and retry[0].params == dead.params
    assert any(f"trial(s) [{dead.number}] lost their worker" in o for o in outputs)
    workers = {t.user_attrs["worker"]["pid"] for t in complete}
    assert {p.pid for p in procs[1:]} <= workers  # every live worker ran trials

    rows = {r["id"]: r for r in pg_rows(postgres_server, pg_database,
                                        "SELECT id, status, hpo_run_id, config FROM experiments")}
    runs = {r["id"]: r for r in pg_rows(postgres_server, pg_database,
                                        "SELECT id, status FROM hpo_runs")}
    for t in complete:  # every trial's experiment row, linked to its worker's hpo_runs row
        row = rows[t.user_attrs["experiment_id"]]
        assert row["status"] == "completed"
        assert _decoded(row["config"])["hpo"]["trial"]["number"] == t.number
        assert row["hpo_run_id"] == t.user_attrs["hpo_run"]["postgresql"]
    assert len([r for r in rows.values() if r["status"] == "completed"]) == 12
    assert sorted(r["status"] for r in runs.values()) == ["completed", "completed", "failed"]

    study = optuna.load_study(study_name="shared", storage=url)
    reported = {m for o in outputs for m in BEST.findall(o)}
    assert reported == {(f"{study.best_value:.6g}", str(study.best_trial.number))}


def _intervals(sweep: Path) -> dict[int, tuple[int, float, float, float]]:
    """trial → (pid, start, end, CPU seconds of its process meanwhile) from the trial logs."""
    out = {}
    for log in sweep.glob("trial-*.log"):
        text = log.read_text()
        (n, pid, start), (_, end, cpu) = LOG_LINE.findall(text)[0], END_LINE.findall(text)[-1]
        out[int(n)] = (int(pid), float(start), float(end), float(cpu))
    return out


def test_joblib_runs_two_trials_at_once(tmp_path: Path) -> None:
    """Must show: `hydra/launcher=joblib` with 2 jobs runs trials in parallel, both cores
    busy: two worker processes whose trials overlap, each computing (CPU time close to wall
    time) while they do."""
    res = run_sparsey(tmp_path, "-m", *STUDY, "hpo.study_name=par", "hpo.n_trials=4",
                      "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                      "hydra.sweep.dir=sweep", run_dir=None)
    assert_completed(res)
    assert "2 at a time" in res.stdout
    study = optuna.load_study(study_name="par", storage=f"sqlite:///{tmp_path / 'sparsey.db'}")
    assert counts(study.get_trials()) == (4, 0, 0)
    # one registry name per trial: parallel trials do not race for one name's next version
    assert sorted((m["name"], m["version"]) for m in models(tmp_path)) == [
        (f"par-trial{n}", 1) for n in range(4)]
    spans = _intervals(tmp_path / "sweep")
    assert sorted(spans) == [0, 1, 2, 3]
    sweeper = {t.user_attrs["worker"]["pid"] for t in study.trials}
    pids = {span[0] for span in spans.values()}
    assert len(pids) == 2 and not pids & sweeper  # two joblib worker processes
    for a, b in ((0, 1), (2, 3)):  # each batch: two processes at the same time...
        (pa, sa, ea, ca), (pb, sb, eb, cb) = spans[a], spans[b]
        overlap = min(ea, eb) - max(sa, sb)
        assert pa != pb and overlap > 0.5 * min(ea - sa, eb - sb), (spans[a], spans[b])
        # ...each computing for most of its time: two cores busy (at least 0.5 s of CPU per
        # second each, leaving room for the other developers' processes on a shared machine)
        print(f"joblib n_jobs=2: trials {a}, {b} overlap {overlap:.2f} s; CPU/wall "
              f"{ca / (ea - sa):.2f} and {cb / (eb - sb):.2f}")
        assert ca > 0.5 * (ea - sa) and cb > 0.5 * (eb - sb)


def test_submitit_local_runs_a_sweep_to_completion(tmp_path: Path) -> None:
    """Must show: the SLURM code path (submitit), run on this machine by `submitit_local`."""
    res = run_sparsey(tmp_path, "-m", *STUDY, "hpo.study_name=sub", "hpo.n_trials=2",
                      "hpo.n_jobs=2", "hydra/launcher=submitit_local",
                      "hydra.launcher.timeout_min=5", "hydra.sweep.dir=sweep", run_dir=None)
    assert_completed(res)
    study = optuna.load_study(study_name="sub", storage=f"sqlite:///{tmp_path / 'sparsey.db'}")
    assert counts(study.get_trials()) == (2, 0, 0)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert "[hpo] best value" in res.stdout
    spans = _intervals(tmp_path / "sweep")
    sweeper = {t.user_attrs["worker"]["pid"] for t in study.trials}
    assert sorted(spans) == [0, 1] and not {s[0] for s in spans.values()} & sweeper
    assert list((tmp_path / "sweep" / ".submitit").iterdir())  # submitit's job folders
