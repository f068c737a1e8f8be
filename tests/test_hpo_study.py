"""Durable and shared studies on real RDB storage: heartbeats, retries, the study lock."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import TrialState

from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.hpo.lock import StudyLock
from sparsey_hydra.hpo.study import (
    Heartbeat,
    counts,
    fail_dead_trials,
    give_back,
    load_study,
    open_storage,
    with_driver,
    worker_id,
)

SPACE = {"x": IntDistribution(0, 100)}
# Optuna warns that heartbeats are meant for optimize(); the sweeper uses them with ask/tell.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage")


def new_study(url: str, name: str = "s", **kw: int) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return load_study(open_storage(url, **kw), name, ["minimize"], {"objective": "x"})


def start(study: optuna.Study, worker: dict) -> optuna.Trial:
    trial = study.ask(fixed_distributions=SPACE)
    trial.set_user_attr("worker", worker)
    study._storage.record_heartbeat(trial._trial_id)
    return trial


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_silent_trial_is_failed_after_the_grace_period_and_its_point_retried(
        tmp_path: Path) -> None:
    """Optuna's heartbeat + retry callback: a worker on another machine stopped beating."""
    study = new_study(f"sqlite:///{tmp_path / 'db.sqlite'}", heartbeat_interval_s=1,
                      grace_period_s=2)
    lost = start(study, {"host": "another-node", "pid": 1})
    alive = start(study, {"host": "another-node", "pid": 2})
    with Heartbeat(study._storage, [alive], interval_s=1):
        assert fail_dead_trials(study, local_pid_check=True) == []  # both fresh
        time.sleep(3.5)
        assert fail_dead_trials(study, local_pid_check=True) == [lost.number]
    trials = study.get_trials()
    assert trials[lost.number].state == TrialState.FAIL
    assert trials[alive.number].state == TrialState.RUNNING  # its heartbeat kept it alive
    retry = [t for t in trials if t.state == TrialState.WAITING]
    assert len(retry) == 1 and retry[0].params == lost.params
    assert retry[0].system_attrs["failed_trial"] == lost.number
    assert counts(trials) == (0, 1, 1)  # the lost trial does not count; its retry waits
    again = study.ask(fixed_distributions=SPACE)  # the next ask runs the queued point
    assert again.number == retry[0].number and again.params == lost.params


def test_a_dead_process_on_this_host_is_seen_at_once(tmp_path: Path) -> None:
    study = new_study(f"sqlite:///{tmp_path / 'db.sqlite'}", heartbeat_interval_s=30,
                      grace_period_s=600)
    me = worker_id()
    trial = start(study, {**me, "pid": dead_pid()})
    assert fail_dead_trials(study, local_pid_check=False) == []  # only the heartbeat counts
    start(study, me)  # this process: alive
    assert fail_dead_trials(study, local_pid_check=True) == [trial.number]
    assert counts(study.get_trials()) == (0, 1, 1)


def test_an_interrupted_trial_gives_its_point_back(tmp_path: Path) -> None:
    study = new_study(f"sqlite:///{tmp_path / 'db.sqlite'}")
    done = start(study, worker_id())
    study.tell(done, 1.0)
    cut = start(study, worker_id())
    give_back(study, cut, "Ctrl-C")
    trials = study.get_trials()
    assert trials[cut.number].state == TrialState.FAIL
    assert trials[cut.number].user_attrs["interrupted"] == "Ctrl-C"
    assert counts(trials) == (1, 0, 1)


def test_max_retry_bounds_the_retries_of_one_point(tmp_path: Path) -> None:
    study = new_study(f"sqlite:///{tmp_path / 'db.sqlite'}", max_retry=1)
    me = worker_id()
    first = start(study, {**me, "pid": dead_pid()})
    assert fail_dead_trials(study, local_pid_check=True) == [first.number]
    second = study.ask(fixed_distributions=SPACE)
    second.set_user_attr("worker", {**me, "pid": dead_pid()})
    assert fail_dead_trials(study, local_pid_check=True) == [second.number]
    trials = study.get_trials()
    assert not [t for t in trials if t.state == TrialState.WAITING]  # retried once only
    assert counts(trials) == (1, 0, 0)  # the last failure counts as a finished trial


def test_a_rerun_may_not_change_the_direction(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    new_study(url)
    with pytest.raises(SparseyConfigError, match="^hpo.study_name: study 's' exists with"):
        load_study(open_storage(url), "s", ["maximize"], {"objective": "x"})
    with pytest.raises(SparseyConfigError, match="^hpo.objective: study 's' was run with"):
        load_study(open_storage(url), "s", ["minimize"], {"objective": "y"})


def test_storage_urls() -> None:
    assert with_driver("postgresql://u@h:5432/d") == "postgresql+psycopg://u@h:5432/d"
    assert with_driver("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(SparseyConfigError) as err:
        open_storage("postgresql://u:hunter2@127.0.0.1:1/d")
    assert str(err.value).startswith("hpo.storage: cannot open 'postgresql://u:***@")
    assert "hunter2" not in str(err.value) and "\n" not in str(err.value)


def _exclusive(make_lock) -> list[str]:
    """Two workers take the lock at once: the second gets it only after the first left."""
    events: list[str] = []
    inside = threading.Event()

    def first() -> None:
        with make_lock():
            events.append("first in")
            inside.set()
            time.sleep(0.6)
            events.append("first out")

    def second() -> None:
        inside.wait()
        with make_lock():
            events.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return events


def test_the_study_lock_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    new_study(url)
    assert _exclusive(lambda: StudyLock(open_storage(url), "s")) == [
        "first in", "first out", "second in"]


def test_the_study_lock_on_postgresql(postgres_server, pg_database: str) -> None:
    url = (f"postgresql+psycopg://postgres:{postgres_server.password}@127.0.0.1:"
           f"{postgres_server.port}/{pg_database}")
    new_study(url)
    assert _exclusive(lambda: StudyLock(open_storage(url), "s")) == [
        "first in", "first out", "second in"]
    other = []  # another study's lock is independent
    with StudyLock(open_storage(url), "s"):
        with StudyLock(open_storage(url), "t"):
            other.append("both held")
    assert other == ["both held"]


def test_ctrl_c_swallowed_by_a_finaliser_prints_no_traceback(capsys) -> None:
    """Ctrl-C can land in a weakref callback or __del__, where Python swallows it and prints
    "Exception ignored … Traceback"; the sweep notes the interrupt itself, so it says nothing
    there (other unraisable errors still reach the previous hook)."""
    import sys
    import types
    import weakref

    from sparsey_hydra.hpo.sweep import StudySweep

    sweep = types.SimpleNamespace()
    seen = []
    previous = sys.unraisablehook
    sys.unraisablehook = seen.append
    try:
        with StudySweep._ctrl_c_noted(sweep):
            sweep.interrupted = True

            class Box:
                pass

            def callback(_):
                raise KeyboardInterrupt

            box = Box()
            ref = weakref.ref(box, callback)
            del box  # the callback raises: swallowed, and silenced
            assert ref() is None

            def failing(_):
                raise ValueError("a real bug")

            box = Box()
            ref = weakref.ref(box, failing)
            del box
    finally:
        sys.unraisablehook = previous
    assert [type(i.exc_value) for i in seen] == [ValueError]
    assert "Traceback" not in capsys.readouterr().err
    assert sys.unraisablehook is previous


def test_a_worker_killed_before_its_first_heartbeat_does_not_hang_the_study(
        tmp_path: Path) -> None:
    """A worker SIGKILLed between asking for a trial and its first heartbeat leaves a RUNNING
    trial with no heartbeat, which Optuna never calls stale: after the grace period it is
    failed and its point queued again like any silent trial (the study would never finish)."""
    study = new_study(f"sqlite:///{tmp_path / 'db.sqlite'}", heartbeat_interval_s=1,
                      grace_period_s=2)
    orphan = study.ask(fixed_distributions=SPACE)  # asked, then the worker died
    orphan.set_user_attr("worker", {"host": "another-node", "pid": 1})
    alive = start(study, {"host": "another-node", "pid": 2})
    assert fail_dead_trials(study, local_pid_check=True) == []  # too young to judge
    with Heartbeat(study._storage, [alive], interval_s=1):
        time.sleep(2.5)
        assert fail_dead_trials(study, local_pid_check=True) == [orphan.number]
    trials = study.get_trials()
    assert trials[orphan.number].state == TrialState.FAIL
    assert trials[alive.number].state == TrialState.RUNNING
    retry = [t for t in trials if t.state == TrialState.WAITING]
    assert len(retry) == 1 and retry[0].params == orphan.params
