"""The task function as the sweeper launches it: each trial's printout goes to its own log.

Wrapping the task (rather than redirecting in the sweeper) keeps the terminal to one
`[hpo]` line per trial with every launcher: in-process (basic), in worker processes
(joblib) and in separate jobs (submitit), where the sweeper never sees the trial's stdout.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import traceback
from pathlib import Path
from typing import Any


def trial_log(cwd: str, sweep_dir: str, number: int) -> Path:
    """`<launch dir>/<hydra.sweep.dir>/trial-0003.log`."""
    return Path(cwd) / sweep_dir / f"trial-{number:04d}.log"


class TrialTask:
    """Calls the wrapped task function with stdout sent to the trial's log file."""

    def __init__(self, task_function: Any) -> None:
        self.task_function = task_function

    def __call__(self, cfg: Any) -> Any:
        from hydra.core.hydra_config import HydraConfig

        trial = ((cfg.get("hpo") or {}).get("trial") or {}) if cfg is not None else {}
        if trial.get("number") is None:
            return self.task_function(cfg)
        hc = HydraConfig.get()
        log = trial_log(hc.runtime.cwd, hc.sweep.dir, int(trial["number"]))
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as fh, contextlib.redirect_stdout(fh):
            # Who ran it and when: how a reader of the logs sees trials run in parallel.
            print(f"[trial {trial['number']}] host {socket.gethostname()} pid {os.getpid()} "
                  f"start {time.time():.3f}", flush=True)
            cpu = time.process_time()
            try:
                return self.task_function(cfg)
            except Exception as exc:  # the sweeper gets one line; the log keeps the trace
                from sparsey_hydra.errors import SparseyConfigError

                if not isinstance(exc, SparseyConfigError):
                    traceback.print_exc(file=fh)
                raise
            finally:
                print(f"[trial {trial['number']}] end {time.time():.3f} "
                      f"cpu {time.process_time() - cpu:.3f}", flush=True)
