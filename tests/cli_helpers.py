"""Run the real `sparsey` command in a subprocess and read what it left behind.

The store is read with the standard library's sqlite3, not with the app's own store code, so
these end-to-end tests check the file a user would find, independently of `sparsey_hydra.stores`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# The console script that `pip install -e .` put beside this interpreter.
SPARSEY = Path(sys.executable).parent / "sparsey"
# Quiet, fast and offline: no W&B, no progress bar.
QUIET = ("system.wandb.mode=disabled", "trainer.progress=false")
# Generous: a hung run fails the test instead of blocking the suite (not a timing check).
HANG_LIMIT_S = 300


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    cwd: Path

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def explain(self) -> str:
        return (f"exit {self.returncode}\n--- stdout ---\n{self.stdout[-4000:]}"
                f"\n--- stderr ---\n{self.stderr[-4000:]}")


def sparsey_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("HYDRA_FULL_ERROR", None)
    for k in [k for k in env if k.startswith("WANDB_")]:
        del env[k]
    env.update(WANDB_SILENT="true", COLUMNS="200", PYTHONWARNINGS="ignore")
    env.update(extra)
    return env


def command() -> list[str]:
    """The installed console script; `python -m sparsey_hydra.cli` where it is missing."""
    if SPARSEY.exists():
        return [str(SPARSEY)]
    return [sys.executable, "-m", "sparsey_hydra.cli"]


def run_sparsey(cwd: Path, *overrides: str, quiet: bool = True, run_dir: str | None = "out",
                env: dict[str, str] | None = None) -> Result:
    """`sparsey OVERRIDES…` launched from `cwd`.

    `run_dir` pins Hydra's output dir (relative to cwd) so that two runs in the same second
    cannot share one; None keeps Hydra's default outputs/DATE/TIME.
    """
    cwd.mkdir(parents=True, exist_ok=True)
    args = [*command(), *overrides]
    if quiet:
        args += list(QUIET)
    if run_dir is not None:
        args.append(f"hydra.run.dir={run_dir}")
    proc = subprocess.run(args, cwd=cwd, env=env or sparsey_env(), capture_output=True,
                          text=True, timeout=HANG_LIMIT_S, stdin=subprocess.DEVNULL)
    return Result(proc.returncode, proc.stdout, proc.stderr, cwd)


def train(cwd: Path, *overrides: str, **kw: Any) -> Result:
    return run_sparsey(cwd, "+experiment=train", *overrides, **kw)


def assert_completed(res: Result) -> None:
    assert res.returncode == 0, res.explain()
    assert "Traceback" not in res.output, res.explain()


def _rows(db: Path, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
    con = sqlite3.connect(db)
    try:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute(sql, params).fetchall()]
    finally:
        con.close()


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("config", "summary", "metrics_summary"):
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out


def experiments(cwd: Path) -> list[dict[str, Any]]:
    """Rows of `experiments` in the launch dir's sparsey.db (none when there is no file)."""
    db = cwd / "sparsey.db"
    if not db.exists():
        return []
    tables = {r["name"] for r in _rows(db, "SELECT name FROM sqlite_master WHERE type='table'")}
    if "experiments" not in tables:
        return []
    return [_decoded(r) for r in _rows(db, "SELECT * FROM experiments ORDER BY id")]


def models(cwd: Path) -> list[dict[str, Any]]:
    return [_decoded(r) for r in _rows(cwd / "sparsey.db", "SELECT * FROM models ORDER BY id")]


def step_metrics(cwd: Path, experiment_id: int) -> list[tuple]:
    """(phase, step, layer, metric, value) in a stable order; the row ids are left out."""
    rows = _rows(cwd / "sparsey.db",
                 "SELECT phase, step, layer, metric, value FROM step_metrics "
                 "WHERE experiment_id = ? ORDER BY phase, step, layer, metric",
                 (experiment_id,))
    return [(r["phase"], r["step"], r["layer"], r["metric"], r["value"]) for r in rows]


def only_experiment(cwd: Path) -> dict[str, Any]:
    rows = experiments(cwd)
    assert len(rows) == 1, f"expected one experiment row, found {len(rows)}"
    return rows[0]


def files_containing(root: Path, needle: bytes) -> list[Path]:
    """Every file under root whose bytes contain needle (binary W&B files included)."""
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def error_lines(res: Result) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.strip()]
